"""Plots as SVG documents, with the standard library only (no matplotlib or numpy to pin):
grouped bar charts and line charts for the QoS and simulation reports.

Each function returns the whole document as a string and the caller writes it to a file.
The output is deterministic (the same input gives the same string), well-formed XML and
plain ASCII: every piece of text is escaped, other characters as character references.
Values that are None, NaN or infinite count as missing. Elements carry classes so that
they can be found again: `bar` (one per value drawn), `missing` (the "–" of a missing bar),
`value` (a bar's label), `line` (one polyline per unbroken run of a series), `point` (a
marker per point), `legend-label`, `tick`, `axis-label`, `title` and `no-data`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from xml.sax.saxutils import escape

# Okabe–Ito: distinguishable with the common colour-vision deficiencies. Series take the
# colours in order and start again after the eighth.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

FONT = 'font-family="sans-serif"'
TEXT = FONT + ' font-size="11"'
TOP = 36  # room for the title
BOTTOM = 48  # room for the x tick labels and the x axis label
LEFT = 64  # room for the y tick labels and the y axis label
GAP = 12  # between the plot and the legend
NICE_STEPS = (1.0, 2.0, 2.5, 5.0)  # times a power of ten
# Characters that XML 1.0 does not allow anywhere, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Scale = Callable[[float], float]


def _xml(text: object) -> str:
    """The text escaped for XML content and attribute values, without the characters XML
    cannot hold, and in ASCII (others as character references, so any file encoding works)."""
    escaped = escape(_NOT_XML.sub("", str(text)), {'"': "&quot;", "'": "&apos;"})
    return escaped.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _clean(value: float | None) -> float | None:
    """The value as a float, or None when it is missing, NaN or infinite."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _number(value: float) -> float:
    """The value rounded to 12 significant digits (so 3 × 0.1 reads 0.3), never -0.0."""
    return float(f"{value:.12g}") + 0.0


def nice_ticks(low: float, high: float) -> list[float]:
    """Four to six evenly spaced ticks, at a multiple of 1, 2, 2.5 or 5 × 10^k, the first at
    or below `low` and the last at or above `high`. An empty range is widened first."""
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    span = high - low
    k0 = math.floor(math.log10(span / 6))
    for k in range(k0 - 1, k0 + 3):
        for multiple in NICE_STEPS:
            step = multiple * 10.0**k
            first = math.floor(low / step + 1e-9)
            last = math.ceil(high / step - 1e-9)
            if 4 <= last - first + 1 <= 6:
                return [_number(i * step) for i in range(first, last + 1)]
    step = span / 5  # not reached for finite ranges; evenly spaced as a fallback
    return [_number(low + i * step) for i in range(6)]


def _label(value: float) -> str:
    """A tick label: short, without trailing zeros."""
    return f"{value:.6g}"


def _check(name: str, values: Sequence[float | None], expected: int, what: str) -> None:
    if len(values) != expected:
        raise ValueError(f"series {name!r} has {len(values)} values but there are {expected} {what}")


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, not {width} × {height}")


def _frame(title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text class="title" x="{width / 2:.1f}" y="22" text-anchor="middle" {FONT} font-size="14" '
        f'font-weight="bold">{_xml(title)}</text>',
    ]


def _no_data(x: float, y: float) -> str:
    return f'<text class="no-data" x="{x:.1f}" y="{y:.1f}" text-anchor="middle" {TEXT}>no data</text>'


def _empty(title: str, width: int, height: int) -> str:
    """A document with the title and "no data"."""
    return "\n".join([*_frame(title, width, height), _no_data(width / 2, height / 2), "</svg>"])


def _legend_width(names: Sequence[str], width: int) -> float:
    """Room for the legend on the right: a swatch and the longest name, at most 40% of the width."""
    longest = max((len(name) for name in names), default=0)
    return min(max(80.0, 30 + 6.5 * longest), width * 0.4)


def _legend(parts: list[str], names: Sequence[str], x: float) -> None:
    parts.append('<g class="legend">')
    for i, name in enumerate(names):
        y = TOP + 18 * i
        color = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect class="swatch" x="{x:.1f}" y="{y}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text class="legend-label" x="{x + 18:.1f}" y="{y + 10}" {TEXT}>{_xml(name)}</text>')
    parts.append("</g>")


