"""The settings of one LLM provider: ``LLMProviderConfig`` and its range checks.

A config table is ``[providers.<name>]`` with ``kind = "llm"`` and these fields; keys of an
``[llm_defaults]`` table apply to every such table (its own keys win).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from backtester.checks import is_integer, is_real
from backtester.errors import ConfigError
from backtester.providers.cache import CACHE_MODES

# How the provider is reached, cached and how its failures are handled: not part of the
# decision hash (config.py), so a record run and its replay share decision ids and one
# memory folder. structured_output and role are NOT here: they change the answers.
TRANSPORT_FIELDS = ("base_url", "api_key_env", "timeout_s", "max_retries", "backoff_s",
                    "max_concurrency", "requests_per_minute", "breaker_failures", "cache_mode",
                    "replay_miss", "price_per_1k_prompt_tokens",
                    "price_per_1k_completion_tokens", "on_failure", "max_failure_rate",
                    "preflight")
REPLAY_MISS_MODES = ("abstain", "error")
STRUCTURED_OUTPUTS = ("json_schema", "json_object", "none")  # also the fallback order
ON_FAILURE_MODES = ("stop", "abstain")
ROLES = ("", "bull", "bear", "judge")  # debate roles (ensemble.llm_mode = "debate")
DEFAULT_TEMPLATE = "configs/prompts/default.txt"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMProviderConfig:
    """One LLM provider: endpoint, model, sampling, limits, cache, prompt and failure policy.

    Parameters
    ----------
    name : str
        Provider name (letters, digits, ``_ . -``); also its cache file name.
    base_url : str
        OpenAI-compatible API root, e.g. ``http://127.0.0.1:11434/v1`` (Ollama).
    model : str
        Model name as the server lists it under ``GET /models``, e.g. ``llama3.1:8b``.
    api_key_env : str, default ""
        Name of the environment variable holding the API key ("" = no key). The key
        itself is never written to a file, log, error, repr or the cache.
    temperature : float, default 0.0
        Sampling temperature in [0, 2].
    max_tokens : int, default 200
        Completion tokens per answer, >= 1.
    structured_output : str, default "json_schema"
        How the answer's form is requested: "json_schema" (OpenAI ``response_format``
        with the answer's JSON schema), "json_object" (``{"type": "json_object",
        "schema": ...}``, as llama.cpp servers take it) or "none" (the prompt alone). A
        server that rejects the form gets the next one, once per run, with a warning.
        Part of the decision hash and of the response cache key.
    timeout_s : float, default 30.0
        Per request, > 0.
    max_retries : int, default 2
        Retries after a connection error, timeout, HTTP 429 or 5xx, in [0, 10].
    backoff_s : float, default 0.5
        First retry delay, doubled each retry (a Retry-After header wins), >= 0.
    max_concurrency : int, default 4
        Requests in flight at once, in [1, 256]; match the server's parallel slots
        (llama.cpp ``--parallel``, ``OLLAMA_NUM_PARALLEL``, vLLM's batch).
    requests_per_minute : float, default 0
        Rate limit; 0 = unlimited.
    breaker_failures : int, default 5
        Consecutive failed candidates that open the circuit breaker for the rest of
        the chunk, >= 1.
    on_failure : str, default "stop"
        What a chunk whose calls failed beyond ``max_failure_rate`` (or whose breaker
        opened) does: "stop" the run before the chunk is committed, or "abstain" (commit
        it, the failed candidates abstaining, the failure recorded).
    max_failure_rate : float, default 0.1
        Share in [0, 1] of the candidates needing a call that may fail in a chunk.
    preflight : bool, default True
        Before the first chunk (live and record modes), check the endpoint: ``GET
        /models`` and one real request.
    cache_mode : str, default "record"
        live (no cache), record (read hits, call and append misses) or replay (cache
        only, never the network).
    replay_miss : str, default "abstain"
        In replay mode, a missing response abstains or raises an error ("error").
    anonymize : bool, default False
        Hide symbol, dates and price levels from the model.
    prompt_template : str, default "configs/prompts/default.txt"
        Template file; a relative path is looked up from the working directory, then
        from the repository root. A debate role needs its own template
        (configs/prompts/bull.txt, bear.txt, judge.txt).
    role : str, default ""
        Debate role (``ensemble.llm_mode = "debate"``): "bull" or "bear" argue for and
        against the entry in free text, "judge" votes after reading both; "" = votes on
        its own.
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
    structured_output: str = "json_schema"
    timeout_s: float = 30.0
    max_retries: int = 2
    backoff_s: float = 0.5
    max_concurrency: int = 4
    requests_per_minute: float = 0.0
    breaker_failures: int = 5
    on_failure: str = "stop"
    max_failure_rate: float = 0.1
    preflight: bool = True
    cache_mode: str = "record"
    replay_miss: str = "abstain"
    anonymize: bool = False
    prompt_template: str = DEFAULT_TEMPLATE
    role: str = ""
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
        _choice(self, "structured_output", STRUCTURED_OUTPUTS)
        _number(self, "timeout_s", 0.0, math.inf, "a number of seconds > 0", low_open=True)
        _integer(self, "max_retries", 0, 10)
        _number(self, "backoff_s", 0.0, 600.0, "a number of seconds in [0, 600]")
        _integer(self, "max_concurrency", 1, 256)
        _number(self, "requests_per_minute", 0.0, math.inf, "a number >= 0 (0 = unlimited)")
        _integer(self, "breaker_failures", 1, 1_000_000)
        _choice(self, "on_failure", ON_FAILURE_MODES)
        _number(self, "max_failure_rate", 0.0, 1.0, "a share in [0, 1] such as 0.1")
        _flag(self, "preflight")
        _choice(self, "cache_mode", CACHE_MODES)
        _choice(self, "replay_miss", REPLAY_MISS_MODES)
        _flag(self, "anonymize")
        _text(self, "prompt_template", bool(str(self.prompt_template).strip()),
              "a template file such as 'configs/prompts/default.txt'")
        _choice(self, "role", ROLES)
        if self.role in ("bull", "bear") and self.prompt_template == DEFAULT_TEMPLATE:
            raise ConfigError(f"prompt_template must be an argument template for role "
                              f"'{self.role}', was '{DEFAULT_TEMPLATE}' (it asks for a vote); "
                              f"set prompt_template = 'configs/prompts/{self.role}.txt'")
        _number(self, "price_per_1k_prompt_tokens", 0.0, math.inf, "a price >= 0")
        _number(self, "price_per_1k_completion_tokens", 0.0, math.inf, "a price >= 0")
        _integer(self, "k_similar", 0, 1000)


def _text(config: LLMProviderConfig, field: str, ok: bool, expected: str) -> None:
    value = getattr(config, field)
    if not isinstance(value, str) or not ok:
        raise ConfigError(f"{field} must be {expected}, was {value!r}")


def _choice(config: LLMProviderConfig, field: str, choices: tuple[str, ...]) -> None:
    shown = ", ".join(f"'{c}'" if c else '""' for c in choices)
    _text(config, field, getattr(config, field) in choices, f"one of {shown}")


def _flag(config: LLMProviderConfig, field: str) -> None:
    value = getattr(config, field)
    if not isinstance(value, bool):
        raise ConfigError(f"{field} must be true or false, was {value!r}")


def _number(config: LLMProviderConfig, field: str, low: float, high: float, expected: str,
            *, low_open: bool = False) -> None:
    value = getattr(config, field)
    ok = is_real(value) and ((low < value if low_open else low <= value) and value <= high)
    if not ok:  # NaN fails every comparison
        raise ConfigError(f"{field} must be {expected}, was {value!r}")


def _integer(config: LLMProviderConfig, field: str, low: int, high: int) -> None:
    value = getattr(config, field)
    if not (is_integer(value) and low <= value <= high):
        raise ConfigError(f"{field} must be a whole number in [{low}, {high}], was {value!r}")
