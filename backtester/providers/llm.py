"""LLM decision providers: a prompt per candidate, an OpenAI-compatible chat endpoint, a vote.

Every call goes through a response cache (``cache_mode`` live | record | replay), so a
backtest can be re-run offline, deterministic and free. The answer's form is requested
with ``response_format`` (``structured_output``; a server refusing it gets the next form,
once per run, with a warning). A malformed answer, a failed call or a replay miss is an
abstention (``Votes.abstained``), counted in ``report()``.

What the runner calls besides the ``Provider`` protocol:

- ``preflight(context=None)`` before the first chunk: ``GET /models`` and one real request;
  raises ``ProviderError`` with one line when the endpoint is unusable.
- ``plan(context, candidates, similar)``: how many calls a chunk needs, without a request.
- ``chunk_failure()`` after ``vote``: a one-line reason when the chunk's calls failed
  beyond the failure policy (whatever ``on_failure`` says; the runner acts on it).
- ``structured_output_used``: the form in use after any fallback (a string, for metrics).
- ``report()``: numbers, plus ``structured_output_used`` (str) and ``sample_malformed``
  (a list of up to three raw answers) when some answers were malformed.

A config table is ``[providers.<name>]`` with ``kind = "llm"`` and the fields of
``LLMProviderConfig`` (backtester/providers/llm_config.py).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from backtester.errors import BtError, ConfigError, ProviderError
from backtester.providers import preflight as explain
from backtester.providers.answers import next_form, parse_answer, response_format, sample
from backtester.providers.base import Candidates, MarketContext, Similar, Votes
from backtester.providers.cache import ResponseCache, cache_key
from backtester.providers.http import ChatClient, ChatResult, Messages
from backtester.providers.llm_config import (
    REPLAY_MISS_MODES,
    STRUCTURED_OUTPUTS,
    TRANSPORT_FIELDS,
    LLMProviderConfig,
)
from backtester.providers.prompts import (
    DEBATE_FIELDS,
    DEFAULT_SYSTEM,
    RECENT_BARS,
    TEMPLATE_FIELDS,
    PromptTemplate,
    format_time,
    placeholder_fields,
    placeholder_similar,
    prompt_fields,
)

KIND = "llm"
COUNTERS = (
    "requests",  # HTTP requests sent, retries and refused structured-output forms included
    "calls_tried",  # distinct prompts sent to the server (a repeated prompt is asked once)
    "calls_failed",  # of those, failed after their retries (network, timeout, HTTP error)
    "calls_skipped",  # distinct prompts not sent: the circuit breaker was open
    "cache_hits",
    "cache_misses",  # candidates not in the cache (record: requested; replay: abstained)
    "abstentions",  # candidates without a vote, all reasons below together
    "abstentions_malformed",  # the answer was not the expected JSON
    "abstentions_error",  # the call failed after its retries (network, timeout, HTTP error)
    "abstentions_breaker",  # not called: the circuit breaker was open
    "abstentions_replay_miss",  # replay mode, no cached response
    "format_rejections",  # requests whose response_format the server refused
    "timeouts",  # requests that timed out
    "retries",
    "rate_limited",  # HTTP 429 answers
    "breaker_open",  # 1 once the breaker opened in this chunk
    "prompt_tokens",  # tokens of live calls only: cache hits cost nothing
    "completion_tokens",
)
# How answers were obtained (network or cache): a record run and its replay differ here
# and nowhere else, so these are run telemetry (runs/<id>/llm_usage.json), never results
# (the memory folder and metrics.json). A debate reports them per role too (bull_requests).
USAGE_COUNTERS = ("requests", "calls_tried", "cache_hits", "cache_misses",
                  "format_rejections", "timeouts", "retries", "rate_limited", "prompt_tokens",
                  "completion_tokens", "cost", "structured_output_used")
MAX_SAMPLES = 3  # malformed answers kept per chunk in report()["sample_malformed"]
PLACEHOLDER_ARGUMENT = (  # a debate argument of realistic length, for a preflight prompt
    "The close sits above the 20- and 50-bar averages with RSI in the mid fifties, MACD "
    "above its signal and volume above its mean; similar past situations mostly reached "
    "their target. The risk is a fading move in a ranging market.")


def usage_of(report: dict[str, Any]) -> dict[str, Any]:
    """The telemetry in a provider's ``report()`` (``USAGE_COUNTERS``, also per role)."""
    return {key: value for key, value in report.items()
            if key in USAGE_COUNTERS or key.partition("_")[2] in USAGE_COUNTERS}


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
        If the prompt template is missing or malformed (a judge's must show both
        debate arguments), or ``api_key_env`` names an unset variable (except in replay
        mode, which never calls the network).
    """

    uses_similar = True  # prompts show the k most similar past situations

    def __init__(self, config: LLMProviderConfig, cache_dir: Path, *,
                 template_folder: Path | None = None, explicit_template: bool = False) -> None:
        self.config = config
        self.name = config.name
        judge = config.role == "judge"
        self.template = PromptTemplate.load(
            config.prompt_template, fields=TEMPLATE_FIELDS + (DEBATE_FIELDS if judge else ()),
            folder=template_folder, explicit=explicit_template)
        missing = [f"{{{f}}}" for f in DEBATE_FIELDS if f not in self.template.used_fields()]
        if judge and missing:
            raise ConfigError(f"providers.{config.name}.prompt_template: a judge's template "
                              f"must show {' and '.join(missing)}, was '{config.prompt_template}'"
                              "; use configs/prompts/judge.txt")
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
        self.structured_output_used = config.structured_output  # after any fallback
        self._form_settled = False  # a request with the form in use was answered
        self._reset()

    def __repr__(self) -> str:
        c = self.config
        return (f"LLMProvider(name={c.name!r}, model={c.model!r}, base_url={c.base_url!r}, "
                f"cache_mode={c.cache_mode!r})")

    @property
    def on_failure(self) -> str:
        """The failure policy, ``stop`` or ``abstain``: what the runner does when
        ``chunk_failure()`` gives a reason."""
        return self.config.on_failure

    @property
    def max_concurrency(self) -> int:
        """Requests this provider keeps in flight at once."""
        return self.config.max_concurrency

    def _reset(self) -> None:
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._samples: list[str] = []
        self._needed = 0  # candidates that needed a call in this chunk
        self._last_failure: ChatResult | None = None

    # -- the Provider protocol

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]:
        """Start a chunk: reset the counters and close the circuit breaker."""
        self._reset()
        if self._client is not None:
            self._client.breaker.reset()
        return {}

    usage = staticmethod(usage_of)  # the runner keeps these out of the results

    def report(self) -> dict[str, Any]:
        """The chunk's counters (see ``COUNTERS``) and ``cost`` of its live calls, as
        floats; ``structured_output_used`` (str, the form in use after any fallback); and
        ``sample_malformed`` (list of str, up to three raw answers cut to 300 characters)
        only when some answers were malformed."""
        out: dict[str, Any] = {key: float(value) for key, value in self._counts.items()}
        out["cost"] = (out["prompt_tokens"] / 1000 * self.config.price_per_1k_prompt_tokens
                       + out["completion_tokens"] / 1000
                       * self.config.price_per_1k_completion_tokens)
        out["structured_output_used"] = self.structured_output_used
        if self._samples:
            out["sample_malformed"] = list(self._samples)
        return out

    def vote(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> Votes:
        """Ask the model about every candidate (cache first); abstain where it fails."""
        messages = self.render_all(context, candidates, similar)
        contents = self.ask(messages, where=candidate_names(context, candidates))
        return self.parse(contents)

    # -- the steps of a vote, also used by the debate

    def fields(self, context: MarketContext, bar: int, asset: int,
               similar: list[dict] | None = None) -> dict[str, str]:
        """The template fields of the candidate (bar, asset) with this provider's settings."""
        return prompt_fields(context, bar, asset, similar, anonymize=self.config.anonymize,
                             k_similar=self.config.k_similar)

    def messages(self, context: MarketContext, bar: int, asset: int,
                 similar: list[dict] | None = None) -> Messages:
        """The chat messages sent for the candidate (bar, asset)."""
        return self.template.render(self.fields(context, bar, asset, similar))

    def render_all(self, context: MarketContext, candidates: Candidates,
                   similar: Similar | None) -> list[Messages]:
        """The messages of every candidate."""
        n = len(candidates)
        if similar is not None and len(similar) != n:
            raise BtError(f"LLM provider '{self.name}': similar has {len(similar)} lists, was "
                          f"expected one per candidate ({n}); pass None or one list each")
        return [self.messages(context, int(candidates.bar[i]), int(candidates.asset[i]),
                              similar[i] if similar is not None else None) for i in range(n)]

    def ask(self, messages: list[Messages], *, structured: bool = True,
            where: Callable[[int], str] | None = None) -> list[str | None]:
        """The answer to each message list: cache first, then the server; None where the
        call failed, was skipped by the breaker or missed in replay (counted).

        ``structured`` False asks for free text (a debate argument): no response_format.
        ``where(i)`` names candidate i in a replay-miss error.
        """
        contents: list[str | None] = [None] * len(messages)
        pending: dict[str, list[int]] = {}  # key -> the candidates asking exactly that
        for i, message in enumerate(messages):
            key = self._key(message, structured)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                contents[i] = hit.response
                self._counts["cache_hits"] += 1
                continue
            if self.cache is not None:
                self._counts["cache_misses"] += 1
            pending.setdefault(key, []).append(i)
        if pending and self._client is None:
            self._replay_miss(pending, len(messages), where)
        elif pending:
            self._call(messages, pending, contents, structured)
        return contents

    @property
    def replaying(self) -> bool:
        """Whether answers come from the cache only (replay mode)."""
        return self._client is None

    def peek(self, messages: list[Messages], *, structured: bool = True) -> list[str | None]:
        """The cached answer to each message list, or None; counts nothing, calls nothing."""
        if self.cache is None:
            return [None] * len(messages)
        hits = [self.cache.get(self._key(m, structured)) for m in messages]
        return [hit.response if hit is not None else None for hit in hits]

    def parse(self, contents: list[str | None]) -> Votes:
        """Votes from the answers; a missing (already counted) or malformed one abstains."""
        n = len(contents)
        vote = np.zeros(n, dtype=np.int8)
        confidence = np.zeros(n, dtype=np.float64)
        abstained = np.ones(n, dtype=bool)
        reasoning = [""] * n
        for i, content in enumerate(contents):
            if content is None:
                continue  # counted where it failed
            answer = parse_answer(content)
            if answer is None:
                self._counts["abstentions_malformed"] += 1
                self._counts["abstentions"] += 1
                if len(self._samples) < MAX_SAMPLES:
                    self._samples.append(sample(content))
                continue
            vote[i], confidence[i], reasoning[i] = answer
            abstained[i] = False
        return Votes(vote, confidence, tuple(reasoning), abstained)

    # -- planning, failure policy, preflight

    def plan(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> dict[str, int]:
        """What voting on ``candidates`` would take, without a request: ``candidates``,
        ``calls`` (distinct prompts to send), ``cached`` (candidates the cache answers)
        and ``missing`` (replay mode: candidates the cache lacks, which would abstain)."""
        return self.plan_messages(self.render_all(context, candidates, similar))

    def plan_messages(self, messages: list[Messages], *, structured: bool = True
                      ) -> dict[str, int]:
        """``plan`` for message lists already rendered."""
        keys = [self._key(m, structured) for m in messages]
        uncached = [k for k in keys if self.cache is None or k not in self.cache]
        replay = self.replaying
        return {"candidates": len(keys), "calls": 0 if replay else len(set(uncached)),
                "cached": len(keys) - len(uncached), "missing": len(uncached) if replay else 0}

    def chunk_failure(self) -> str | None:
        """After ``vote``: why this chunk's calls failed beyond the failure policy (the
        breaker opened, or failed and skipped candidates exceed ``max_failure_rate`` of
        those that needed a call), as one line; None when they did not."""
        c, config = self._counts, self.config
        failed = c["abstentions_error"] + c["abstentions_breaker"]
        head = explain.who(self.name, config.model, config.base_url)
        calls = (f"{c['calls_tried']} calls tried, {c['calls_failed']} failed, "
                 f"{c['calls_skipped']} skipped by the circuit breaker")
        if c["breaker_open"]:
            reason = (f"the circuit breaker opened after {config.breaker_failures} failed "
                      f"calls in a row ({calls})")
        elif self._needed and failed > config.max_failure_rate * self._needed:
            reason = (f"{failed} of {self._needed} candidates that needed a call failed "
                      f"({failed / self._needed:.0%} > max_failure_rate "
                      f"{config.max_failure_rate:.0%}; {calls})")
        else:
            return None
        last = self._last_failure
        if last is None:
            return f"{head}: {reason}"
        hint = explain.failure_hint(last, base_url=config.base_url,
                                    api_key_env=config.api_key_env, max_tokens=config.max_tokens)
        return f"{head}: {reason}; last error: {last.error}; {hint}"

    def preflight(self, context: MarketContext | None = None) -> dict[str, Any]:
        """Check the endpoint before the first chunk (live and record modes).

        ``GET {base_url}/models`` where the server has it (is the model served?), then
        one real request through the voting path (structured output included, so a
        fallback happens here, once), with a prompt of realistic length: the last bar
        of the first asset of ``context`` (or neutral placeholder fields) and
        ``k_similar`` placeholder past situations. Replay mode, or ``preflight = false``,
        does nothing and returns {}.

        Returns
        -------
        dict
            ``latency_s`` (float, the request's wall time), ``models`` (list of str, what
            the server lists; [] when it has no list), ``structured_output_used`` (str)
            and ``answer_ok`` (bool: the answer parsed; a free-text role: it is not empty).

        Raises
        ------
        ProviderError
            One line naming the provider, the URL, the model, the server's own error text
            and what to do.
        """
        config, client = self.config, self._client
        if client is None or not config.preflight:
            return {}
        listing = client.list_models()
        problem = explain.listing_problem(self.name, config.model, config.base_url,
                                          config.api_key_env, listing)
        if problem:
            raise ProviderError(problem)
        structured = config.role not in ("bull", "bear")
        messages = self.template.render(self._preflight_fields(context))
        form = self.structured_output_used
        start = time.perf_counter()
        result = self._send([messages], structured=structured)[0]
        latency = time.perf_counter() - start
        if result.ok and self.structured_output_used != form:
            # the server refused the first form: time one request of the form in use, so
            # the run's time estimate is not inflated by the refusal (another bar's prompt:
            # a server may cache a prompt it has just seen)
            again = self.template.render(self._preflight_fields(context, back=1))
            start = time.perf_counter()
            result = self._send([again], structured=structured)[0]
            latency = time.perf_counter() - start
        if not result.ok:
            raise ProviderError(explain.failure_line(
                self.name, config.model, config.base_url, config.api_key_env, result,
                max_tokens=config.max_tokens, models=listing.models))
        content = client.redact(result.content)
        return {"latency_s": latency, "models": list(listing.models or ()),
                "structured_output_used": self.structured_output_used,
                "answer_ok": (parse_answer(content) is not None) if structured
                else bool(content.strip())}

    def _preflight_fields(self, context: MarketContext | None,
                          back: int = 0) -> dict[str, str]:
        """A real prompt's fields: the last bar (``back`` bars earlier) of the first asset."""
        k, anonymize = self.config.k_similar, self.config.anonymize
        if context is not None and context.bars.n_bars:
            bar = max(context.bars.n_bars - 1 - back, 0)
            fields = prompt_fields(context, bar, 0, placeholder_similar(k),
                                   anonymize=anonymize, k_similar=k)
        else:
            fields = placeholder_fields(k_similar=k, anonymize=anonymize)
        return {**fields, **dict.fromkeys(DEBATE_FIELDS, PLACEHOLDER_ARGUMENT)}

    # -- calls

    def _key(self, messages: Messages, structured: bool) -> str:
        config = self.config
        return cache_key(self.name, config.model, messages, config.temperature,
                         config.max_tokens,
                         structured_output=config.structured_output if structured else "none")

    def _replay_miss(self, pending: dict[str, list[int]], total: int,
                     where: Callable[[int], str] | None) -> None:
        missing = sum(len(indices) for indices in pending.values())
        if self.config.replay_miss == "error":
            i = min(min(indices) for indices in pending.values())
            first = f" (first: {where(i)})" if where is not None else ""
            raise BtError(
                f"LLM provider '{self.name}': no cached response for {missing} of "
                f"{total} candidates{first} in {self.cache.path} and "
                "cache_mode is 'replay'; run once with cache_mode = 'record', or set "
                "replay_miss = 'abstain'")
        self._counts["abstentions_replay_miss"] += missing
        self._counts["abstentions"] += missing
        warnings.warn(f"LLM provider '{self.name}': {missing} of {total} candidates not in "
                      f"the cache {self.cache.path}: {self._miss_reason(missing, total)}; "
                      "they abstain", RuntimeWarning, stacklevel=3)

    def _miss_reason(self, missing: int, total: int) -> str:
        models = self.cache.models()
        if not models:
            return "the cache is empty (record it first with cache_mode = 'record')"
        if self.config.model not in models:
            return (f"it holds no answers of model '{self.config.model}' (recorded: "
                    f"{', '.join(sorted(models))})")
        if missing == total:
            return ("none of these prompts was recorded: this period was not recorded, or "
                    "the template, k_similar, anonymize, temperature, max_tokens or "
                    "structured_output changed since")
        return ("the prompts differ from the recorded ones: the similar past situations "
                "shown in them come from a memory that differs from the record run's")

    def _call(self, messages: list[Messages], pending: dict[str, list[int]],
              contents: list[str | None], structured: bool) -> None:
        client, config, counts = self._client, self.config, self._counts
        keys = list(pending)
        batch = [messages[pending[key][0]] for key in keys]
        answers: dict[int, str] = {}
        appender = (self.cache.appender(provider=self.name, model=config.model)
                    if self.cache is not None else nullcontext(None))
        with appender as append:

            def keep(j: int, result: ChatResult) -> None:
                answers[j] = client.redact(result.content)
                if append is not None:  # stored at once: a failing chunk keeps its answers
                    usage = {"prompt_tokens": result.prompt_tokens,
                             "completion_tokens": result.completion_tokens}
                    append(keys[j], answers[j], usage)

            results = self._send(batch, structured=structured, keep=keep)
        failed = skipped = 0
        for j, (key, result) in enumerate(zip(keys, results)):
            counts["requests"] += result.attempts
            counts["retries"] += result.retries
            counts["timeouts"] += result.timeouts
            counts["rate_limited"] += result.rate_limited
            counts["prompt_tokens"] += result.prompt_tokens
            counts["completion_tokens"] += result.completion_tokens
            self._needed += len(pending[key])
            for i in pending[key]:
                contents[i] = answers.get(j)
            if result.ok:
                continue
            counts["abstentions"] += len(pending[key])
            if result.skipped:
                skipped += 1
                counts["abstentions_breaker"] += len(pending[key])
            else:
                failed += 1
                counts["abstentions_error"] += len(pending[key])
                self._last_failure = result
        counts["calls_tried"] += len(keys) - skipped
        counts["calls_failed"] += failed
        counts["calls_skipped"] += skipped
        if client.breaker.is_open:
            counts["breaker_open"] = 1
        if failed or skipped:
            last = self._last_failure.error if self._last_failure is not None else "none"
            breaker = (f"; the circuit breaker opened and skipped {skipped} more"
                       if skipped else "")
            warnings.warn(
                f"LLM provider '{self.name}': {failed} of {len(keys) - skipped} calls to "
                f"{config.base_url} failed (last error: {last}){breaker}; those candidates "
                "abstain", RuntimeWarning, stacklevel=4)

    def _send(self, batch: list[Messages], *, structured: bool,
              keep: Callable[[int, ChatResult], None] | None = None) -> list[ChatResult]:
        """Send the batch with the structured-output form in use; where the server refuses
        the form, fall back to the next one (once per run, with a warning) and resend.

        While no request with the form in use has been answered, the first item goes
        alone, so a refusing server sees one refused request, not a whole batch.
        """
        client, config = self._client, self.config
        results: list[ChatResult | None] = [None] * len(batch)
        todo = list(range(len(batch)))
        probe = structured and not self._form_settled
        while todo:
            form = self.structured_output_used if structured else "none"
            current = todo[:1] if probe and form != "none" else todo

            def done(k: int, result: ChatResult, current: list[int] = current,
                     form: str = form) -> None:
                results[current[k]] = result
                if result.ok:
                    self._form_settled = self._form_settled or form != "none"
                    if keep is not None:
                        keep(current[k], result)

            client.complete_many([batch[j] for j in current], temperature=config.temperature,
                                 max_tokens=config.max_tokens,
                                 response_format=response_format(form), on_result=done)
            refused = [j for j in current if results[j].rejected]
            for j in refused:
                self._counts["format_rejections"] += 1
                self._counts["requests"] += results[j].attempts
            if refused and form == self.structured_output_used:
                self._fall_back(form, results[refused[0]].error)
            probe = probe and bool(refused)
            todo = refused + [j for j in todo if j not in set(current)]
        return results  # type: ignore[return-value]

    def _fall_back(self, form: str, error: str) -> None:
        following = next_form(form)
        self.structured_output_used = following
        self._form_settled = False
        warnings.warn(f"LLM provider '{self.name}': {self.config.base_url} refused "
                      f"structured_output '{form}' ({error}); using '{following}' for the "
                      "rest of the run", RuntimeWarning, stacklevel=5)


def candidate_names(context: MarketContext, candidates: Candidates) -> Callable[[int], str]:
    """``where(i)``: candidate i as "SYMBOL at YYYY-MM-DD HH:MM UTC", for error lines."""
    def where(i: int) -> str:
        bar, asset = int(candidates.bar[i]), int(candidates.asset[i])
        return f"{context.bars.symbols[asset]} at {format_time(int(context.bars.times[bar]))}"
    return where


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


CONFIG_CLASS = LLMProviderConfig
PROVIDER_CLASS = LLMProvider

__all__ = ["COUNTERS", "CONFIG_CLASS", "DEFAULT_SYSTEM", "KIND", "PROVIDER_CLASS",
           "RECENT_BARS", "REPLAY_MISS_MODES", "STRUCTURED_OUTPUTS", "TEMPLATE_FIELDS",
           "TRANSPORT_FIELDS", "LLMProvider", "LLMProviderConfig", "PromptTemplate",
           "parse_answer", "prompt_fields"]
