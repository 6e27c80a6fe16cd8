"""A small OpenAI-compatible chat client: bounded concurrency, rate limit, retries, breaker.

Standard library only (urllib + a thread pool). A failed call never raises: it comes back
as a ``ChatResult`` with ``content`` None and a one-line ``error`` that keeps the server's
own words (``HTTP 400 Bad Request: maximum context length is 512 tokens, ...``), so the
caller abstains or explains. A server refusing the ``response_format`` field is told apart
from a failing one by the error body (``rejected``): it is neither retried nor counted by
the circuit breaker.
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
MESSAGE_CHARS = 200  # the server's error text kept in an error line
ERROR_BODY_BYTES = 65536  # read at most this much of an error body
# Words of a server refusing the response_format field (llama-cpp-python 0.3.36 answers
# json_schema with HTTP 500 "Input should be 'text' or 'json_object'"; OpenAI and vLLM
# answer 400 naming response_format).
FORMAT_REJECTION_WORDS = ("response_format", "json_schema", "'text' or 'json_object'",
                          "json_object", "structured output")
Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class ChatResult:
    """What one candidate's call gave: the content, or why there is none.

    ``attempts`` counts HTTP requests sent (retries included); ``skipped`` means the
    circuit breaker was open and no request was sent; ``rejected`` that the server
    refused the ``response_format`` field; ``status`` is the last HTTP error status (0:
    none) and ``unreachable`` that the last attempt could not connect.
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
    rejected: bool = False
    status: int = 0
    unreachable: bool = False

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


@dataclass(frozen=True, slots=True)
class ModelList:
    """What ``GET {base_url}/models`` gave: the model ids, or None when the server has no
    such path (404, 405) or the request failed (then ``error`` says why)."""

    models: tuple[str, ...] | None
    status: int = 0
    error: str = ""
    unreachable: bool = False


