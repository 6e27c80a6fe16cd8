"""Inline SVG charts for the HTML run report.

Holds the drawing only: `time_chart` (one line or area over time with shaded chunk bands),
`lines_chart` (several lines over time, with a legend), `price_chart` (a close line with a
marker per trade entry and exit), `weights_chart` (provider weights per chunk),
`histogram_chart`, the frame, axis and tick helpers they share, and `downsample_extremes`,
which bounds the points drawn per line. Each chart is returned as markup with every text
HTML-escaped; how numbers read is the caller's choice, passed in as functions.

Time charts can be zoomed by the page's script (`backtester.report._page`): their data sit
in an inner ``<svg class="plot">`` whose viewBox the script narrows; shapes that must keep
their proportions (markers, band labels) carry the class ``fix`` and a ``translate``
transform the script completes with a counter-scale. Without the script they are plain,
complete charts.
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

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
_TIME_STEPS = (("1h", "%m-%d %H:%M"), ("6h", "%m-%d %H:%M"), ("1D", "%Y-%m-%d"),
               ("7D", "%Y-%m-%d"), ("MS", "%Y-%m"), ("3MS", "%Y-%m"), ("YS", "%Y"))
_MARKER_PATHS = {"long": "M0-5.5l5 9h-10z", "short": "M0 5.5l5-9h-10z",
                 "exit": "M-3.2 0a3.2 3.2 0 1 0 6.4 0a3.2 3.2 0 1 0-6.4 0"}
_WIDTH = 1100.0


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded stretch of a time chart: UTC nanosecond bounds, label and hover text."""

    start: int
    stop: int
    label: str
    tooltip: str


@dataclass(frozen=True, slots=True)
class Line:
    """One series of `lines_chart`: a name (legend, ``data-series``), values and colour."""

    name: str
    values: np.ndarray
    color: str
    width: float = 1.4


@dataclass(frozen=True, slots=True)
class Marker:
    """One trade mark of `price_chart`: ``kind`` is "long" or "short" (an entry) or "exit"."""

    time: int
    price: float
    kind: str
    trade: int
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
    values = np.asarray(values, dtype=np.float64)
    frame = _time_frame(times, [values], height, reference)
    drawn = np.where(np.isfinite(values), values, reference)
    keep = downsample_extremes(drawn)
    xs, ys = frame.x(times[keep]), frame.y(drawn[keep])
    base = float(frame.y(reference))
    if area:
        body = (f'<polygon class="area" points="{xs[0]:.1f},{base:.1f} {_points(xs, ys)} '
                f'{xs[-1]:.1f},{base:.1f}"/>')
    else:
        body = _reference_line(frame, base)
    body += f'<polyline class="{"area-line" if area else "line"}" points="{_points(xs, ys)}"/>'
    return (f'<div class="chart-title">{_text(label)}</div>'
            + _zoomable(frame, label, bands, labels_on_top, tick_text, body, keep.size))


def lines_chart(times: np.ndarray, lines: Sequence[Line], bands: Sequence[Band], *,
                height: int, reference: float, label: str,
                tick_text: Callable[[float], str]) -> str:
    """Several series over the same ``times`` with a dashed ``reference`` line and a legend.

    Each line is downsampled on its own (`downsample_extremes`) and carries
    ``data-series="<name>"``; non-finite values leave the line out of the range and are
    drawn at ``reference``. The first line is drawn last, on top of the others.
    """
    frame = _time_frame(times, [line.values for line in lines], height, reference)
    body, most = [_reference_line(frame, float(frame.y(reference)))], 0
    for line in reversed(lines):
        drawn = np.where(np.isfinite(line.values), line.values, reference)
        keep = downsample_extremes(drawn)
        most = max(most, keep.size)
        body.append(f'<polyline class="series" data-series="{_text(line.name)}" '
                    f'stroke="{line.color}" stroke-width="{line.width:g}" '
                    f'points="{_points(frame.x(times[keep]), frame.y(drawn[keep]))}"/>')
    legend = "".join(f'<span><i style="background:{line.color}"></i>{_text(line.name)}</span>'
                     for line in lines)
    return (f'<div class="chart-title">{_text(label)}</div>'
            + _zoomable(frame, label, bands, True, tick_text, "".join(body), most)
            + f'<div class="legend">{legend}</div>')


def price_chart(times: np.ndarray, close: np.ndarray, markers: Sequence[Marker], *,
                height: int, label: str, tick_text: Callable[[float], str]) -> str:
    """A close-price line (downsampled) with every trade marker drawn at its time and price.

    Entries are triangles (up for long, down for short), exits hollow circles; each marker
    is a ``<path class="marker <kind>" data-trade="<row>">`` with ``tooltip`` as its title.
    """
    close = np.asarray(close, dtype=np.float64)
    prices = np.array([m.price for m in markers], dtype=np.float64)
    finite = close[np.isfinite(close)]
    reference = float(finite[0]) if finite.size else 0.0
    frame = _time_frame(times, [close, prices], height, reference)
    drawn = np.where(np.isfinite(close), close, reference)
    keep = downsample_extremes(drawn)
    body = [f'<polyline class="line price" points="'
            f'{_points(frame.x(times[keep]), frame.y(drawn[keep]))}"/>']
    xs = frame.x(np.array([m.time for m in markers], dtype=np.float64))
    ys = frame.y(np.where(np.isfinite(prices), prices, reference))
    for marker, x, y in zip(markers, xs.tolist(), ys.tolist()):
        body.append(f'<path class="marker {marker.kind} fix" transform="translate({x:.1f} '
                    f'{y:.1f})" d="{_MARKER_PATHS[marker.kind]}" data-trade="{marker.trade}">'
                    f"<title>{_text(marker.tooltip)}</title></path>")
    return (f'<div class="chart-title">{_text(label)}</div>'
            + _zoomable(frame, label, (), False, tick_text, "".join(body), keep.size))