def _y_scale(values: Sequence[float], top: float, bottom: float) -> tuple[list[float], Scale]:
    """Ticks over a range holding 0 and every value, and the map from a value to its y."""
    low, high = min([0.0, *values]), max([0.0, *values])
    if low == high:  # no values, or all zero
        high = 1.0
    ticks = nice_ticks(low, high)
    low, high = ticks[0], ticks[-1]

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (bottom - top)

    return ticks, y


def _y_axis(
    parts: list[str], ticks: list[float], y: Scale, left: float, right: float, top: float, bottom: float
) -> None:
    """Gridlines, tick labels, the y axis and the line at zero."""
    for tick in ticks:
        py = y(tick)
        parts.append(f'<line x1="{left:.1f}" y1="{py:.1f}" x2="{right:.1f}" y2="{py:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text class="tick" x="{left - 6:.1f}" y="{py + 4:.1f}" text-anchor="end" {TEXT}>'
            f"{_xml(_label(tick))}</text>"
        )
    parts.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" stroke="black"/>')
    zero = y(0.0)
    parts.append(f'<line x1="{left:.1f}" y1="{zero:.1f}" x2="{right:.1f}" y2="{zero:.1f}" stroke="black"/>')


def _axis_labels(
    parts: list[str], x_label: str, y_label: str, left: float, right: float, top: float, bottom: float
) -> None:
    if x_label:
        parts.append(
            f'<text class="axis-label" x="{(left + right) / 2:.1f}" y="{bottom + 36:.1f}" '
            f'text-anchor="middle" {TEXT}>{_xml(x_label)}</text>'
        )
    if y_label:
        mid = (top + bottom) / 2
        parts.append(
            f'<text class="axis-label" x="14" y="{mid:.1f}" transform="rotate(-90 14 {mid:.1f})" '
            f'text-anchor="middle" {TEXT}>{_xml(y_label)}</text>'
        )


def _plot_area(names: Sequence[str], width: int, height: int) -> tuple[float, float, float, float]:
    """Left, right, top and bottom of the plot, with room for the legend; never empty."""
    right = width - _legend_width(names, width) - GAP
    bottom = height - BOTTOM
    return LEFT, max(right, LEFT + 1.0), TOP, max(float(bottom), TOP + 1.0)


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_label: str = "",
    y_format: str = "{:.2f}",
    width: int = 720,
    height: int = 360,
) -> str:
    """Grouped bars: one group per entry of `groups` (x axis), one bar per series within each
    group (legend), `series[name][i]` the value for groups[i]; None (or NaN, or infinity) draws
    no bar (missing data) and shows "–".

    The y axis runs from 0 (or the lowest value, when one is negative) to the highest value,
    with 4 to 6 nice ticks. Each bar is a `<rect class="bar">`, labelled with its value
    formatted by `y_format` when the bar is wide enough. With no groups or no series, the
    document only says "no data". Raises ValueError when a series does not have one value per
    group, or when the size is not positive."""
    _check_size(width, height)
    for name, values in series.items():
        _check(name, values, len(groups), "groups")
    if not groups or not series:
        return _empty(title, width, height)
    names = list(series)
    clean = [[_clean(v) for v in series[name]] for name in names]
    present = [v for values in clean for v in values if v is not None]
    left, right, top, bottom = _plot_area(names, width, height)
    ticks, y = _y_scale(present, top, bottom)
    zero = y(0.0)

    parts = _frame(title, width, height)
    _y_axis(parts, ticks, y, left, right, top, bottom)
    _axis_labels(parts, "", y_label, left, right, top, bottom)
    slot = (right - left) / len(groups)
    bar = slot * 0.8 / len(names)  # each bar's share of the slot, 10% margin on either side
    for g, group in enumerate(groups):
        parts.append(
            f'<text class="tick" x="{left + (g + 0.5) * slot:.1f}" y="{bottom + 16:.1f}" '
            f'text-anchor="middle" {TEXT}>{_xml(group)}</text>'
        )
        for s, values in enumerate(clean):
            value = values[g]
            x = left + g * slot + slot * 0.1 + s * bar
            middle = x + bar / 2
            if value is None:
                parts.append(
                    f'<text class="missing" x="{middle:.1f}" y="{zero - 3:.1f}" text-anchor="middle" '
                    f"{TEXT}>&#8211;</text>"  # an en dash
                )
                continue
            top_y, bottom_y = sorted((y(value), zero))
            text = y_format.format(value)
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{top_y:.1f}" width="{bar * 0.9:.1f}" '
                f'height="{bottom_y - top_y:.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                f"<title>{_xml(f'{names[s]}, {group}: {text}')}</title></rect>"
            )
            if bar >= 5.5 * len(text) + 2:  # room for the label across the bar
                label_y = top_y - 3 if value >= 0 else bottom_y + 10
                parts.append(
                    f'<text class="value" x="{middle:.1f}" y="{label_y:.1f}" text-anchor="middle" '
                    f'{FONT} font-size="9">{_xml(text)}</text>'
                )
    if not present:
        parts.append(_no_data((left + right) / 2, (top + bottom) / 2))
    _legend(parts, names, right + GAP)
    return "\n".join([*parts, "</svg>"])