class _Retryable(Exception):
    def __init__(self, error: str, *, timeout: bool = False, rate_limited: bool = False,
                 retry_after: float | None = None, status: int = 0,
                 unreachable: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.timeout = timeout
        self.rate_limited = rate_limited
        self.retry_after = retry_after
        self.status = status
        self.unreachable = unreachable


class _Fatal(Exception):
    def __init__(self, error: str, *, status: int = 0, rejected: bool = False) -> None:
        super().__init__(error)
        self.status = status
        self.rejected = rejected


def origin(url: str) -> str:
    """scheme://host:port of a URL (the default port spelled out), for comparing origins."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the request's origin: the Authorization header (the
    API key) never goes to another host, port or scheme; a redirect across origins is
    refused with one line naming both."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        target = urllib.parse.urljoin(req.full_url, newurl)
        if origin(target) != origin(req.full_url):
            raise _Fatal(f"HTTP {code} redirect from {origin(req.full_url)} to {origin(target)}"
                         " refused (the API key is never sent to another origin); set "
                         "base_url to the address the server redirects to, if you trust it",
                         status=code)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
        server's Retry-After) follow connection errors, timeouts, HTTP 429 and 5xx, except
        a refused ``response_format``.
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
        handlers: list[urllib.request.BaseHandler] = [_SameOriginRedirects()]
        if host in LOOPBACK_HOSTS:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"ChatClient(url={self.url!r}, model={self.model!r})"

    def complete_many(self, batch: list[Messages], *, temperature: float, max_tokens: int,
                      response_format: dict | None = None,
                      on_result: Callable[[int, ChatResult], None] | None = None
                      ) -> list[ChatResult]:
        """Send every message list, ``max_concurrency`` in flight at a time; results in
        input order.

        ``on_result(i, result)`` runs in the calling thread as each call finishes. Once the
        breaker is open, the remaining items are skipped without a request; a refused
        ``response_format`` does not count towards the breaker.
        """
        results: list[ChatResult | None] = [None] * len(batch)
        if not batch:
            return []

        def task(messages: Messages) -> ChatResult:
            if self.breaker.is_open:
                return ChatResult(None, error="circuit breaker open", skipped=True)
            result = self.complete(messages, temperature=temperature, max_tokens=max_tokens,
                                   response_format=response_format)
            if not result.rejected:
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

    def complete(self, messages: Messages, *, temperature: float, max_tokens: int,
                 response_format: dict | None = None) -> ChatResult:
        """One candidate's call with retries; never raises for network or server faults."""
        request = {"model": self.model, "messages": messages, "temperature": temperature,
                   "max_tokens": max_tokens}
        if response_format is not None:
            request["response_format"] = response_format
        body = orjson.dumps(request)
        asks_format = response_format is not None
        attempts = retries = timeouts = rate_limited = status = 0
        unreachable = False
        error = ""
        for attempt in range(self.max_retries + 1):
            if attempt > 0:
                if self.breaker.is_open:
                    break
                retries += 1
            self.limiter.acquire()
            attempts += 1
            try:
                content, usage = self._post(body, asks_format=asks_format)
            except _Retryable as e:
                error, status, unreachable = e.error, e.status, e.unreachable
                timeouts += e.timeout
                rate_limited += e.rate_limited
                if attempt < self.max_retries:
                    wait = self.backoff_s * 2**attempt if e.retry_after is None else e.retry_after
                    if wait > 0:
                        self._sleep(wait)
                continue
            except _Fatal as e:
                return ChatResult(None, 0, 0, attempts, retries, timeouts, rate_limited,
                                  error=self.redact(str(e)), rejected=e.rejected,
                                  status=e.status)
            return ChatResult(content, usage[0], usage[1], attempts, retries, timeouts,
                              rate_limited)
        return ChatResult(None, 0, 0, attempts, retries, timeouts, rate_limited,
                          error=self.redact(error), status=status, unreachable=unreachable)

    def list_models(self) -> ModelList:
        """``GET {base_url}/models``: the ids the server serves (one attempt, no retry)."""
        url = f"{self.base_url}/models"
        request = urllib.request.Request(url, headers=self._headers(), method="GET")
        try:
            payload = self._send(request, asks_format=False)
        except _Fatal as e:
            if e.status in (404, 405):
                return ModelList(None, status=e.status)
            return ModelList(None, status=e.status, error=self.redact(str(e)))
        except _Retryable as e:
            return ModelList(None, status=e.status, error=self.redact(e.error),
                             unreachable=e.unreachable)
        try:
            data = orjson.loads(payload)
            items = data["data"] if isinstance(data, dict) else data
            models = tuple(str(item["id"] if isinstance(item, dict) else item) for item in items)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return ModelList(None, error="not a model list")
        return ModelList(models)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "bt-backtester"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, body: bytes, *, asks_format: bool) -> tuple[str, tuple[int, int]]:
        request = urllib.request.Request(self.url, data=body, headers=self._headers(),
                                         method="POST")
        return _parse_envelope(self._send(request, asks_format=asks_format))

    def _send(self, request: urllib.request.Request, *, asks_format: bool) -> bytes:
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            try:
                body = e.read(ERROR_BODY_BYTES)
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                e.close()
            text = body.decode("utf-8", "replace")
            error = f"HTTP {e.code} {e.reason}".strip()
            message = server_message(body)
            if message:
                error += f": {message}"
            if asks_format and e.code not in (401, 403, 404, 429) and is_format_rejection(text):
                raise _Fatal(error, status=e.code, rejected=True) from None
            if e.code == 429:
                raise _Retryable(f"{error} (rate limited)", rate_limited=True,
                                 retry_after=retry_after, status=429) from None
            if e.code >= 500:
                raise _Retryable(error, retry_after=retry_after, status=e.code) from None
            raise _Fatal(error, status=e.code) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout_s:g} s", timeout=True) from None
            raise _Retryable(f"cannot connect ({e.reason})", unreachable=True) from None
        except TimeoutError:
            raise _Retryable(f"timed out after {self.timeout_s:g} s", timeout=True) from None
        except (OSError, http.client.HTTPException) as e:
            raise _Retryable(f"connection failed ({type(e).__name__})",
                             unreachable=isinstance(e, ConnectionError)) from None

    def redact(self, text: str) -> str:
        """``text`` with the API key, if it occurs, replaced by ***."""
        return text.replace(self._api_key, "***") if self._api_key else text


def server_message(body: bytes) -> str:
    """The server's own error text in an error body, on one line, at most ~200 characters.

    Reads OpenAI's ``{"error": {"message": ...}}``, ``{"error": "..."}`` (Ollama),
    FastAPI's ``{"detail": ...}`` (a string or a list of ``{"loc", "msg"}``) or
    ``{"message": ...}``; else the start of the body as text.
    """
    text = body.decode("utf-8", "replace")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    message = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif "detail" in data:
            message = _detail_text(data["detail"])
        elif isinstance(data.get("message"), str):
            message = data["message"]
    message = " ".join((text if message is None else message).split())
    return message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS - 3] + "..."


def is_format_rejection(text: str) -> bool:
    """Whether an error body says the server refuses the ``response_format`` field."""
    lowered = text.lower()
    return any(word in lowered for word in FORMAT_REJECTION_WORDS)


def _detail_text(detail: object) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(part) for part in item.get("loc", ()))
                parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return orjson.dumps(detail).decode()


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
