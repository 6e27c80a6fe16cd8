"""Shared by the report tests: a tiny DOM to read the page, a display check, and run
folders built by hand with known numbers (old style, and with the books of issue 9)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from backtester.metrics import METRIC_NAMES

ODD_SYMBOL = "<b>X&Y</b>"
ODD_PROVIDER = "llm:<gpt>"
CONFIG_TEXT = ('[run]\ninitial_cash = 50000.0\nchunk = "month"\n\n[data]\n'
               'symbols = ["AAA", "<b>X&Y</b>", "ZZZ"]\nnote = "<script>alert(1)</script> & co"\n')
INITIAL_CASH = 50_000.0
REGIMES = ("TRENDING", "RANGING", "VOLATILE", "UNKNOWN")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


# ---------------------------------------------------------------- a tiny DOM for the checks


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Any] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            if (tag is None or child.tag == tag) and all(
                    (name in child.attrs) if value is True else child.attrs.get(name) == value
                    for name, value in ((k.replace("_", "-"), v) for k, v in attrs.items())):
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def one(self, tag: str | None = None, **attrs: str | bool) -> Node:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class TreeBuilder(HTMLParser):
    """Builds the element tree and records every tag that does not close where it should."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if len(self.stack) == 1 or self.stack[-1].tag != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1].tag}> at {self.getpos()}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(document: str) -> tuple[Node, list[str]]:
    builder = TreeBuilder()
    builder.feed(document)
    builder.close()
    unclosed = [f"<{n.tag}> never closed" for n in builder.stack[1:]]
    return builder.root, builder.errors + unclosed


def assert_shows(text: str, expected: float | None, what: str = "") -> None:
    """The displayed text is "-" for a missing value, else the value to its shown precision."""
    text = text.strip()
    if expected is None or not math.isfinite(expected):
        assert text == "-", f"{what}: shows {text!r}, expected '-'"
        return
    percent = text.endswith("%")
    body = text.rstrip("%").replace(",", "").replace("+", "")
    decimals = len(body.split(".")[1]) if "." in body else 0
    value, tolerance = float(body), 0.5 * 10.0 ** -decimals
    if percent:
        value, tolerance = value / 100, tolerance / 100
    assert abs(value - expected) <= tolerance * (1 + 1e-9), \
        f"{what}: shows {text!r}, expected {expected!r}"


# ---------------------------------------------------------------- hand-made run folders


def _metrics(rng: np.random.Generator) -> dict[str, float | None]:
    values = {name: float(rng.normal(0, 2)) for name in METRIC_NAMES}
    values.update(trades=float(rng.integers(0, 3000)), max_drawdown=-abs(values["max_drawdown"]),
                  max_drawdown_bars=float(rng.integers(0, 5000)),
                  final_equity=float(rng.uniform(1e3, 3e6)), win_rate=float(rng.uniform()))
    return values


def _trades(rng: np.random.Generator, count: int, symbols: list[str], start: pd.Timestamp,
            bars: int) -> pd.DataFrame:
    entry = start + pd.to_timedelta(np.sort(rng.integers(0, max(bars - 13, 1), count)) * 15,
                                    unit="min")
    entry_price = rng.uniform(0.5, 50_000, count)
    size = rng.uniform(0.01, 100, count)
    pnl = rng.normal(0, 150, count)
    return pd.DataFrame({
        "symbol": pd.Series(rng.choice(symbols, count), dtype=object),
        "entry_time": entry,
        "exit_time": entry + pd.Timedelta(hours=3),
        "direction": rng.choice(np.array([-1, 1], dtype=np.int8), count),
        "entry_bar": np.arange(count, dtype=np.int64),
        "exit_bar": np.arange(count, dtype=np.int64) + 12,
        "entry_price": entry_price,
        "exit_price": entry_price * rng.uniform(0.97, 1.03, count),
        "size": size,
        "pnl": pnl,
        "return_pct": pnl / (entry_price * size),
        "fees": rng.uniform(0.5, 20, count),
        "exit_reason": rng.choice(["stop_loss", "take_profit", "signal"], count),
        "decision_id": rng.integers(-2**62, 2**62, count),
    })