def line_chart(
    title: str,
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    x_label: str = "",
    y_label: str = "",
    width: int = 720,
    height: int = 360,
) -> str:
    """One polyline per series over the shared x values (None breaks the line), with axes,
    ticks and a legend.

    `series[name][i]` is the value at x[i]; a missing value (None, NaN or infinity), or a
    missing x, breaks the line, so a series is drawn as one `<polyline class="line">` per
    unbroken run, with a marker at each point (a run of one point shows as its marker). The
    y axis holds 0 and every value; the x axis spans the x values, with nice ticks. With no x
    values, no series or no value at all, the document only says "no data". Raises ValueError
    when a series does not have one value per x, or when the size is not positive."""
    _check_size(width, height)
    for name, values in series.items():
        _check(name, values, len(x), "x values")
    xs = [_clean(v) for v in x]
    names = list(series)
    clean = [[_clean(v) for v in series[name]] for name in names]
    present = [v for values in clean for i, v in enumerate(values) if v is not None and xs[i] is not None]
    if not present:
        return _empty(title, width, height)
    left, right, top, bottom = _plot_area(names, width, height)
    ticks, y = _y_scale(present, top, bottom)
    known = [v for v in xs if v is not None]
    x_ticks = nice_ticks(min(known), max(known))
    x_low, x_high = x_ticks[0], x_ticks[-1]

    def px(value: float) -> float:
        return left + (value - x_low) / (x_high - x_low) * (right - left)

    parts = _frame(title, width, height)
    _y_axis(parts, ticks, y, left, right, top, bottom)
    for tick in x_ticks:
        parts.append(
            f'<line x1="{px(tick):.1f}" y1="{bottom:.1f}" x2="{px(tick):.1f}" y2="{bottom + 4:.1f}" '
            'stroke="black"/>'
        )
        parts.append(
            f'<text class="tick" x="{px(tick):.1f}" y="{bottom + 16:.1f}" text-anchor="middle" {TEXT}>'
            f"{_xml(_label(tick))}</text>"
        )
    _axis_labels(parts, x_label, y_label, left, right, top, bottom)
    for s, values in enumerate(clean):
        color = PALETTE[s % len(PALETTE)]
        for run in _runs(xs, values):
            run = [(px(xv), y(v)) for xv, v in run]
            points = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
            parts.append(
                f'<polyline class="line" points="{points}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
            for a, b in run:
                parts.append(f'<circle class="point" cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>')
    _legend(parts, names, right + GAP)
    return "\n".join([*parts, "</svg>"])


def _runs(xs: Sequence[float | None], values: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    """The unbroken runs of (x, value) points: a missing x or value ends a run."""
    runs: list[list[tuple[float, float]]] = [[]]
    for xv, v in zip(xs, values, strict=True):
        if xv is None or v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((xv, v))
    return [run for run in runs if run]


__all__ = ["PALETTE", "bar_chart", "line_chart", "nice_ticks"]
