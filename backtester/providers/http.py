"""A small OpenAI-compatible chat client: bounded concurrency, rate limit, retries, breaker.

Standard library only (urllib + a thread pool). A failed call never raises: it comes back
as a ``ChatResult`` with ``content`` None and a one-line ``error``, so the caller abstains.
"""

from __future__ import annotations

import email.utils
import http.client
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is capped to this
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class ChatResult:
    """What one candidate's call gave: the content, or why there is none.

    ``attempts`` counts HTTP requests sent (retries included); ``skipped`` means the
    circuit breaker was open and no request was sent.
    """

    content: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    rate_limited: int = 0
    error: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.content is not None


class RateLimiter:
    """Thread-safe token bucket: at most ``requests_per_minute``, bursts of ``burst``.

    Each ``acquire`` reserves a token (the bucket may go negative) and then sleeps until
    its turn, so waiting threads are served in order. ``clock`` and ``sleep`` are
    injectable; 0 requests per minute means unlimited.
    """

    def __init__(self, requests_per_minute: float, *, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = requests_per_minute / 60.0  # tokens per second
        self.burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for one request slot; return the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class CircuitBreaker:
    """Opens after ``failures`` consecutive failed candidates; stays open until reset."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self._consecutive = 0
        self._open = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._open

    def record(self, ok: bool) -> None:
        """Count one finished candidate."""
        with self._lock:
            self._consecutive = 0 if ok else self._consecutive + 1
            if self._consecutive >= self.failures:
                self._open = True

    def reset(self) -> None:
        """Close the breaker (a new chunk starts)."""
        with self._lock:
            self._consecutive = 0
            self._open = False


class _Retryable(Exception):
    def __init__(self, error: str, *, timeout: bool = False, rate_limited: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.timeout = timeout
        self.rate_limited = rate_limited
        self.retry_after = retry_after


class _Fatal(Exception):
    pass


class ChatClient:
    """POST ``{base_url}/chat/completions`` for batches of message lists.

    Parameters
    ----------
    base_url : str
        E.g. ``http://127.0.0.1:11434/v1`` (Ollama).
    model : str
        Model name sent with every request.
    api_key : str, default ""
        Sent as ``Authorization: Bearer`` when not empty; never shown in repr or errors.
    timeout_s, max_retries, backoff_s, max_concurrency, requests_per_minute, breaker_failures
        As in ``LLMProviderConfig``. Retries (after ``backoff_s * 2**i`` seconds, or the
        server's Retry-After) follow connection errors, timeouts, HTTP 429 and 5xx.
    sleep, clock : callables, optional
        Injected by tests to avoid waiting on the wall clock.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str = "", timeout_s: float = 30.0,
                 max_retries: int = 2, backoff_s: float = 0.5, max_concurrency: int = 4,
                 requests_per_minute: float = 0.0, breaker_failures: int = 5,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self.limiter = RateLimiter(requests_per_minute, clock=clock, sleep=sleep)
        self.breaker = CircuitBreaker(breaker_failures)
        self._api_key = api_key
        self._sleep = sleep
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # Loopback servers (Ollama, vLLM, llama.cpp) never go through an environment proxy.
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK_HOSTS else []
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"ChatClient(url={self.url!r}, model={self.model!r})"

    def complete_many(self, batch: list[Messages], *, temperature: float, max_tokens: int,
                      on_result: Callable[[int, ChatResult], None] | None = None
                      ) -> list[ChatResult]:
        """Send every message list, ``max_concurrency`` at a time; results in input order.

        ``on_result(i, result)`` runs in the calling thread as each call finishes. Once the
        breaker is open, the remaining items are skipped without a request.
        """
        results: list[ChatResult | None] = [None] * len(batch)
        if not batch:
            return []

        def task(messages: Messages) -> ChatResult:
            if self.breaker.is_open:
                return ChatResult(None, error="circuit breaker open", skipped=True)
            result = self.complete(messages, temperature=temperature, max_tokens=max_tokens)
            self.breaker.record(result.ok)
            return result

        workers = min(self.max_concurrency, len(batch))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bt-llm")
        try:
            futures = {pool.submit(task, messages): i for i, messages in enumerate(batch)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_result is not None:
                    on_result(i, results[i])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results  # type: ignore[return-value]

    def complete(self, messages: Messages, *, temperature: float, max_tokens: int) -> ChatResult:
        """One candidate's call with retries; never raises for network or server faults."""
        body = orjson.dumps({
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        })
        attempts = retries = timeouts = rate_limited = 0
        error = ""
        for attempt in range(self.max_retries + 1):
            if attempt > 0:
                if self.breaker.is_open:
                    break
                retries += 1
            self.limiter.acquire()
            attempts += 1
            try:
                content, usage = self._post(body)
            except _Retryable as e:
                error = e.error
                timeouts += e.timeout
                rate_limited += e.rate_limited
                if attempt < self.max_retries:
                    wait = self.backoff_s * 2**attempt if e.retry_after is None else e.retry_after
                    if wait > 0:
                        self._sleep(wait)
                continue
            except _Fatal as e:
                error = str(e)
                break
            return ChatResult(content, usage[0], usage[1], attempts, retries, timeouts,
                              rate_limited)
        return ChatResult(None, 0, 0, attempts, retries, timeouts, rate_limited,
                          error=self.redact(error))

    def _post(self, body: bytes) -> tuple[str, tuple[int, int]]:
        headers = {"Content-Type": "application/json", "User-Agent": "bt-backtester"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            e.close()
            if e.code == 429:
                raise _Retryable("HTTP 429 (rate limited)", rate_limited=True,
                                 retry_after=retry_after) from None
            if e.code >= 500:
                raise _Retryable(f"HTTP {e.code}", retry_after=retry_after) from None
            raise _Fatal(f"HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout_s:g} s", timeout=True) from None
            raise _Retryable(f"cannot connect ({e.reason})") from None
        except TimeoutError:
            raise _Retryable(f"timed out after {self.timeout_s:g} s", timeout=True) from None
        except (OSError, http.client.HTTPException) as e:
            raise _Retryable(f"connection failed ({type(e).__name__})") from None
        return _parse_envelope(payload)

    def redact(self, text: str) -> str:
        """``text`` with the API key, if it occurs, replaced by ***."""
        return text.replace(self._api_key, "***") if self._api_key else text


def _parse_envelope(payload: bytes) -> tuple[str, tuple[int, int]]:
    try:
        data = orjson.loads(payload)
        content = data["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise _Fatal(f"not a chat-completions response ({type(e).__name__})") from None
    if not isinstance(content, str):
        raise _Fatal("the response has no text content")
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return content, (_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; else None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
