"""Inline SVG charts for the HTML run report (`backtester.report`).

Holds the drawing only: `time_chart` (a line or area chart over time with shaded chunk
bands), `weights_chart` (provider weights per chunk), the frame, axis and tick helpers they
share, and `downsample_extremes`, which bounds the points drawn per line. Each chart is
returned as markup with every text HTML-escaped; how numbers read is the caller's choice,
passed in as functions.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_CHART_POINTS = 2000
"""Most points drawn per chart line (about two per horizontal pixel)."""

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_TIME_STEPS = (("1h", "%m-%d %H:%M"), ("6h", "%m-%d %H:%M"), ("1D", "%Y-%m-%d"),
               ("7D", "%Y-%m-%d"), ("MS", "%Y-%m"), ("3MS", "%Y-%m"), ("YS", "%Y"))


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded stretch of a time chart: UTC nanosecond bounds, label and hover text."""

    start: int
    stop: int
    label: str
    tooltip: str


def downsample_extremes(values: np.ndarray, max_points: int = MAX_CHART_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` values that keep the shape of a long series.

    The series is cut into ``(max_points - 2) // 2`` equal buckets, each keeping the
    position of its minimum and its maximum; the first and last points are kept too, so
    every extreme (the peak, the deepest drawdown) survives.

    Parameters
    ----------
    values : np.ndarray
        The series, shape (n,).
    max_points : int
        Upper bound on the returned indices, at least 4.

    Returns
    -------
    np.ndarray
        Ascending int64 indices into ``values``.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, was {max_points}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    edges = np.linspace(0, n, (max_points - 2) // 2 + 1).astype(np.int64)
    keep = [0, n - 1]
    for start, stop in zip(edges[:-1], edges[1:]):
        part = values[start:stop]
        keep += (start + int(np.argmin(part)), start + int(np.argmax(part)))
    return np.unique(np.asarray(keep, dtype=np.int64))


def time_chart(times: np.ndarray, values: np.ndarray, bands: Sequence[Band], *, height: int,
               reference: float, label: str, tick_text: Callable[[float], str],
               area: bool = False, labels_on_top: bool = False) -> str:
    """A titled chart of ``values`` over ``times`` (int64 UTC nanoseconds).

    Draws a line with a dashed line at ``reference``, or with ``area`` a filled area down to
    ``reference``; non-finite values are drawn at ``reference``. ``bands`` are shaded behind
    it (labelled above the plot with ``labels_on_top``); ``tick_text`` writes a y tick.
    """
    finite = values[np.isfinite(values)]
    low = float(min(finite.min(), reference)) if finite.size else reference
    high = float(max(finite.max(), reference)) if finite.size else reference + 1.0
    pad = (high - low) * 0.05 or abs(high) * 0.01 or 0.01
    frame = _Frame(1100.0, float(height), (float(times[0]), float(times[-1])),
                   (low - pad, high + pad))
    keep = downsample_extremes(np.where(np.isfinite(values), values, reference))
    xs, ys = frame.x(times[keep]), frame.y(np.where(np.isfinite(values[keep]), values[keep],
                                                    reference))
    parts = [f'<svg class="chart" viewBox="0 0 {frame.width:.0f} {height}" role="img" '
             f'aria-label="{_text(label)}" data-points="{keep.size}">']
    parts.append(_band_marks(frame, bands, labels_on_top))
    parts.append(_y_axis(frame, _nice_ticks(*frame.y_range), tick_text))
    parts.append(_time_axis(frame))
    base = float(frame.y(reference))
    if area:
        parts.append(f'<polygon class="area" points="{xs[0]:.1f},{base:.1f} {_points(xs, ys)} '
                     f'{xs[-1]:.1f},{base:.1f}"/>')
    else:
        parts.append(f'<line class="reference" x1="{frame.left}" x2="{frame.width - frame.right}"'
                     f' y1="{base:.1f}" y2="{base:.1f}"/>')
    parts.append(f'<polyline class="{"area-line" if area else "line"}" '
                 f'points="{_points(xs, ys)}"/></svg>')
    return f'<div class="chart-title">{_text(label)}</div>' + "".join(parts)


def weights_chart(labels: Sequence[str], providers: Sequence[str],
                  weights: Sequence[Mapping[str, float]],
                  value_text: Callable[[float], str]) -> str:
    """Provider weights per chunk: one coloured line per provider, then a legend.

    ``weights[k]`` holds chunk k's finite weights (a provider left out has no point there);
    with at most 60 chunks each point is a dot whose hover text uses ``value_text``.
    """
    values = [w[p] for w in weights for p in providers if p in w]
    high = max(values + [0.0]) * 1.1 or 1.0
    frame = _Frame(1100.0, 260.0, (-0.5, len(labels) - 0.5), (0.0, high), top=14.0)
    parts = ['<svg class="chart" viewBox="0 0 1100 260" role="img" aria-label="Provider weights">',
             _y_axis(frame, _nice_ticks(0.0, high), lambda tick: f"{tick:.2f}")]
    step = max(1, math.ceil(len(labels) * 60 / (frame.width - frame.left - frame.right)))
    for k in range(0, len(labels), step):
        parts.append(f'<text class="tick" x="{float(frame.x(k)):.1f}" y="{frame.height - 8}" '
                     f'text-anchor="middle">{_text(labels[k])}</text>')
    for j, provider in enumerate(providers):
        color = _PALETTE[j % len(_PALETTE)]
        points = [(k, w[provider]) for k, w in enumerate(weights) if provider in w]
        if not points:
            continue
        xs, ys = frame.x([p[0] for p in points]), frame.y([p[1] for p in points])
        width = 1.5 + min(2.0 * (len(providers) - 1 - j), 6.0)  # equal lines stay visible
        parts.append(f'<polyline class="series" stroke="{color}" stroke-width="{width:g}" '
                     f'points="{_points(xs, ys)}"/>')
        if len(labels) <= 60:
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"><title>'
                      f"{_text(labels[k])} {_text(provider)}: {value_text(v)}"
                      "</title></circle>"
                      for (k, v), x, y in zip(points, xs.tolist(), ys.tolist())]
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{_PALETTE[j % len(_PALETTE)]}"></i>'
                     f"{_text(p)}</span>" for j, p in enumerate(providers))
    return "".join(parts) + f'<div class="legend">{legend}</div>'


# ---------------------------------------------------------------- frame, axes, ticks


@dataclass(frozen=True, slots=True)
class _Frame:
    """Maps data coordinates to SVG pixels inside the margins."""

    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: float = 78.0
    right: float = 16.0
    top: float = 22.0
    bottom: float = 26.0

    def x(self, values: np.ndarray | float) -> np.ndarray:
        low, high = self.x_range
        span = high - low or 1.0
        return self.left + (np.asarray(values, dtype=np.float64) - low) / span * (
            self.width - self.left - self.right)

    def y(self, values: np.ndarray | float) -> np.ndarray:
        low, high = self.y_range
        span = high - low or 1.0
        return self.top + (high - np.asarray(values, dtype=np.float64)) / span * (
            self.height - self.top - self.bottom)


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist()))


def _y_axis(frame: _Frame, ticks: list[float], tick_text: Callable[[float], str]) -> str:
    out = []
    for tick in ticks:
        y = float(frame.y(tick))
        out.append(f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
                   f'y1="{y:.1f}" y2="{y:.1f}"/><text class="tick" x="{frame.left - 6}" '
                   f'y="{y + 4:.1f}" text-anchor="end">{_text(tick_text(tick))}</text>')
    return "".join(out)


def _band_marks(frame: _Frame, bands: Sequence[Band], labels: bool) -> str:
    out = []
    bottom = frame.height - frame.bottom
    for k, band in enumerate(bands):
        x0, x1 = float(frame.x(band.start)), float(frame.x(band.stop))
        shade = "band odd" if k % 2 else "band"
        out.append(f'<rect class="{shade}" x="{x0:.1f}" y="{frame.top}" '
                   f'width="{max(x1 - x0, 0):.1f}" height="{bottom - frame.top:.1f}">'
                   f"<title>{_text(band.tooltip)}</title></rect>")
        if k:
            out.append(f'<line class="boundary" x1="{x0:.1f}" x2="{x0:.1f}" y1="{frame.top}" '
                       f'y2="{bottom:.1f}"/>')
        if labels and x1 - x0 > 7.5 * len(band.label) + 8:
            out.append(f'<text class="band-label" x="{(x0 + x1) / 2:.1f}" y="{frame.top - 6}" '
                       f'text-anchor="middle">{_text(band.label)}</text>')
    return "".join(out)


def _time_axis(frame: _Frame, most: int = 8) -> str:
    """Labels at round times (hours, days, weeks, months, quarters or years)."""
    low, high = (pd.Timestamp(int(v), tz="UTC") for v in frame.x_range)
    ticks, spec = [], "%Y"
    for frequency, spec in _TIME_STEPS:
        ticks = pd.date_range(low.ceil("h"), high, freq=frequency)
        if len(ticks) <= most:
            break
    if len(ticks) > most:
        ticks = ticks[:: math.ceil(len(ticks) / most)]
    out = []
    for tick in ticks:
        x = float(frame.x(tick.value))
        anchor = ("start" if x < frame.left + 30 else
                  "end" if x > frame.width - frame.right - 30 else "middle")
        axis = frame.height - frame.bottom
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{axis}" y2="{axis + 4}"/>'
                   f'<text class="tick" x="{x:.1f}" y="{frame.height - 8}" '
                   f'text-anchor="{anchor}">{tick.strftime(spec)}</text>')
    return "".join(out)
