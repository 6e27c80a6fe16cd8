"""LLM decision providers: a prompt per candidate, an OpenAI-compatible chat endpoint, a vote.

Every call goes through a response cache (``cache_mode`` live | record | replay), so a
backtest can be re-run offline, deterministic and free. A malformed answer, a failed call
or a replay miss is an abstention (vote 0, confidence 0), counted in ``report()``.

A config table is ``[providers.<name>]`` with ``kind = "llm"`` and the fields of
``LLMProviderConfig``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backtester.engine.records import EXIT_REASON_NAMES
from backtester.errors import BtError, ConfigError
from backtester.features import FEATURE_NAMES
from backtester.providers.base import Candidates, MarketContext, Similar, Votes
from backtester.providers.cache import CACHE_MODES, ResponseCache, cache_key
from backtester.providers.http import ChatClient, ChatResult, Messages
from backtester.regime import REGIME_NAMES

KIND = "llm"
# How the provider is reached and cached: not part of the decision hash (config.py), so a
# record run and its replay share decision ids and one memory folder.
TRANSPORT_FIELDS = ("base_url", "api_key_env", "timeout_s", "max_retries", "backoff_s",
                    "max_concurrency", "requests_per_minute", "breaker_failures", "cache_mode",
                    "replay_miss", "price_per_1k_prompt_tokens",
                    "price_per_1k_completion_tokens")
REPLAY_MISS_MODES = ("abstain", "error")
RECENT_BARS = 10  # closes shown in a prompt, the candidate bar being the last
ACTIONS = {"buy": 1, "sell": -1, "hold": 0}
TEMPLATE_FIELDS = ("symbol", "time", "timeframe", "regime", "features", *FEATURE_NAMES,
                   "recent_closes", "similar")
COUNTERS = (
    "requests",  # HTTP requests sent, retries included
    "cache_hits",
    "cache_misses",  # candidates not in the cache (record: requested; replay: abstained)
    "abstentions_malformed",  # the answer was not the expected JSON
    "abstentions_error",  # the call failed after its retries (network, timeout, HTTP error)
    "abstentions_breaker",  # not called: the circuit breaker was open
    "abstentions_replay_miss",  # replay mode, no cached response
    "timeouts",  # requests that timed out
    "retries",
    "rate_limited",  # HTTP 429 answers
    "breaker_open",  # 1 once the breaker opened in this chunk
    "prompt_tokens",  # tokens of live calls only: cache hits cost nothing
    "completion_tokens",
)
# The system message of a template without a [system] line (a template: braces doubled).
DEFAULT_SYSTEM = ('You are a trading analyst. Answer with one JSON object only: {{"action": '
                  '"buy" | "sell" | "hold", "confidence": <number in [0, 1]>, '
                  '"reasoning": "<one sentence>"}}.')
_REPO_ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMProviderConfig:
    """One LLM provider: endpoint, model, sampling, limits, cache and prompt.

    Parameters
    ----------
    name : str
        Provider name (letters, digits, ``_ . -``); also its cache file name.
    base_url : str
        OpenAI-compatible API root, e.g. ``http://127.0.0.1:11434/v1`` (Ollama).
    model : str
        Model name, e.g. ``llama3.1:8b``.
    api_key_env : str, default ""
        Name of the environment variable holding the API key ("" = no key). The key
        itself is never written to a file, log, error, repr or the cache.
    temperature : float, default 0.0
        Sampling temperature in [0, 2].
    max_tokens : int, default 200
        Completion tokens per answer, >= 1.
    timeout_s : float, default 30.0
        Per request, > 0.
    max_retries : int, default 2
        Retries after a connection error, timeout, HTTP 429 or 5xx, in [0, 10].
    backoff_s : float, default 0.5
        First retry delay, doubled each retry (a Retry-After header wins), >= 0.
    max_concurrency : int, default 4
        Requests in flight at once, in [1, 256].
    requests_per_minute : float, default 0
        Rate limit; 0 = unlimited.
    breaker_failures : int, default 5
        Consecutive failed candidates that open the circuit breaker for the rest of
        the chunk, >= 1.
    cache_mode : str, default "record"
        live (no cache), record (read hits, call and append misses) or replay (cache
        only, never the network).
    replay_miss : str, default "abstain"
        In replay mode, a missing response abstains or raises an error ("error").
    anonymize : bool, default False
        Hide symbol, dates and price levels from the model.
    prompt_template : str, default "configs/prompts/default.txt"
        Template file; a relative path is looked up from the working directory, then
        from the repository root.
    price_per_1k_prompt_tokens, price_per_1k_completion_tokens : float, default 0
        Prices for the ``cost`` figure of ``report()``.
    k_similar : int, default 5
        Past similar situations shown per candidate, >= 0.
    """

    name: str
    base_url: str
    model: str
    api_key_env: str = ""
    temperature: float = 0.0
    max_tokens: int = 200
    timeout_s: float = 30.0
    max_retries: int = 2
    backoff_s: float = 0.5
    max_concurrency: int = 4
    requests_per_minute: float = 0.0
    breaker_failures: int = 5
    cache_mode: str = "record"
    replay_miss: str = "abstain"
    anonymize: bool = False
    prompt_template: str = "configs/prompts/default.txt"
    price_per_1k_prompt_tokens: float = 0.0
    price_per_1k_completion_tokens: float = 0.0
    k_similar: int = 5

    def __post_init__(self) -> None:
        _text(self, "name", _NAME.fullmatch(str(self.name)) is not None,
              "letters, digits, '_', '.' or '-' (it names the cache file), such as 'llama3_8b'")
        _text(self, "base_url", str(self.base_url).startswith(("http://", "https://")),
              "an http:// or https:// URL such as 'http://127.0.0.1:11434/v1'")
        _text(self, "model", bool(str(self.model).strip()), "a model name such as 'llama3.1:8b'")
        _text(self, "api_key_env",
              self.api_key_env == "" or _ENV_NAME.fullmatch(str(self.api_key_env)) is not None,
              "the NAME of an environment variable, such as 'OPENAI_API_KEY', or \"\"")
        _number(self, "temperature", 0.0, 2.0, "a number in [0, 2]")
        _integer(self, "max_tokens", 1, 1_000_000)
        _number(self, "timeout_s", 0.0, math.inf, "a number of seconds > 0", low_open=True)
        _integer(self, "max_retries", 0, 10)
        _number(self, "backoff_s", 0.0, 600.0, "a number of seconds in [0, 600]")
        _integer(self, "max_concurrency", 1, 256)
        _number(self, "requests_per_minute", 0.0, math.inf, "a number >= 0 (0 = unlimited)")
        _integer(self, "breaker_failures", 1, 1_000_000)
        _text(self, "cache_mode", self.cache_mode in CACHE_MODES,
              f"one of {', '.join(CACHE_MODES)}")
        _text(self, "replay_miss", self.replay_miss in REPLAY_MISS_MODES,
              f"one of {', '.join(REPLAY_MISS_MODES)}")
        if not isinstance(self.anonymize, bool):
            raise ConfigError(f"anonymize must be true or false, was {self.anonymize!r}")
        _text(self, "prompt_template", bool(str(self.prompt_template).strip()),
              "a template file such as 'configs/prompts/default.txt'")
        _number(self, "price_per_1k_prompt_tokens", 0.0, math.inf, "a price >= 0")
        _number(self, "price_per_1k_completion_tokens", 0.0, math.inf, "a price >= 0")
        _integer(self, "k_similar", 0, 1000)


CONFIG_CLASS = LLMProviderConfig


def _text(config: LLMProviderConfig, field: str, ok: bool, expected: str) -> None:
    value = getattr(config, field)
    if not isinstance(value, str) or not ok:
        raise ConfigError(f"{field} must be {expected}, was {value!r}")


def _number(config: LLMProviderConfig, field: str, low: float, high: float, expected: str,
            *, low_open: bool = False) -> None:
    value = getattr(config, field)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        (low < value if low_open else low <= value) and value <= high)
    if not ok:  # NaN fails every comparison
        raise ConfigError(f"{field} must be {expected}, was {value!r}")


def _integer(config: LLMProviderConfig, field: str, low: int, high: int) -> None:
    value = getattr(config, field)
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and low <= value <= high):
        raise ConfigError(f"{field} must be a whole number in [{low}, {high}], was {value!r}")


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A system and a user message with ``str.format`` fields (``TEMPLATE_FIELDS``).

    File format: leading ``#`` lines are comments; a ``[system]`` line starts the system
    message (optional), a ``[user]`` line the user message. Literal braces are ``{{ }}``.
    """

    system: str
    user: str
    source: str = "<string>"

    @classmethod
    def load(cls, path: str | Path) -> PromptTemplate:
        """Read and check a template file (relative: working directory, then repo root)."""
        path = Path(path)
        found = next((p for p in ([path] if path.is_absolute() else [path, _REPO_ROOT / path])
                      if p.is_file()), None)
        if found is None:
            raise ConfigError(f"prompt_template: file not found, was '{path}'; point it at a "
                              "template such as configs/prompts/default.txt")
        return cls.parse(found.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "<string>") -> PromptTemplate:
        """Split a template's text into its messages and check its fields."""
        lines = text.splitlines()
        while lines and (lines[0].startswith("#") or not lines[0].strip()):
            lines.pop(0)
        sections: dict[str, list[str]] = {}
        current = None
        for line in lines:
            marker = line.strip().lower()
            if marker in ("[system]", "[user]"):
                current = sections.setdefault(marker[1:-1], [])
            elif current is not None:
                current.append(line)
            elif line.strip():
                raise ConfigError(f"{source}: text before the [system] or [user] line, was "
                                  f"{line.strip()[:40]!r}; start the messages with [system] "
                                  "and [user] lines")
        if "user" not in sections:
            raise ConfigError(f"{source}: no [user] line in the prompt template; add one "
                              "before the user message")
        template = cls("\n".join(sections.get("system", [DEFAULT_SYSTEM])).strip(),
                       "\n".join(sections["user"]).strip(), source)
        template.render(dict.fromkeys(TEMPLATE_FIELDS, ""))  # fails early on a bad field
        return template

    def render(self, fields: dict[str, str]) -> Messages:
        """The chat messages for one candidate."""
        try:
            system = self.system.format_map(fields)
            user = self.user.format_map(fields)
        except KeyError as e:
            raise ConfigError(f"{self.source}: unknown field {{{e.args[0]}}} in the prompt "
                              f"template; use one of {', '.join(TEMPLATE_FIELDS)}") from None
        except (ValueError, IndexError) as e:
            raise ConfigError(f"{self.source}: malformed braces in the prompt template ({e}); "
                              "write a literal brace as {{ or }}") from None
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_answer(content: str) -> tuple[int, float, str] | None:
    """(vote, confidence, reasoning) from a model's answer, or None when malformed.

    Accepts the JSON object alone, inside a ```json fence, or after leading text.
    """
    answer = _find_answer(content)
    if answer is None:
        return None
    action = answer.get("action")
    confidence = answer.get("confidence")
    if not isinstance(action, str) or action.strip().lower() not in ACTIONS:
        return None
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
        return None
    if not 0.0 <= confidence <= 1.0:  # NaN fails too
        return None
    reasoning = answer.get("reasoning", "")
    reasoning = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
    return ACTIONS[action.strip().lower()], float(confidence), reasoning.strip()


