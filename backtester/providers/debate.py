"""Debate mode (``ensemble.llm_mode = "debate"``): a bull and a bear argue, a judge votes.

For each candidate the bull and the bear provider each write one free-text argument (one
round; both see the same features and similar past situations), then the judge reads
both and answers with the structured vote. All three calls go through their providers'
response caches, so a debate records and replays like any LLM call. The judge's vote is
the one LLM vote in the ensemble, under the name ``debate``, and is what is learned; the
arguments are kept in ``Votes.reasoning``.

Roles are explicit: ``role = "bull" | "bear" | "judge"`` in three ``[providers.<name>]``
tables of kind "llm" (configs/debate.toml). ``assemble`` puts the ``DebateProvider`` in
the judge's place in the provider list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backtester.errors import ConfigError
from backtester.providers.base import Candidates, MarketContext, Provider, Similar, Votes
from backtester.providers.http import Messages
from backtester.providers.llm import COUNTERS, LLMProvider, candidate_names, usage_of

ROLE_ORDER = ("bull", "bear", "judge")
DEBATE_NAME = "debate"
ROLE_FIGURES = ("requests", "calls_failed", "cache_hits", "cost")  # shown per role in report()


class DebateProvider:
    """One vote per candidate from a bull/bear/judge debate of three LLM providers.

    Parameters
    ----------
    bull, bear : LLMProvider
        Argue for and against the entry in free text (their templates:
        configs/prompts/bull.txt, bear.txt).
    judge : LLMProvider
        Votes after reading both arguments (its template shows ``{bull_argument}`` and
        ``{bear_argument}``: configs/prompts/judge.txt).
    name : str, default "debate"
        The name the ensemble knows the debate's vote by.
    """

    uses_similar = True

    def __init__(self, bull: LLMProvider, bear: LLMProvider, judge: LLMProvider, *,
                 name: str = DEBATE_NAME) -> None:
        self.name = name
        self.bull, self.bear, self.judge = bull, bear, judge
        self.members = {"bull": bull, "bear": bear, "judge": judge}
        self._incomplete = 0  # candidates without both arguments: not judged
        self._abstentions = 0

    def __repr__(self) -> str:
        return (f"DebateProvider(name={self.name!r}, bull={self.bull.name!r}, "
                f"bear={self.bear.name!r}, judge={self.judge.name!r})")

    @property
    def on_failure(self) -> str:
        """The failure policy: ``stop`` when any member's is, else ``abstain``."""
        modes = {m.on_failure for m in self.members.values()}
        return "stop" if "stop" in modes else "abstain"

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once per role (the judge's setting; roles run in turn)."""
        return self.judge.config.max_concurrency

    @property
    def structured_output_used(self) -> str:
        """The judge's structured-output form in use (the arguments are free text)."""
        return self.judge.structured_output_used

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]:
        """Start a chunk for the three members."""
        self._incomplete = self._abstentions = 0
        for member in self.members.values():
            member.prepare(context, start, stop)
        return {}

    def vote(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> Votes:
        """Debate every candidate; abstain where an argument or the judge's answer is
        missing or malformed."""
        where = candidate_names(context, candidates)
        bull = self.bull.ask(self.bull.render_all(context, candidates, similar),
                             structured=False, where=where)
        bear = self.bear.ask(self.bear.render_all(context, candidates, similar),
                             structured=False, where=where)
        judged = [i for i in range(len(candidates)) if bull[i] is not None
                  and bear[i] is not None]
        messages = self._judge_messages(context, candidates, similar, bull, bear, judged)
        asked = self.judge.ask(messages, where=lambda k: where(judged[k]))
        contents: list[str | None] = [None] * len(candidates)
        for k, i in enumerate(judged):
            contents[i] = asked[k]
        votes = self.judge.parse(contents)
        self._incomplete += len(candidates) - len(judged)
        self._abstentions += int(np.count_nonzero(votes.abstentions()))
        reasoning = tuple(_reasoning(bull[i], bear[i], votes.reasoning[i])
                          for i in range(len(candidates)))
        return Votes(votes.vote, votes.confidence, reasoning, votes.abstained)

    usage = staticmethod(usage_of)  # the runner keeps these out of the results

    def report(self) -> dict[str, Any]:
        """Every counter summed over the three members (``cost`` included), the debate's
        own ``abstentions`` (candidates without a vote) and ``abstentions_argument``
        (not judged: an argument was missing), ``<role>_<figure>`` for a few figures per
        role, the judge's ``structured_output_used`` (str) and its ``sample_malformed``
        (list of str) when it has one."""
        reports = {role: member.report() for role, member in self.members.items()}
        out: dict[str, Any] = {key: sum(r[key] for r in reports.values())
                               for key in (*COUNTERS, "cost")}
        out["breaker_open"] = max(r["breaker_open"] for r in reports.values())
        out["abstentions"] = float(self._abstentions)
        out["abstentions_argument"] = float(self._incomplete)
        for role, r in reports.items():
            for key in ROLE_FIGURES:
                out[f"{role}_{key}"] = r[key]
        out["structured_output_used"] = self.structured_output_used
        if "sample_malformed" in reports["judge"]:
            out["sample_malformed"] = reports["judge"]["sample_malformed"]
        return out

    def chunk_failure(self) -> str | None:
        """The first member's ``chunk_failure()`` reason, naming its role; else None."""
        for role, member in self.members.items():
            reason = member.chunk_failure()
            if reason is not None:
                return f"debate {role}: {reason}"
        return None

    def preflight(self, context: MarketContext | None = None) -> dict[str, Any]:
        """Each member's preflight; ``latency_s`` is their sum (one candidate's debate),
        ``roles`` holds each member's own result. {} when no member checks (replay)."""
        results = {role: member.preflight(context) for role, member in self.members.items()}
        if not any(results.values()):
            return {}
        judge = results["judge"]
        return {"latency_s": sum(r.get("latency_s", 0.0) for r in results.values()),
                "models": judge.get("models", []),
                "structured_output_used": self.structured_output_used,
                "answer_ok": all(r.get("answer_ok", True) for r in results.values()),
                "roles": results}

    def plan(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> dict[str, int]:
        """What a debate on ``candidates`` would take, without a request: ``calls`` over
        the three roles (a judge's prompt not yet known, because an argument is not
        cached, counts as a call), ``cached`` answers, replay's ``missing`` ones, and
        ``<role>_calls``."""
        bull_messages = self.bull.render_all(context, candidates, similar)
        bear_messages = self.bear.render_all(context, candidates, similar)
        bull = self.bull.peek(bull_messages, structured=False)
        bear = self.bear.peek(bear_messages, structured=False)
        known = [i for i in range(len(candidates)) if bull[i] is not None
                 and bear[i] is not None]
        judge_plan = self.judge.plan_messages(
            self._judge_messages(context, candidates, similar, bull, bear, known))
        unknown = len(candidates) - len(known)
        plans = {"bull": self.bull.plan_messages(bull_messages, structured=False),
                 "bear": self.bear.plan_messages(bear_messages, structured=False),
                 "judge": {**judge_plan,
                           "calls": judge_plan["calls"] + (0 if self.judge.replaying
                                                           else unknown),
                           "missing": judge_plan["missing"] + (unknown if self.judge.replaying
                                                               else 0)}}
        out = {"candidates": len(candidates)}
        for key in ("calls", "cached", "missing"):
            out[key] = sum(p[key] for p in plans.values())
        for role, p in plans.items():
            out[f"{role}_calls"] = p["calls"]
        return out

    def _judge_messages(self, context: MarketContext, candidates: Candidates,
                        similar: Similar | None, bull: list[str | None],
                        bear: list[str | None], judged: list[int]) -> list[Messages]:
        messages = []
        for i in judged:
            fields = self.judge.fields(context, int(candidates.bar[i]), int(candidates.asset[i]),
                                       similar[i] if similar is not None else None)
            fields["bull_argument"] = _argument(bull[i])
            fields["bear_argument"] = _argument(bear[i])
            messages.append(self.judge.template.render(fields))
        return messages


def assemble(providers: list[Provider], ensemble: Any) -> list[Provider]:
    """The providers the ensemble hears: unchanged in "independent" mode; in "debate"
    mode the bull, bear and judge LLM providers replaced by one ``DebateProvider`` in the
    judge's place (other providers, LLMs without a role included, stay as they are).

    Raises
    ------
    ConfigError
        A role outside debate mode, a role given twice, or debate mode with a role
        missing.
    """
    mode = ensemble.llm_mode
    roles: dict[str, LLMProvider] = {}
    for provider in providers:
        role = provider.config.role if isinstance(provider, LLMProvider) else ""
        if not role:
            continue
        if mode != "debate":
            raise ConfigError(f"providers.{provider.name}.role is '{role}' but ensemble.llm_mode "
                              f"is '{mode}'; set llm_mode = \"debate\" or remove the role")
        if role in roles:
            raise ConfigError(f"providers.{provider.name}.role: '{role}' is already the role of "
                              f"providers.{roles[role].name}; give bull, bear and judge to one "
                              "provider each")
        roles[role] = provider
    if mode != "debate":
        return list(providers)
    missing = [role for role in ROLE_ORDER if role not in roles]
    if missing:
        raise ConfigError(f"ensemble.llm_mode is 'debate' but no LLM provider has role = "
                          f"'{missing[0]}'; set role = \"bull\", \"bear\" and \"judge\" in three "
                          "[providers.<name>] tables of kind \"llm\" (see configs/debate.toml)")
    debate = DebateProvider(roles["bull"], roles["bear"], roles["judge"])
    arguing = (roles["bull"], roles["bear"])
    return [debate if p is roles["judge"] else p for p in providers
            if not any(p is a for a in arguing)]


def _argument(content: str | None) -> str:
    text = (content or "").strip()
    return text or "(no argument given)"


def _reasoning(bull: str | None, bear: str | None, judge: str) -> str:
    parts = [f"bull: {' '.join((bull or '').split()) or '(none)'}",
             f"bear: {' '.join((bear or '').split()) or '(none)'}"]
    if judge:
        parts.append(f"judge: {judge}")
    return "\n".join(parts)

