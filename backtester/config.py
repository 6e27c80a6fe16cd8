"""Typed, frozen configuration loaded from TOML, with CLI overrides and a stable hash.

Precedence: CLI flag > config file > defaults (the dataclass defaults below mirror
configs/default.toml). Unknown keys and out-of-range values raise ConfigError with the
file, the dotted key, what was found and, for a misspelt key, the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from backtester.checks import require as _check
from backtester.errors import ConfigError
from backtester.monitor import MonitorConfig
from backtester.portfolio_config import CostsConfig, RiskConfig, SizingConfig
from backtester.regime_config import RegimeConfig

# Upper bounds of counts and windows (an absurd size is refused before it allocates)
MAX_BARS = 10_000_000  # a chunk, a holding period, a shadow horizon, in bars
MAX_COUNT = 1_000_000  # open positions
MAX_MEMORY = 10_000_000  # situations the memory keeps, neighbours it needs
MAX_CASH = 1e15  # initial cash

CHUNK_KINDS = ("quarter", "month", "week", "year", "all")
DEFAULTS_SECTION = "llm_defaults"  # keys every [providers.<name>] of kind "llm" starts from
DEFAULT_CONFIG_PATH = Path("configs/default.toml")
# Sections and keys left out of the hash while at their defaults, so the memory folders
# and decision ids of configs written before they existed stay valid.
DEFAULT_UNHASHED = ("risk", "sizing", "costs", "features", "monitor.adapt_threshold",
                    "monitor.threshold_step", "monitor.threshold_max",
                    "monitor.adapt_volatility_target", "monitor.volatility_target_step",
                    "monitor.volatility_target_min", "data.on_duplicate",
                    "data.max_rows")


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """What to run: the period, how it is chunked, and where results go."""

    year: int | None = 2025
    start: str | None = None  # ISO date/time; with end, replaces year
    end: str | None = None
    chunk: str = "quarter"  # quarter | month | week | year | all | <N> (bars per chunk)
    initial_cash: float = 100_000.0
    out_dir: str = "runs"

    def __post_init__(self) -> None:
        if self.year is not None:
            _check(1900 <= self.year <= 2200, "run.year", self.year, "a year such as 2025")
        _check(
            self.chunk in CHUNK_KINDS or (self.chunk.isdigit() and len(self.chunk) <= 9
                                          and 0 < int(self.chunk) <= MAX_BARS),
            "run.chunk",
            self.chunk,
            f"one of {', '.join(CHUNK_KINDS)} or a number of bars in [1, {MAX_BARS:_}]",
        )
        _check(0 < self.initial_cash <= MAX_CASH, "run.initial_cash", self.initial_cash,
               f"a positive finite amount <= {MAX_CASH:g}")
        if (self.start is None) != (self.end is None):
            raise ConfigError("run.start and run.end go together; give both or neither")


def _known_zone(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig:
    """Where bars come from: the embedded generator (path empty) or a CSV/Parquet path."""

    path: str = ""
    symbols: tuple[str, ...] = ("BTCUSD", "ETHUSD", "SOLUSD")
    timeframe: str = "15min"
    tz: str = "UTC"  # for naive timestamps in user files
    seed: int = 7  # embedded generator seed
    cache_dir: str = "data/cache"  # this default: the user cache dir (data/cache.py)
    on_duplicate: str = "error"  # rows of one symbol at one time: error | first | last | mean
    max_rows: int = 50_000_000  # a data file of more rows is refused before it is parsed

    def __post_init__(self) -> None:
        _check(len(self.symbols) > 0 or bool(self.path), "data.symbols", self.symbols, "non-empty")
        _check(_known_zone(self.tz), "data.tz", self.tz,
               "an IANA time zone such as 'UTC' or 'America/New_York'")
        _check(self.on_duplicate in ("error", "first", "last", "mean"), "data.on_duplicate",
               self.on_duplicate, "one of error, first, last, mean")
        _check(1 <= self.max_rows <= 10**12, "data.max_rows", self.max_rows,
               "an integer in [1, 10**12]")


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionConfig:
    """How decisions become fills: costs, sizing and risk limits."""

    commission: float = 0.0005  # fraction of notional per side
    slippage: float = 0.0002  # fraction of price, adverse, on market fills
    position_size: float = 0.1  # fraction of equity per new position
    max_open_positions: int = 3  # across assets; 0 = unlimited
    stop_loss: float = 0.02  # fractional distance from the fill; 0 = none
    take_profit: float = 0.04
    max_holding_bars: int = 96  # 0 = none
    allow_short: bool = True

    def __post_init__(self) -> None:
        _check(0 <= self.commission < 0.1, "execution.commission", self.commission, "in [0, 0.1)")
        _check(0 <= self.slippage < 0.1, "execution.slippage", self.slippage, "in [0, 0.1)")
        _check(
            0 < self.position_size <= 1, "execution.position_size", self.position_size, "in (0, 1]"
        )
        _check(0 <= self.max_open_positions <= MAX_COUNT, "execution.max_open_positions",
               self.max_open_positions, f"in [0, {MAX_COUNT:_}]")
        _check(0 <= self.stop_loss < 1, "execution.stop_loss", self.stop_loss, "in [0, 1)")
        _check(0 <= self.take_profit <= 100, "execution.take_profit", self.take_profit,
               "in [0, 100] (a share of the entry price)")
        _check(0 <= self.max_holding_bars <= MAX_BARS, "execution.max_holding_bars",
               self.max_holding_bars, f"in [0, {MAX_BARS:_}]")


@dataclass(frozen=True, kw_only=True, slots=True)
class FeaturesConfig:
    """Inputs beyond the traded bars' own 12 features."""

    timeframes: tuple[str, ...] = ()  # e.g. ["1h", "4h", "1d"]: the 12 features of each

    def __post_init__(self) -> None:
        from backtester.timeframes import timeframe_lengths

        timeframe_lengths(self.timeframes)  # one line per problem; bar multiples at load