def _find_answer(content: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    texts = [m.group(1) for m in _FENCE.finditer(content)] + [content]
    for text in texts:
        start = text.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                value = None
            if isinstance(value, dict) and "action" in value:
                return value
            start = text.find("{", start + 1)
    return None


def prompt_fields(context: MarketContext, bar: int, asset: int, similar: list[dict] | None,
                  *, anonymize: bool = False, k_similar: int = 5) -> dict[str, str]:
    """The template's fields for the candidate (bar, asset); reads bars <= ``bar`` only.

    Anonymised: the symbol becomes ``ASSET_<asset>``, times become relative to the
    candidate bar ``t``, closes are rebased to 100 at the first one shown, and the free
    text of similar situations is left out (it may name symbols, dates or prices).
    """
    bars = context.bars
    values = context.features[bar, asset].tolist()
    features = {name: _format_number(values[i], "{:.4g}") for i, name in enumerate(FEATURE_NAMES)}
    first = max(0, bar - RECENT_BARS + 1)
    closes = bars.close[first:bar + 1, asset].tolist()
    if anonymize:
        base = next((c for c in closes if math.isfinite(c) and c != 0.0), 1.0)
        shown = [_format_number(c / base * 100.0, "{:.2f}") for c in closes]
    else:
        shown = [_format_number(c, "{:.6g}") for c in closes]
    last = len(shown) - 1
    return {
        "symbol": f"ASSET_{asset}" if anonymize else bars.symbols[asset],
        "time": "bar t" if anonymize else _format_time(int(bars.times[bar])),
        "timeframe": bars.timeframe,
        "regime": REGIME_NAMES.get(int(context.regimes[bar, asset]), "UNKNOWN"),
        "features": "\n".join(f"{name}: {text}" for name, text in features.items()),
        **features,
        "recent_closes": "\n".join(f"t-{last - i}: {c}" if i < last else f"t: {c}"
                                   for i, c in enumerate(shown)),
        "similar": _format_similar(similar, k_similar, anonymize),
    }


def _format_number(value: float, spec: str) -> str:
    return spec.format(value) if math.isfinite(value) else "n/a"


def _format_time(nanoseconds: int) -> str:
    text = np.datetime_as_string(np.datetime64(nanoseconds, "ns"), unit="m")
    return text.replace("T", " ") + " UTC"


_REAL = (int, float, np.integer, np.floating)
_INTEGER = (int, np.integer)
_DIRECTIONS = {1: "long", -1: "short", 0: "flat"}


def _format_similar(similar: list[dict] | None, k: int, anonymize: bool) -> str:
    items = list(similar or [])[:k]
    if not items:
        return "none available"
    lines = []
    for n, item in enumerate(items, start=1):
        direction = item.get("direction")
        if isinstance(direction, _REAL) and math.isfinite(direction):
            direction = _DIRECTIONS[(direction > 0) - (direction < 0)]
        reason = item.get("exit_reason")
        if isinstance(reason, _INTEGER):
            reason = EXIT_REASON_NAMES.get(int(reason), str(reason))
        regime = item.get("regime")
        if isinstance(regime, _INTEGER):
            regime = REGIME_NAMES.get(int(regime), str(regime))
        result = item.get("return_pct")
        result = (f"{result:+.2f}%" if isinstance(result, _REAL) and math.isfinite(result)
                  else "n/a")
        line = (f"{n}. {direction or 'n/a'}, return {result}, exit {reason or 'n/a'}, "
                f"regime {regime or 'n/a'}")
        description = item.get("description")
        if description and not anonymize:
            line += f": {' '.join(str(description).split())}"
        lines.append(line)
    return "\n".join(lines)


class LLMProvider:
    """Votes on candidates by asking a chat model, through the response cache.

    Parameters
    ----------
    config : LLMProviderConfig
        The provider's settings.
    cache_dir : Path
        Folder of the response caches (e.g. ``data/memory/llm_cache``); this provider's
        file is ``<cache_dir>/<name>.jsonl``.

    Raises
    ------
    ConfigError
        If the prompt template is missing or malformed, or ``api_key_env`` names an
        unset variable (except in replay mode, which never calls the network).
    """

    uses_similar = True  # prompts show the k most similar past situations

    def __init__(self, config: LLMProviderConfig, cache_dir: Path) -> None:
        self.config = config
        self.name = config.name
        self.template = PromptTemplate.load(config.prompt_template)
        self.cache = (None if config.cache_mode == "live"
                      else ResponseCache(Path(cache_dir) / f"{config.name}.jsonl"))
        self._client: ChatClient | None = None
        if config.cache_mode != "replay":
            self._client = ChatClient(
                config.base_url, config.model, api_key=_read_api_key(config),
                timeout_s=config.timeout_s, max_retries=config.max_retries,
                backoff_s=config.backoff_s, max_concurrency=config.max_concurrency,
                requests_per_minute=config.requests_per_minute,
                breaker_failures=config.breaker_failures,
            )
        self._counts = dict.fromkeys(COUNTERS, 0)

    def __repr__(self) -> str:
        c = self.config
        return (f"LLMProvider(name={c.name!r}, model={c.model!r}, base_url={c.base_url!r}, "
                f"cache_mode={c.cache_mode!r})")

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]:
        """Start a chunk: reset the counters and close the circuit breaker."""
        self._counts = dict.fromkeys(COUNTERS, 0)
        if self._client is not None:
            self._client.breaker.reset()
        return {}

    def report(self) -> dict[str, float]:
        """The chunk's counters (see ``COUNTERS``) and ``cost`` of its live calls."""
        out = {key: float(value) for key, value in self._counts.items()}
        out["cost"] = (out["prompt_tokens"] / 1000 * self.config.price_per_1k_prompt_tokens
                       + out["completion_tokens"] / 1000
                       * self.config.price_per_1k_completion_tokens)
        return out

    def messages(self, context: MarketContext, bar: int, asset: int,
                 similar: list[dict] | None = None) -> Messages:
        """The chat messages sent for the candidate (bar, asset)."""
        fields = prompt_fields(context, bar, asset, similar, anonymize=self.config.anonymize,
                               k_similar=self.config.k_similar)
        return self.template.render(fields)

    def vote(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> Votes:
        """Ask the model about every candidate (cache first); abstain where it fails."""
        n = len(candidates)
        if similar is not None and len(similar) != n:
            raise BtError(f"LLM provider '{self.name}': similar has {len(similar)} lists, was "
                          f"expected one per candidate ({n}); pass None or one list each")
        config = self.config
        messages = [
            self.messages(context, int(candidates.bar[i]), int(candidates.asset[i]),
                          similar[i] if similar is not None else None)
            for i in range(n)
        ]
        contents: list[str | None] = [None] * n
        pending: dict[str, list[int]] = {}  # key -> candidates asking exactly that
        for i, message in enumerate(messages):
            key = cache_key(self.name, config.model, message, config.temperature,
                            config.max_tokens)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                contents[i] = hit.response
                self._counts["cache_hits"] += 1
                continue
            if self.cache is not None:
                self._counts["cache_misses"] += 1
            pending.setdefault(key, []).append(i)
        if pending and self._client is None:
            self._replay_miss(context, candidates, pending)
        elif pending:
            self._call(messages, pending, contents)

        vote = np.zeros(n, dtype=np.int8)
        confidence = np.zeros(n, dtype=np.float64)
        reasoning = [""] * n
        for i, content in enumerate(contents):
            if content is None:
                continue  # counted where it failed
            answer = parse_answer(content)
            if answer is None:
                self._counts["abstentions_malformed"] += 1
                continue
            vote[i], confidence[i], reasoning[i] = answer
        return Votes(vote, confidence, tuple(reasoning))

    def _replay_miss(self, context: MarketContext, candidates: Candidates,
                     pending: dict[str, list[int]]) -> None:
        missing = sum(len(indices) for indices in pending.values())
        if self.config.replay_miss == "error":
            i = min(min(indices) for indices in pending.values())
            bar, asset = int(candidates.bar[i]), int(candidates.asset[i])
            where = f"{context.bars.symbols[asset]} at {_format_time(int(context.bars.times[bar]))}"
            raise BtError(
                f"LLM provider '{self.name}': no cached response for {missing} of "
                f"{len(candidates)} candidates (first: {where}) in {self.cache.path} and "
                "cache_mode is 'replay'; run once with cache_mode = 'record', or set "
                "replay_miss = 'abstain'")
        self._counts["abstentions_replay_miss"] += missing

    def _call(self, messages: list[Messages], pending: dict[str, list[int]],
              contents: list[str | None]) -> None:
        client = self._client
        config = self.config
        keys = list(pending)
        batch = [messages[pending[key][0]] for key in keys]
        answers: dict[int, str] = {}
        appender = (self.cache.appender(provider=self.name, model=config.model)
                    if self.cache is not None else nullcontext(None))
        with appender as append:

            def keep(j: int, result: ChatResult) -> None:
                if result.ok:
                    answers[j] = client.redact(result.content)
                    if append is not None:
                        usage = {"prompt_tokens": result.prompt_tokens,
                                 "completion_tokens": result.completion_tokens}
                        append(keys[j], answers[j], usage)

            results = client.complete_many(batch, temperature=config.temperature,
                                           max_tokens=config.max_tokens, on_result=keep)
        counts = self._counts
        failed = 0
        last_error = ""
        for j, (key, result) in enumerate(zip(keys, results)):
            counts["requests"] += result.attempts
            counts["retries"] += result.retries
            counts["timeouts"] += result.timeouts
            counts["rate_limited"] += result.rate_limited
            counts["prompt_tokens"] += result.prompt_tokens
            counts["completion_tokens"] += result.completion_tokens
            for i in pending[key]:
                contents[i] = answers.get(j)
            if not result.ok:
                failed += 1
                reason = "abstentions_breaker" if result.skipped else "abstentions_error"
                counts[reason] += len(pending[key])
                last_error = last_error if result.skipped else result.error
        if client.breaker.is_open:
            counts["breaker_open"] = 1
        if failed:
            breaker = ("; the circuit breaker opened, the rest of the chunk abstains"
                       if client.breaker.is_open else "")
            warnings.warn(
                f"LLM provider '{self.name}': {failed} of {len(batch)} requests to "
                f"{config.base_url} failed (last error: {last_error or 'breaker open'})"
                f"{breaker}; those candidates abstain",
                RuntimeWarning, stacklevel=3)


def _read_api_key(config: LLMProviderConfig) -> str:
    if not config.api_key_env:
        return ""
    value = os.environ.get(config.api_key_env, "")
    if not value:
        raise ConfigError(
            f"providers.{config.name}.api_key_env: the environment variable "
            f"{config.api_key_env} is not set or empty; export {config.api_key_env} with "
            "the API key, or run with cache_mode = 'replay'")
    return value


PROVIDER_CLASS = LLMProvider