def make_run(folder: Path, *, trades: int = 40, bars: int = 3 * 96 * 30, extras: bool = False,
             regime_column: bool = False, seed: int = 5) -> dict[str, Any]:
    """Write a run folder as `bt run` wrote it before issue 9; return its metrics.json."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    times = pd.date_range("2025-01-01", periods=bars, freq="15min", tz="UTC")
    equity = INITIAL_CASH * np.exp(np.cumsum(rng.normal(0, 0.002, bars)))
    pd.DataFrame({"time": times, "equity": equity,
                  "open_positions": rng.integers(0, 3, bars)}).to_parquet(folder / "equity.parquet")
    table = _trades(rng, trades, ["AAA", ODD_SYMBOL], times[0], bars)
    if regime_column:
        table["regime"] = rng.choice(["RANGING", "TRENDING", "VOLATILE"], trades)
    table.to_parquet(folder / "trades.parquet", index=False)
    (folder / "config.toml").write_text(CONFIG_TEXT, encoding="utf-8")
    bounds = np.linspace(0, bars, 4).astype(int)
    chunks = [{"label": f"2025-0{k + 1}", "start": times[a].isoformat(),
               "end": times[b - 1].isoformat(), "bars": int(b - a),
               "candidates": int(rng.integers(0, 5000)), "decisions": int(rng.integers(0, 900)),
               "metrics": _metrics(rng)} for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    chunks[1]["metrics"]["sharpe"] = None  # NaN is written as null
    summary: dict[str, Any] = {
        "run_id": "20250101_000000_abcdef12", "config_hash": "ab" * 32,
        "period": {"start": "2025-01-01T00:00:00+00:00", "end": "2025-04-01T00:00:00+00:00"},
        "symbols": ["AAA", ODD_SYMBOL, "ZZZ"], "chunks": chunks,
        "overall": {**_metrics(rng), "profit_factor": None},
    }
    if extras:
        providers = ["momentum", "mean_reversion", ODD_PROVIDER]
        for chunk in chunks:
            weights = rng.dirichlet(np.ones(3))
            chunk["weights"] = dict(zip(providers, weights.tolist()))
            chunk["regime_weights"] = {r: dict(zip(providers, rng.dirichlet(np.ones(3)).tolist()))
                                       for r in ("RANGING", "TRENDING")}
            chunk["learning"] = {
                "ensemble": {"votes": 700, "hits": 392, "hit_rate": 0.56, "shadow_pnl": 0.8535},
                "memory_vote": {"votes": 0, "hits": 0, "hit_rate": None, "shadow_pnl": 0.0},
                "provider_reports": {"momentum": {}}, "size_multiplier": 0.75}
        summary["providers"] = {p: {"votes": 1200 + k, "hits": 600 + k, "hit_rate": 0.5 + k / 100,
                                    "shadow_pnl": -1234.5 * k, "trades": 40 + k, "wins": 20,
                                    "weight": 0.3 + k / 10} for k, p in enumerate(providers)}
        summary["regimes"] = {"RANGING": {"bars": 4000, "trades": 25, "pnl": -321.25,
                                          "win_rate": 0.44},
                              "TRENDING": {"bars": 4640, "trades": 15, "pnl": 1500.5,
                                           "win_rate": 0.6}}
        summary["llm"] = {"calls": 1234, "cache_hits": 1000, "malformed": 3,
                          "latency": {"p50_seconds": 0.8}}
    write_summary(folder, summary)
    return summary


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    (folder / "metrics.json").write_bytes(orjson.dumps(summary))


def add_books(folder: Path, *, providers: tuple[str, ...] = ("momentum", "mean_reversion",
                                                            ODD_PROVIDER),
              seed: int = 9) -> dict[str, Any]:
    """Give a run folder what `bt run` writes since issue 9; return the new metrics.json.

    books.parquet holds the equity of every book (learned: equity.parquet's curve),
    prices.parquet a close per symbol that passes through every trade's entry and exit
    price, trades.parquet a regime column, metrics.json "memory_mode", "in_sample" and a
    "books" object whose chunk and overall returns are those of the curves; the other
    figures are random, some null.
    """
    rng = np.random.default_rng(seed)
    summary = orjson.loads((folder / "metrics.json").read_bytes())
    equity = pd.read_parquet(folder / "equity.parquet")
    trades = pd.read_parquet(folder / "trades.parquet")
    times = pd.DatetimeIndex(equity["time"])
    n = len(times)
    initial = INITIAL_CASH if "initial_cash = 50000" in (folder / "config.toml").read_text() \
        else float(summary["overall"]["final_equity"]) / (1 + summary["overall"]["total_return"])
    names = ["learned", "equal_weight", "learned_without_memory_vote", *providers, "buy_and_hold"]
    curves = {"learned": equity["equity"].to_numpy(dtype=np.float64)}
    for name in names[1:]:
        curves[name] = initial * np.exp(np.cumsum(rng.normal(0.0, 0.0012, n)))
    pd.DataFrame({"time": times, **curves}).to_parquet(folder / "books.parquet", index=False)
    _write_prices(folder, summary, trades, times, rng)
    trades["regime"] = rng.choice(list(REGIMES), len(trades))
    trades.to_parquet(folder / "trades.parquet", index=False)

    bounds = [int(np.searchsorted(times, pd.Timestamp(c["start"]))) for c in summary["chunks"]]
    bounds.append(n)
    chunks = []
    for k, chunk in enumerate(summary["chunks"]):
        a, b = bounds[k], bounds[k + 1]
        figures = {}
        for name in names:
            before = initial if a == 0 else curves[name][a - 1]
            figures[name] = {"total_return": float(curves[name][b - 1] / before - 1),
                             "sharpe": float(rng.normal(0, 2)),
                             "max_drawdown": -float(rng.uniform(0, 0.3)),
                             "trades": float(rng.integers(0, 500)),
                             "hit_rate": float(rng.uniform(0.3, 0.7))}
        figures["buy_and_hold"]["hit_rate"] = None
        chunks.append(_attribution(chunk["label"], figures, providers))
    overall = {name: {"total_return": float(curves[name][-1] / initial - 1),
                      "cagr": float(rng.normal(0, 0.3)), "sharpe": float(rng.normal(0, 2)),
                      "max_drawdown": -float(rng.uniform(0, 0.4)),
                      "trades": float(rng.integers(0, 3000)),
                      "hit_rate": float(rng.uniform(0.3, 0.7)),
                      "win_rate": float(rng.uniform(0.3, 0.7))} for name in names}
    overall["buy_and_hold"].update(hit_rate=None, win_rate=None)
    whole = _attribution("", overall, providers)
    summary.update(memory_mode="frozen", in_sample=False)
    summary["books"] = {
        "names": names, "providers": list(providers), "chunks": chunks, "overall": overall,
        "learned_minus_equal": whole["learned_minus_equal"], "best_single": whole["best_single"],
        "regret": whole["regret"],
        "significance": {
            "psr": 0.8123, "sharpe": -1.234,
            "bootstrap": {"difference": 0.021, "low": -0.014, "high": 0.056, "resamples": 1000,
                          "mean_block": 7.14, "seed": 12345, "confidence": 0.95},
            "sentence": "learning added +2.1%/yr, 95% CI -1.4 to +5.6: not distinguishable "
                        "from equal weights <really>"},
        "benchmark": {"alpha": -0.0734, "beta": 0.4213, "information_ratio": -0.52,
                      "tracking_error": 0.183, "correlation": None},
        "regimes": {name: {regime: {"trades": float(rng.integers(0, 300)),
                                    "win_rate": float(rng.uniform(0.2, 0.7)),
                                    "pnl": float(rng.normal(0, 2000)),
                                    "return_contribution": float(rng.normal(0, 0.05))}
                           for regime in REGIMES[: 3 if name == "buy_and_hold" else 4]}
                    for name in names},
    }
    summary["books"]["regimes"]["learned"]["UNKNOWN"]["win_rate"] = None
    write_summary(folder, summary)
    return summary


def _attribution(label: str, figures: dict[str, dict[str, Any]],
                 providers: tuple[str, ...]) -> dict[str, Any]:
    best = max(providers, key=lambda p: figures[p]["total_return"])
    learned = figures["learned"]["total_return"]
    return {"label": label, "figures": figures,
            "learned_minus_equal": learned - figures["equal_weight"]["total_return"],
            "best_single": best, "regret": figures[best]["total_return"] - learned}


def _write_prices(folder: Path, summary: dict[str, Any], trades: pd.DataFrame,
                  times: pd.DatetimeIndex, rng: np.random.Generator) -> None:
    """A close per symbol through its trades' fills (linear between them, plus a wiggle)."""
    stamps = times.as_unit("ns").asi8
    closes = {}
    for symbol in summary["symbols"]:
        of = trades[trades["symbol"] == symbol]
        at = np.concatenate([pd.DatetimeIndex(of["entry_time"]).as_unit("ns").asi8,
                             pd.DatetimeIndex(of["exit_time"]).as_unit("ns").asi8])
        price = np.concatenate([of["entry_price"], of["exit_price"]]).astype(np.float64)
        order = np.argsort(at, kind="stable")
        if order.size:
            close = np.interp(stamps, at[order], price[order])
        else:
            close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, len(stamps))))
        closes[symbol] = close * (1 + rng.normal(0, 0.0005, len(stamps)))
    pd.DataFrame({"time": times, **closes}).to_parquet(folder / "prices.parquet", index=False)


def consistent_overall(folder: Path) -> dict[str, Any]:
    """Recompute metrics.json's "overall" from the folder's equity and trades, as the
    runner does, so that figures derived from the curve can be checked against it."""
    from backtester.metrics import compute_metrics, periods_per_year

    summary = orjson.loads((folder / "metrics.json").read_bytes())
    equity = pd.read_parquet(folder / "equity.parquet")
    trades = pd.read_parquet(folder / "trades.parquet")
    records = np.zeros(len(trades), dtype=[("pnl", "f8"), ("return_pct", "f8")])
    records["pnl"], records["return_pct"] = trades["pnl"], trades["return_pct"]
    times = pd.DatetimeIndex(equity["time"]).as_unit("ns").asi8
    summary["overall"] = compute_metrics(
        equity["equity"].to_numpy(dtype=np.float64), equity["open_positions"].to_numpy(),
        records, initial_equity=INITIAL_CASH, periods_per_year=periods_per_year(times),
        bar_seconds=900.0)
    write_summary(folder, summary)
    return summary
