"""Prompt templates of the LLM providers and the fields they are filled with per candidate."""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backtester.engine.records import EXIT_REASON_NAMES
from backtester.errors import ConfigError
from backtester.features import FEATURE_NAMES
from backtester.providers.base import MarketContext
from backtester.providers.http import Messages
from backtester.regime import REGIME_NAMES
from backtester.timeframes import higher_feature_names, timeframe_blocks

RECENT_BARS = 10  # closes shown in a prompt, the candidate bar being the last
# {features} lists the 12 features, then (with features.timeframes) one "Higher timeframe"
# line per timeframe; {higher_timeframes} holds those lines alone ("none" without them).
TEMPLATE_FIELDS = ("symbol", "time", "timeframe", "regime", "features", *FEATURE_NAMES,
                   "recent_closes", "similar", "higher_timeframes")
DEBATE_FIELDS = ("bull_argument", "bear_argument")  # a judge's template shows both
# The system message of a template without a [system] line (a template: braces doubled).
DEFAULT_SYSTEM = ('You are a trading analyst. Answer with one JSON object only: {{"action": '
                  '"buy" | "sell" | "hold", "confidence": <number in [0, 1]>, '
                  '"reasoning": "<one sentence>"}}.')
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _allowed(found: Path, roots: tuple[Path, ...]) -> bool:
    """Whether a template file lies (symbolic links resolved) inside one of ``roots`` and
    was named without a '..' part."""
    real = found.resolve()
    return any(real.is_relative_to(root.resolve()) for root in roots) and ".." not in found.parts


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A system and a user message with ``str.format`` fields (``TEMPLATE_FIELDS``).

    File format: leading ``#`` lines are comments; a ``[system]`` line starts the system
    message (optional), a ``[user]`` line the user message. Literal braces are ``{{ }}``.
    A judge's template may also use ``DEBATE_FIELDS``.
    """

    system: str
    user: str
    source: str = "<string>"
    fields: tuple[str, ...] = TEMPLATE_FIELDS

    @classmethod
    def load(cls, path: str | Path, *, fields: tuple[str, ...] = TEMPLATE_FIELDS,
             explicit: bool = False, folder: Path | None = None) -> PromptTemplate:
        """Read and check a template file.

        A relative path is looked up in the working directory, then ``folder`` (the config
        file's), then the repository root. The file must lie inside ``folder`` (default:
        the working directory) or the repository's configs/, symbolic links resolved and
        no '..' part, unless ``explicit`` (a path the user gave on the command line or a
        program passed itself): a config file from someone else cannot make bt read, and
        send to a model, a file from elsewhere. Errors name the path, never the content.
        """
        path = Path(path)
        home = Path.cwd() if folder is None else Path(folder)
        places = [path] if path.is_absolute() else [path, home / path, _REPO_ROOT / path]
        found = next((p for p in places if p.is_file()), None)
        if found is None:
            raise ConfigError(f"prompt_template: file not found, was '{path}'; point it at a "
                              "template such as configs/prompts/default.txt")
        roots = (home, _REPO_ROOT / "configs")
        if not explicit and not _allowed(found, roots):
            raise ConfigError(f"prompt_template: '{path}' is outside the config's folder "
                              f"({home}) and the repository's configs/ (a config file cannot "
                              "point elsewhere); copy the template next to your config, or "
                              "pass it yourself with --set providers.<name>.prompt_template=PATH")
        try:
            text = found.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"prompt_template: '{path}' is not UTF-8 text; save it as UTF-8"
                              ) from None
        except OSError as e:
            raise ConfigError(f"prompt_template: cannot read '{path}' ({e.strerror}); check "
                              "the file's permissions") from None
        return cls.parse(text, source=str(path), fields=fields)

    @classmethod
    def parse(cls, text: str, *, source: str = "<string>",
              fields: tuple[str, ...] = TEMPLATE_FIELDS) -> PromptTemplate:
        """Split a template's text into its messages and check its fields."""
        lines = text.splitlines()
        while lines and (lines[0].startswith("#") or not lines[0].strip()):
            lines.pop(0)
        sections: dict[str, list[str]] = {}
        current = None
        skipped = len(text.splitlines()) - len(lines)
        for number, line in enumerate(lines, start=skipped + 1):
            marker = line.strip().lower()
            if marker in ("[system]", "[user]"):
                current = sections.setdefault(marker[1:-1], [])
            elif current is not None:
                current.append(line)
            elif line.strip():
                raise ConfigError(f"{source}: text before the [system] or [user] line (line "
                                  f"{number}); start the messages with [system] and [user] "
                                  "lines")
        if "user" not in sections:
            raise ConfigError(f"{source}: no [user] line in the prompt template; add one "
                              "before the user message")
        template = cls("\n".join(sections.get("system", [DEFAULT_SYSTEM])).strip(),
                       "\n".join(sections["user"]).strip(), source, tuple(fields))
        template.render(dict.fromkeys(fields, ""))  # fails early on a bad field
        return template

    def used_fields(self) -> set[str]:
        """The field names the template's messages use."""
        formatter = string.Formatter()
        return {name for text in (self.system, self.user)
                for _, name, _, _ in formatter.parse(text) if name}

    def render(self, fields: dict[str, str]) -> Messages:
        """The chat messages for one candidate."""
        try:
            system = self.system.format_map(fields)
            user = self.user.format_map(fields)
        except KeyError as e:
            raise ConfigError(f"{self.source}: unknown field {{{e.args[0]}}} in the prompt "
                              f"template; use one of {', '.join(self.fields)}") from None
        except (ValueError, IndexError) as e:
            raise ConfigError(f"{self.source}: malformed braces in the prompt template ({e}); "
                              "write a literal brace as {{ or }}") from None
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


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
    higher = [(tf, [_format_number(v, "{:.4g}") for v in values[col:col + len(FEATURE_NAMES)]])
              for tf, col in timeframe_blocks(getattr(context, "feature_names", FEATURE_NAMES))]
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
        "time": "bar t" if anonymize else format_time(int(bars.times[bar])),
        "timeframe": bars.timeframe,
        "regime": REGIME_NAMES.get(int(context.regimes[bar, asset]), "UNKNOWN"),
        **_feature_fields(features, higher),
        "recent_closes": "\n".join(f"t-{last - i}: {c}" if i < last else f"t: {c}"
                                   for i, c in enumerate(shown)),
        "similar": _format_similar(similar, k_similar, anonymize),
    }


