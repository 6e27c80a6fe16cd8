"""Regression backtests: run a short deterministic config, compare with a stored baseline.

What is compared: every metric of every chunk and of the whole run, the learned
weights used in each chunk, and the counterfactual books (each book's figures per chunk
and overall, learned - equal weight, the regret, the significance and benchmark figures). A value passes when |now - baseline| <= abs + rel * |baseline|
(the config's [regress] tolerances, per metric where given); undefined values (null) must
be undefined in both.

Determinism. Two runs on one machine give identical figures: the market is generated from
a seed, decision ids are hashes, learning is seeded, and each regression run starts from an
empty memory folder of its own. Across machines the figures can differ in the last bits:
numpy's pairwise summation and the BLAS behind FAISS's L2 search (and scikit-learn/torch,
when ML providers are configured) may order floating-point sums differently with another
CPU or thread count. Those differences are around 1e-12 relative on a metric; the default
tolerance (rel 1e-6) absorbs them, while any change to a strategy, a provider or the engine
moves trades and so moves the metrics by far more.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from backtester.config import Config
from backtester.errors import BtError
from backtester.memory.io import atomic_write_bytes
from backtester.results import run_summary
from backtester.runner import run_backtest

BASELINE_VERSION = 2


@dataclass(frozen=True, slots=True)
class Comparison:
    """One compared figure."""

    scope: str  # "overall", a chunk label, or "weights <chunk>"
    metric: str
    baseline: float | None
    now: float | None
    passed: bool

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.now is None:
            return None
        return self.now - self.baseline


def measure(config: Config) -> dict[str, Any]:
    """Run the config from an empty memory in a scratch folder; return the baseline figures."""
    with tempfile.TemporaryDirectory(prefix="bt-regress-") as scratch:
        isolated = replace(
            config,
            run=replace(config.run, out_dir=str(Path(scratch) / "runs")),
            memory=replace(config.memory, dir=str(Path(scratch) / "memory")),
        )
        summary = run_summary(run_backtest(isolated, write=False))
    return {
        "version": BASELINE_VERSION,
        "config_hash": config.decision_hash(),
        "overall": summary["overall"],
        "chunks": {c["label"]: c["metrics"] for c in summary["chunks"]},
        "weights": {c["label"]: c["weights"] for c in summary["chunks"]},
        "books": {"overall": _numbers({k: v for k, v in summary["books"].items()
                                       if k not in ("chunks", "names", "providers")}),
                  **{c["label"]: _numbers(c["books"]) for c in summary["chunks"]}},
    }


def _numbers(tree: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """The numeric leaves of a nested dict, keyed by dotted path (text left out)."""
    out: dict[str, float | None] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_numbers(value, f"{name}."))
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[name] = value
    return out


def compare(baseline: dict[str, Any], now: dict[str, Any], config: Config) -> list[Comparison]:
    """Every figure of ``now`` against ``baseline`` (missing on either side fails)."""
    rows = []

    def add(scope: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        for metric in sorted(set(old) | set(new)):
            a, b = old.get(metric), new.get(metric)
            name = ("weight" if scope.startswith("weights")
                    else metric.rsplit(".", 1)[-1])  # books: the figure's own name
            tolerance = config.regress.tolerance(name)
            rows.append(Comparison(scope, metric, a, b, _within(a, b, *tolerance)
                                   and metric in old and metric in new))

    add("overall", baseline.get("overall", {}), now["overall"])
    for label in _ordered(baseline.get("chunks", {}), now["chunks"]):
        add(label, baseline.get("chunks", {}).get(label, {}), now["chunks"].get(label, {}))
    for label in _ordered(baseline.get("weights", {}), now["weights"]):
        add(f"weights {label}", baseline.get("weights", {}).get(label, {}),
            now["weights"].get(label, {}))
    for label in _ordered(baseline.get("books", {}), now["books"]):
        add(f"books {label}", baseline.get("books", {}).get(label, {}),
            now["books"].get(label, {}))
    return rows


def _ordered(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))


def _within(a: float | None, b: float | None, abs_tol: float, rel_tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0.0, abs_tol=abs_tol + rel_tol * abs(a))


def read_baseline(path: Path) -> dict[str, Any]:
    """The stored baseline; a missing or unreadable file is a BtError naming the fix."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise BtError(f"{path}: no baseline yet; create it with `bt regress --update`") from None
    except orjson.JSONDecodeError as e:
        raise BtError(f"{path}: not valid JSON ({e}); recreate it with `bt regress --update`") \
            from None
    if data.get("version") != BASELINE_VERSION:
        raise BtError(f"{path}: baseline version {data.get('version')!r}, this bt writes "
                      f"{BASELINE_VERSION}; recreate it with `bt regress --update`")
    return data


def write_baseline(path: Path, data: dict[str, Any]) -> None:
    """Write the baseline atomically, indented and sorted for readable diffs in review."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, orjson.dumps(data, option=orjson.OPT_INDENT_2
                                          | orjson.OPT_SORT_KEYS) + b"\n")