def histogram_chart(edges: np.ndarray, counts: np.ndarray, *, label: str,
                    edge_text: Callable[[float], str]) -> str:
    """Bars of ``counts`` between ``edges`` (ascending, one more than counts).

    Bars wholly below zero are red, wholly above green, others grey; each bar carries
    ``data-count`` and a title naming its range (written by ``edge_text``).
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    high = float(max(int(counts.max(initial=0)), 1)) * 1.08
    frame = _Frame(_WIDTH, 240.0, (float(edges[0]), float(edges[-1])), (0.0, high), top=12.0)
    ticks = [t for t in _nice_ticks(0.0, high) if float(t).is_integer()]
    parts = [f'<svg class="chart histogram" viewBox="0 0 {_WIDTH:.0f} 240" role="img" '
             f'aria-label="{_text(label)}">',
             _y_axis(frame, ticks, lambda tick: f"{tick:,.0f}")]
    bottom = float(frame.y(0.0))
    for low, top, count in zip(edges[:-1].tolist(), edges[1:].tolist(), counts.tolist()):
        x0, x1, y = float(frame.x(low)), float(frame.x(top)), float(frame.y(count))
        shade = "loss" if top <= 0 else "gain" if low >= 0 else "mixed"
        parts.append(f'<rect class="bin {shade}" x="{x0 + 0.5:.1f}" y="{y:.1f}" '
                     f'width="{max(x1 - x0 - 1.0, 0.5):.1f}" height="{bottom - y:.1f}" '
                     f'data-count="{count}"><title>{_text(edge_text(low))} to '
                     f"{_text(edge_text(top))}: {count:,}</title></rect>")
    for tick in _nice_ticks(float(edges[0]), float(edges[-1]), 8):
        x = float(frame.x(tick))
        zero = " zero" if tick == 0 else ""
        anchor = ("start" if x < frame.left + 20 else
                  "end" if x > frame.width - frame.right - 20 else "middle")
        parts.append(f'<line class="grid{zero}" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" '
                     f'y2="{bottom + 4:.1f}"/><text class="tick" x="{x:.1f}" '
                     f'y="{frame.height - 8}" text-anchor="{anchor}">{_text(edge_text(tick))}'
                     "</text>")
    parts.append("</svg>")
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
    frame = _Frame(_WIDTH, 260.0, (-0.5, len(labels) - 0.5), (0.0, high), top=14.0)
    parts = ['<svg class="chart" viewBox="0 0 1100 260" role="img" aria-label="Provider weights">',
             _y_axis(frame, _nice_ticks(0.0, high), lambda tick: f"{tick:.2f}")]
    step = max(1, math.ceil(len(labels) * 60 / (frame.width - frame.left - frame.right)))
    for k in range(0, len(labels), step):
        parts.append(f'<text class="tick" x="{float(frame.x(k)):.1f}" y="{frame.height - 8}" '
                     f'text-anchor="middle">{_text(labels[k])}</text>')
    for j, provider in enumerate(providers):
        color = PALETTE[j % len(PALETTE)]
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
    legend = "".join(f'<span><i style="background:{PALETTE[j % len(PALETTE)]}"></i>'
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


def _time_frame(times: np.ndarray, series: Sequence[np.ndarray], height: int,
                reference: float) -> _Frame:
    finite = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in series])
    finite = finite[np.isfinite(finite)]
    low = float(min(finite.min(), reference)) if finite.size else reference
    high = float(max(finite.max(), reference)) if finite.size else reference + 1.0
    pad = (high - low) * 0.05 or abs(high) * 0.01 or 0.01
    return _Frame(_WIDTH, float(height), (float(times[0]), float(times[-1])),
                  (low - pad, high + pad))


def _zoomable(frame: _Frame, label: str, bands: Sequence[Band], labels_on_top: bool,
              tick_text: Callable[[float], str], body: str, points: int) -> str:
    """The chart shell: static y axis, time axis, then the data in a zoomable inner svg.

    ``data-t0``/``data-t1`` give the UTC milliseconds at the plot's left and right edges so
    the script can rewrite the time axis of a zoomed chart.
    """
    plot_width = frame.width - frame.left - frame.right
    t0, t1 = (value / 1e6 for value in frame.x_range)
    return (f'<svg class="chart zoom" viewBox="0 0 {frame.width:.0f} {frame.height:.0f}" '
            f'role="img" aria-label="{_text(label)}" data-points="{points}" '
            f'data-t0="{t0:.0f}" data-t1="{t1:.0f}">'
            + _y_axis(frame, _nice_ticks(*frame.y_range), tick_text)
            + f'<g class="x-axis" data-y="{frame.height - frame.bottom:g}">'
              f"{_time_axis(frame)}</g>"
            + f'<svg class="plot" x="{frame.left:g}" y="0" width="{plot_width:g}" '
              f'height="{frame.height:g}" viewBox="{frame.left:g} 0 {plot_width:g} '
              f'{frame.height:g}" preserveAspectRatio="none">'
            + _band_marks(frame, bands, labels_on_top) + body + "</svg></svg>")


def _reference_line(frame: _Frame, y: float) -> str:
    return (f'<line class="reference" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>')


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + k * step, 12) for k in range(int((high - first) / step + 1e-9) + 1)]


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
            out.append(f'<text class="band-label fix" transform="translate({(x0 + x1) / 2:.1f} '
                       f'{frame.top - 6})" text-anchor="middle">{_text(band.label)}</text>')
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