def _feature_fields(features: dict[str, str],
                    higher: list[tuple[str, list[str]]]) -> dict[str, str]:
    """{features}, each feature alone and {higher_timeframes}; without higher timeframes
    {features} is the 12 "name: value" lines exactly as before they existed."""
    text = "\n".join(f"{name}: {value}" for name, value in features.items())
    sections = "\n".join(
        f"Higher timeframe {tf} (last closed bar): "
        + ", ".join(f"{name}={value}" for name, value in zip(FEATURE_NAMES, shown))
        for tf, shown in higher)
    return {"features": f"{text}\n\n{sections}" if sections else text, **features,
            "higher_timeframes": sections or "none"}


def placeholder_similar(k: int) -> list[dict]:
    """``k`` invented past situations as long as real ones, for a preflight prompt."""
    return [{"direction": 1 if n % 2 else -1, "return_pct": 1.25 * (-1) ** n, "exit_reason": 1,
             "regime": 1, "description": "BTCUSD long in a trending market after a pullback "
             "to the 20-bar average with RSI near 55 and rising volume; closed at the target"}
            for n in range(k)]


def placeholder_fields(*, k_similar: int = 5, anonymize: bool = False,
                       timeframes: tuple[str, ...] = ()) -> dict[str, str]:
    """Neutral fields of realistic length, for a preflight prompt without market data."""
    features = {name: "0.01234" for name in FEATURE_NAMES}
    features["rsi14"] = "52.3"
    names = higher_feature_names(timeframes)
    higher = [(tf, [features[name] for name in FEATURE_NAMES])
              for tf, _ in timeframe_blocks(names)]
    return {
        "symbol": "ASSET_0" if anonymize else "BTCUSD",
        "time": "bar t" if anonymize else "2025-01-02 12:00 UTC",
        "timeframe": "15min",
        "regime": "RANGING",
        **_feature_fields(features, higher),
        "recent_closes": "\n".join(f"t-{RECENT_BARS - 1 - i}: {100.0 + 0.12 * i:.2f}"
                                   if i < RECENT_BARS - 1 else f"t: {100.0 + 0.12 * i:.2f}"
                                   for i in range(RECENT_BARS)),
        "similar": _format_similar(placeholder_similar(k_similar), k_similar, anonymize),
    }


def format_time(nanoseconds: int) -> str:
    """A bar time as ``YYYY-MM-DD HH:MM UTC``."""
    text = np.datetime_as_string(np.datetime64(nanoseconds, "ns"), unit="m")
    return text.replace("T", " ") + " UTC"


def _format_number(value: float, spec: str) -> str:
    return spec.format(value) if math.isfinite(value) else "n/a"


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
