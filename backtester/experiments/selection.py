"""Walk-forward selection over a sweep's trials: choose on past chunks, trade the next one.

Every trial of a sweep ran the same chunks. Picking the trial with the best whole-period
figure and reporting that figure is in-sample: the choice saw the chunks it is scored on.
``walk_forward_selection`` makes the choice honestly:

- for chunk ``k`` (k >= 1) the chosen trial is the one with the best cumulative objective
  over chunks ``0 .. k-1`` only;
- chunk 0 has no past: the first trial in the order given is chosen (pass trials in the
  order they were made, e.g. by trial id); ties later go to the earlier trial likewise;
- the out-of-sample book earns the chosen trial's ``total_return`` of chunk ``k``, and its
  total is those chunk returns compounded.

Cumulative objectives: returns (``total_return``, ``learned``, ``equal_weight``) compound,
``prod(1 + r) - 1``; a difference of returns (``learned_minus_equal``) adds up.

``select_in_sweep`` applies it to a finished `bt sweep` folder (its trials in the order of
spec.json, each trial's ``trials/<id>/result.json``); `bt optimize --select-on chunks`
applies it to a search's trials in Optuna's trial order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from backtester.errors import BtError, ConfigError

CHUNK_OBJECTIVES: tuple[str, ...] = ("total_return", "learned", "equal_weight",
                                     "learned_minus_equal")
"""Per-chunk figures of a trial's "chunks" list that trials can be chosen on."""
SELECT_ON = ("chunks",)  # what --select-on accepts

_ADDITIVE = frozenset({"learned_minus_equal"})


def cumulative(values: list[float], objective: str) -> float:
    """The cumulative ``objective`` over chunk values: compounded for returns, summed for
    ``learned_minus_equal``; 0.0 for no chunks."""
    if objective in _ADDITIVE:
        return float(sum(values))
    return math.prod(1.0 + v for v in values) - 1.0


def walk_forward_selection(trials: list[dict[str, Any]],
                           objective: str = "total_return") -> dict[str, Any]:
    """Choose a trial per chunk on the chunks before it, and compound what it earns next.

    Parameters
    ----------
    trials : list of dict
        ``run_trial`` result dicts, in the order that breaks ties (first = chosen for chunk 0).
        Failed trials and trials without chunks are left out.
    objective : str
        The per-chunk figure trials are ranked on, one of ``CHUNK_OBJECTIVES``.

    Returns
    -------
    dict
        {"objective", "n_trials" (trials that took part), "chunks": [{"label", "chosen"
        (trial id), "in_sample" (the chosen trial's cumulative objective on the chunks
        before; None for chunk 0), "return" (its total_return on this chunk)}],
        "out_of_sample_returns", "out_of_sample_total" (compounded), "in_sample_best":
        {"trial_id", "objective" (cumulative over all chunks), "total_return" (its chunk
        returns compounded)}}.

    Raises
    ------
    ConfigError
        When ``objective`` is not a chunk figure.
    BtError
        When no trial has chunks, the trials' chunk labels differ, or a chunk lacks the
        objective (e.g. learned_minus_equal of a run without books).
    """
    if objective not in CHUNK_OBJECTIVES:
        raise ConfigError(f"--select-on chunks ranks trials by a chunk figure: the objective "
                          f"must be one of {', '.join(CHUNK_OBJECTIVES)}, was {objective!r}")
    usable = [t for t in trials if t.get("status", "ok") == "ok" and t.get("chunks")]
    if not usable:
        raise BtError("walk-forward selection needs at least one finished trial with chunks")
    labels = [c["label"] for c in usable[0]["chunks"]]
    for t in usable[1:]:
        if [c["label"] for c in t["chunks"]] != labels:
            raise BtError(f"trial {t['trial_id']} ran chunks other than trial "
                          f"{usable[0]['trial_id']}'s; select only among trials of one period")
    scores = [[_figure(t, c, objective) for c in t["chunks"]] for t in usable]
    returns = [[_figure(t, c, "total_return") for c in t["chunks"]] for t in usable]

    rows = []
    for k, label in enumerate(labels):
        past = [cumulative(s[:k], objective) for s in scores]
        best = _argmax(past) if k else 0
        rows.append({"label": label, "chosen": usable[best]["trial_id"],
                     "in_sample": past[best] if k else None, "return": returns[best][k]})
    totals = [cumulative(s, objective) for s in scores]
    best = _argmax(totals)
    out_of_sample = [row["return"] for row in rows]
    return {
        "objective": objective,
        "n_trials": len(usable),
        "chunks": rows,
        "out_of_sample_returns": out_of_sample,
        "out_of_sample_total": cumulative(out_of_sample, "total_return"),
        "in_sample_best": {"trial_id": usable[best]["trial_id"], "objective": totals[best],
                           "total_return": cumulative(returns[best], "total_return")},
    }


def select_on_chunks(results: list[dict[str, Any]], objective: str) -> dict[str, Any]:
    """``walk_forward_selection`` on ``objective`` when it is a chunk figure, else on
    total_return; the dict gains "note" saying which (empty when the objective itself)."""
    note = ""
    if objective not in CHUNK_OBJECTIVES:
        note = f"{objective} is not a chunk figure: chunks ranked by total_return"
        objective = "total_return"
    return walk_forward_selection(results, objective) | {"note": note}


def select_in_sweep(sweep_dir: str | Path, objective: str = "total_return") -> dict[str, Any]:
    """``select_on_chunks`` over a sweep folder's finished trials, in trial order.

    Raises
    ------
    ConfigError
        When ``sweep_dir`` holds no sweep (no readable spec.json).
    BtError
        As ``walk_forward_selection``.
    """
    from backtester.experiments.sweep import read_result, read_sweep_spec

    spec = read_sweep_spec(sweep_dir)
    results = [read_result(Path(sweep_dir), t.trial_id) for t in spec.trials]
    return select_on_chunks([r for r in results if r is not None], objective)


def _figure(trial: dict[str, Any], chunk: dict[str, Any], key: str) -> float:
    value = chunk.get(key)
    if value is None or not math.isfinite(value):
        raise BtError(f"trial {trial['trial_id']} chunk {chunk.get('label')}: no {key} figure"
                      f" (runs without books have no learned/equal_weight figures); "
                      f"select on total_return")
    return float(value)


def _argmax(values: list[float]) -> int:
    """Index of the largest value; the first one on ties."""
    return max(range(len(values)), key=lambda i: (values[i], -i))