LEARNING_METHODS = ("mwu", "thompson", "wilson", "equal")
LLM_MODES = ("independent", "debate")
MEMORY_MODES = ("learn", "frozen", "off")


@dataclass(frozen=True, kw_only=True, slots=True)
class EnsembleConfig:
    """How provider votes combine into decisions and how their weights are learned."""

    method: str = "mwu"  # mwu | thompson | wilson | equal (see backtester/ensemble.py)
    threshold: float = 0.25  # minimum |score| to trade
    learning_rate: float = 0.1  # eta of the multiplicative-weights update
    weight_floor: float = 0.2  # no weight below floor x (1 / providers)
    regime_shrinkage: float = 200.0  # scored votes at which a regime's own weight counts half
    shadow_horizon: int = 0  # bars a vote is scored over; 0 = execution.max_holding_bars
    seed: int = 0  # Thompson sampling's generator
    abstention_penalty: float = 1.0  # an abstention counts as this fraction of a miss
    llm_mode: str = "independent"  # independent | debate (bull, bear, judge)

    def __post_init__(self) -> None:
        _check(self.method in LEARNING_METHODS, "ensemble.method", self.method,
               f"one of {', '.join(LEARNING_METHODS)}")
        _check(self.llm_mode in LLM_MODES, "ensemble.llm_mode", self.llm_mode,
               f"one of {', '.join(LLM_MODES)}")
        _check(0 <= self.abstention_penalty <= 1, "ensemble.abstention_penalty",
               self.abstention_penalty, "in [0, 1]")
        _check(0 < self.threshold <= 1, "ensemble.threshold", self.threshold, "in (0, 1]")
        _check(0 <= self.learning_rate <= 10, "ensemble.learning_rate", self.learning_rate,
               "in [0, 10]")
        _check(0 <= self.weight_floor < 1, "ensemble.weight_floor", self.weight_floor,
               "in [0, 1)")
        _check(0 <= self.regime_shrinkage <= 1e12, "ensemble.regime_shrinkage",
               self.regime_shrinkage, "in [0, 1e12]")
        _check(0 <= self.shadow_horizon <= MAX_BARS, "ensemble.shadow_horizon",
               self.shadow_horizon, f"in [0, {MAX_BARS:_}]")
        _check(0 <= self.seed < 2**63, "ensemble.seed", self.seed, "in [0, 2**63)")


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryConfig:
    """The memory folder shared between chunks and runs, and the memory vote."""

    dir: str = "data/memory"
    mode: str = "learn"  # learn | frozen (decide with it, write nothing) | off (--no-memory)
    max_memory_size: int = 1000  # newest outcomes loaded for the memory vote
    k: int = 10  # nearest past situations in the memory vote and LLM prompts
    vote_weight: float = 0.2  # share of the memory vote in the ensemble score
    vote_scale: float = 0.02  # |similarity-weighted past return| at which the vote saturates
    min_neighbours: int = 20  # the memory votes only once it holds this many outcomes
    embedder: str = "auto"  # auto | sentence | hashing (text vectors)
    llm_cache_dir: str = ""  # LLM response cache; empty = <dir>/llm_cache

    @property
    def enabled(self) -> bool:
        """The memory is read (learn or frozen)."""
        return self.mode != "off"

    @property
    def learns(self) -> bool:
        """Chunks are committed to the memory (learn)."""
        return self.mode == "learn"

    def __post_init__(self) -> None:
        _check(self.mode in MEMORY_MODES, "memory.mode", self.mode,
               f"one of {', '.join(MEMORY_MODES)}")
        _check(1 <= self.max_memory_size <= MAX_MEMORY, "memory.max_memory_size",
               self.max_memory_size, f"in [1, {MAX_MEMORY:_}]")
        _check(1 <= self.k <= self.max_memory_size, "memory.k", self.k,
               f"in [1, memory.max_memory_size = {self.max_memory_size}]")
        _check(0 <= self.vote_weight <= 1, "memory.vote_weight", self.vote_weight, "in [0, 1]")
        _check(0 < self.vote_scale <= 1e6, "memory.vote_scale", self.vote_scale, "in (0, 1e6]")
        _check(1 <= self.min_neighbours <= MAX_MEMORY, "memory.min_neighbours",
               self.min_neighbours, f"in [1, {MAX_MEMORY:_}]")
        _check(self.embedder in ("auto", "sentence", "hashing"), "memory.embedder",
               self.embedder, "auto, sentence or hashing")


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricTolerance:
    """How far one metric may move from the baseline: |now - base| <= abs + rel * |base|."""

    metric: str
    abs: float = 0.0
    rel: float = 0.0

    def __post_init__(self) -> None:
        _check(self.abs >= 0, f"regress.tolerances.{self.metric}.abs", self.abs, ">= 0")
        _check(self.rel >= 0, f"regress.tolerances.{self.metric}.rel", self.rel, ">= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class RegressConfig:
    """`bt regress`: the baseline file and the tolerances of the comparison."""

    baseline: str = "tests/baselines/ci.json"
    abs_tolerance: float = 1e-9  # default for every metric and weight
    rel_tolerance: float = 1e-6
    tolerances: tuple[MetricTolerance, ...] = ()  # [regress.tolerances.<metric>] abs, rel

    def __post_init__(self) -> None:
        _check(self.abs_tolerance >= 0, "regress.abs_tolerance", self.abs_tolerance, ">= 0")
        _check(self.rel_tolerance >= 0, "regress.rel_tolerance", self.rel_tolerance, ">= 0")

    def tolerance(self, metric: str) -> tuple[float, float]:
        """(abs, rel) for a metric: its own entry, else the defaults."""
        for t in self.tolerances:
            if t.metric == metric:
                return t.abs, t.rel
        return self.abs_tolerance, self.rel_tolerance


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """The whole configuration of one run."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    costs: CostsConfig = field(default_factory=CostsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    regress: RegressConfig = field(default_factory=RegressConfig)
    strategies: tuple[Any, ...] = ()  # one config object per enabled strategy
    providers: tuple[Any, ...] = ()  # one config object per [providers.<name>] (ML, LLM)
    # Where it came from (not part of the config: never written, hashed or compared): the
    # config file's folder ("" for the built-in defaults), and the dotted keys set by the
    # caller (flags, --set, API keywords) rather than a file. A prompt template is read
    # only from the config's folder or the repo's configs/, unless its key is in here.
    origin: str = field(default="", compare=False, repr=False)
    given: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (strategies keyed by name), as written to config.toml."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("origin", "given"):
                continue
            if f.name == "strategies":
                from backtester.plugins import source_keys

                out["strategies"] = {
                    s.name: {"enabled": True, **source_keys(s), **_section_dict(s)}
                    for s in self.strategies
                }
            elif f.name == "providers":
                from backtester.plugins import source_keys
                from backtester.providers import provider_kind

                if self.providers:
                    out["providers"] = {  # a plugin named by class keeps its class key
                        p.name: {**(source_keys(p) or {"kind": provider_kind(p)}),
                                 **_section_dict(p, skip=("name",))}
                        for p in self.providers
                    }
            elif f.name == "regress":
                out["regress"] = _section_dict(self.regress, skip=("tolerances",))
                if self.regress.tolerances:
                    out["regress"]["tolerances"] = {
                        t.metric: {"abs": t.abs, "rel": t.rel} for t in self.regress.tolerances
                    }
            else:
                out[f.name] = _section_dict(getattr(self, f.name))
        return out

    def hash(self, *, exclude: tuple[str, ...] = (), transport: bool = True) -> str:
        """SHA-256 of the canonical JSON of the config (sorted keys), less ``exclude``.

        ``exclude`` names sections ("run") or keys ("memory.dir"). ``transport=False``
        leaves out every provider field its kind declares in ``TRANSPORT_FIELDS`` (how a
        provider is reached and cached, such as an LLM's cache_mode or timeouts): they
        change no decision.
        """
        data = self.to_dict()
        for dotted in DEFAULT_UNHASHED:  # added later: hash as before while at defaults
            section, _, key = dotted.partition(".")
            default = _section_dict(type(getattr(self, section))())
            if not key and data.get(section) == default:
                data.pop(section)
            elif key and data[section].get(key) == default[key]:
                data[section].pop(key)
        if not transport and "providers" in data:
            from backtester.providers import provider_kinds

            kinds = provider_kinds()
            data["providers"] = {
                name: {k: v for k, v in table.items()
                       if k not in getattr(kinds.get(table.get("kind")), "TRANSPORT_FIELDS", ())}
                for name, table in data["providers"].items()}
        for dotted in exclude:
            section, _, key = dotted.partition(".")
            if key:
                data[section] = {k: v for k, v in data[section].items() if k != key}
            else:
                data.pop(section, None)
        return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def decision_hash(self) -> str:
        """Hash of what shapes decisions: not the period, where results go, or the folder.

        Decision ids and the memory folder's config check use it, so `bt run --year 2026`
        continues the memory of `bt run --year 2025`.
        """
        return self.hash(exclude=("run", "memory.dir", "memory.mode", "memory.llm_cache_dir",
                                  "regress"), transport=False)


def _section_dict(section: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        f.name: list(v) if isinstance(v := getattr(section, f.name), tuple) else v
        for f in dataclasses.fields(section)
        if f.name not in skip
    }


def _unknown(what: str, name: str, valid: list[str], show: Any) -> ConfigError:
    """'unknown <what> <name>; did you mean <nearest>? (valid: ...)' as one line."""
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean '{show(close[0])}'?" if close else ""
    return ConfigError(f"unknown {what} '{show(name)}'{hint} (valid: {', '.join(valid)})")


# Reading and writing configs (TOML, overrides, flags) live in _config_load.py; they are
# reached through this module (``from backtester.config import load_config``), loaded on
# first use so that either module may be imported first.
_LOADERS = ("build_section", "dump_toml", "load_config", "parse_assignment", "read_toml",
            "_coerce", "_build_config")


def __getattr__(name: str) -> Any:
    if name in _LOADERS:
        from backtester import _config_load

        return getattr(_config_load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
