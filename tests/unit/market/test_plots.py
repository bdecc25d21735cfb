"""SVG plots with the standard library only (provingmarket/market/plots.py), with no chain: each
document parses as XML; a bar chart has one `rect.bar` per value present, taller for larger
values, and none (a "–" instead) for None, NaN and infinity; a line chart has one polyline
per unbroken run of a series; the legend names every series in palette order; text is
escaped, the document ASCII; ticks are 4 to 6 nice numbers covering 0 and the values; empty
data says "no data"; a series of the wrong length is a ValueError; the same input gives the
same string."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from provingmarket.market.plots import PALETTE, bar_chart, line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    return root


def of_class(root: ET.Element, tag: str, name: str) -> list[ET.Element]:
    return [e for e in root.iter(SVG + tag) if e.get("class") == name]


def texts(root: ET.Element, name: str) -> list[str]:
    return [e.text or "" for e in of_class(root, "text", name)]


def bars(root: ET.Element) -> list[ET.Element]:
    return of_class(root, "rect", "bar")


def height(bar: ET.Element) -> float:
    return float(bar.get("height", "nan"))


def bar_of(root: ET.Element, series: str, group: str) -> ET.Element:
    """The bar whose tooltip starts with "series, group:"."""
    (bar,) = [b for b in bars(root) if (b.findtext(SVG + "title") or "").startswith(f"{series}, {group}:")]
    return bar


def test_one_bar_per_value_and_none_draws_a_dash():
    svg = bar_chart(
        "QoS per mechanism",
        ["auction", "orderbook", "open race"],
        {"median": [1.0, None, 3.0], "p95": [2.0, 5.0, float("nan")]},
        y_label="seconds",
    )
    root = parse(svg)
    assert len(bars(root)) == 4
    assert texts(root, "missing") == ["–", "–"]
    assert texts(root, "legend-label") == ["median", "p95"]
    assert texts(root, "title") == ["QoS per mechanism"]
    assert "seconds" in texts(root, "axis-label")
    assert {"auction", "orderbook", "open race"} <= set(texts(root, "tick"))
    assert [b.get("fill") for b in bars(root)] == [PALETTE[0], PALETTE[1], PALETTE[1], PALETTE[0]]
    with pytest.raises(ValueError):
        bar_of(root, "median", "orderbook")


def test_taller_values_give_taller_bars_from_the_same_baseline():
    root = parse(bar_chart("t", ["a", "b", "c"], {"s": [1.0, 4.0, 2.0]}))
    a, b, c = (bar_of(root, "s", g) for g in "abc")
    assert height(b) > height(c) > height(a) > 0
    assert height(b) / height(a) == pytest.approx(4, rel=0.02)
    bottoms = {round(float(r.get("y", "nan")) + height(r), 1) for r in (a, b, c)}
    assert len(bottoms) == 1


def test_bars_are_labelled_with_their_values_when_there_is_room():
    root = parse(bar_chart("t", ["a", "b"], {"s": [0.5, 12.25]}, y_format="{:.1f}"))
    assert texts(root, "value") == ["0.5", "12.2"]
    crowded = parse(bar_chart("t", [f"g{i}" for i in range(40)], {"s": [1.0] * 40, "r": [2.0] * 40}))
    assert len(bars(crowded)) == 80
    assert texts(crowded, "value") == []


def test_negative_values_hang_below_zero():
    root = parse(bar_chart("t", ["up", "down"], {"s": [3.0, -2.0]}))
    up, down = bar_of(root, "s", "up"), bar_of(root, "s", "down")
    assert float(up.get("y", "nan")) + height(up) == pytest.approx(float(down.get("y", "nan")), abs=0.15)
    assert height(up) / height(down) == pytest.approx(1.5, rel=0.02)
    ticks = [float(t) for t in texts(root, "tick") if t not in ("up", "down")]
    assert min(ticks) <= -2 and max(ticks) >= 3 and 0 in ticks


def test_text_is_escaped():
    name = "a & b <c> \"d\" 'e'"
    svg = bar_chart(name, [name], {name: [1.0]}, y_label=name)
    assert "<c>" not in svg and "& b" not in svg
    root = parse(svg)
    assert texts(root, "title") == [name]
    assert texts(root, "legend-label") == [name]
    assert name in texts(root, "tick") and name in texts(root, "axis-label")
    line = parse(line_chart(name, [1, 2], {name: [1, 2]}, x_label=name, y_label=name))
    assert texts(line, "legend-label") == [name]
    assert texts(line, "axis-label") == [name, name]
    # Other characters are character references (the document is ASCII, whatever the file's
    # encoding); those that XML cannot hold at all are dropped rather than break the document.
    accented = bar_chart("Okabe–Ito, é", ["g"], {"s": [None]})
    assert accented.isascii()
    assert texts(parse(accented), "title") == ["Okabe–Ito, é"]
    assert texts(parse(accented), "missing") == ["–"]
    assert texts(parse(bar_chart("bell\x07", ["g"], {"s": [1]})), "title") == ["bell"]


def test_empty_data_says_no_data():
    for svg in (
        bar_chart("empty", [], {}),
        bar_chart("no series", ["a", "b"], {}),
        bar_chart("no groups", [], {"s": []}),
        line_chart("empty", [], {}),
        line_chart("no series", [1, 2], {}),
        line_chart("all None", [1, 2], {"s": [None, float("inf")]}),
    ):
        root = parse(svg)
        assert texts(root, "no-data") == ["no data"]
        assert bars(root) == [] and of_class(root, "polyline", "line") == []


def test_all_none_and_all_zero_bars():
    root = parse(bar_chart("none", ["a", "b"], {"s": [None, None], "r": [math.nan, math.inf]}))
    assert bars(root) == []
    assert len(texts(root, "missing")) == 4
    assert texts(root, "no-data") == ["no data"]
    assert texts(root, "legend-label") == ["s", "r"]
    zero = parse(bar_chart("zero", ["a", "b"], {"s": [0.0, 0.0]}))
    assert [height(b) for b in bars(zero)] == [0.0, 0.0]
    assert texts(zero, "no-data") == []


def test_a_single_group():
    root = parse(bar_chart("one", ["only"], {"s": [7.0], "r": [None], "q": [3]}))
    assert len(bars(root)) == 2
    assert texts(root, "legend-label") == ["s", "r", "q"]


def test_one_polyline_per_unbroken_run():
    root = parse(
        line_chart(
            "lines",
            [0, 1, 2, 3, 4, 5],
            {
                "whole": [1, 2, 3, 4, 5, 6],
                "broken": [1, None, 3, 4, float("nan"), 6],
                "missing": [None] * 6,
            },
            x_label="round",
            y_label="seconds",
        )
    )
    lines = of_class(root, "polyline", "line")
    assert [len(line.get("points", "").split()) for line in lines] == [6, 1, 2, 1]
    assert [line.get("stroke") for line in lines] == [PALETTE[0]] + [PALETTE[1]] * 3
    assert len(of_class(root, "circle", "point")) == 10
    assert texts(root, "legend-label") == ["whole", "broken", "missing"]
    assert texts(root, "axis-label") == ["round", "seconds"]
    # Larger values are higher up (smaller y) along the line.
    ys = [float(p.split(",")[1]) for p in lines[0].get("points", "").split()]
    assert ys == sorted(ys, reverse=True) and ys[0] > ys[-1]


def test_a_missing_x_breaks_the_line_and_a_single_x_is_a_point():
    root = parse(line_chart("t", [0, math.nan, 2, 3], {"s": [1, 2, 3, 4]}))
    assert [len(line.get("points", "").split()) for line in of_class(root, "polyline", "line")] == [1, 2]
    single = parse(line_chart("t", [5.0], {"s": [2.0], "r": [-1.0]}))
    assert len(of_class(single, "polyline", "line")) == 2
    assert len(of_class(single, "circle", "point")) == 2
    for circle in of_class(single, "circle", "point"):
        assert all(math.isfinite(float(circle.get(a, "nan"))) for a in ("cx", "cy"))


def test_a_series_of_the_wrong_length_is_a_value_error():
    with pytest.raises(ValueError, match="series 'p95' has 1 values but there are 2 groups"):
        bar_chart("t", ["a", "b"], {"median": [1, 2], "p95": [1]})
    with pytest.raises(ValueError, match="series 's' has 3 values but there are 2 x values"):
        line_chart("t", [1, 2], {"s": [1, 2, 3]})
    with pytest.raises(ValueError, match="positive"):
        bar_chart("t", ["a"], {"s": [1]}, width=0)


def test_ticks_are_four_to_six_nice_numbers_covering_the_range():
    for low, high in [(0, 1), (0, 0.7), (-1.01, 1.01), (0, 3e-7), (-5, 0.001), (100, 110), (0, 12345)]:
        ticks = nice_ticks(low, high)
        assert 4 <= len(ticks) <= 6
        assert ticks[0] <= low and ticks[-1] >= high
        steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:], strict=False)}
        assert len(steps) == 1
        (step,) = steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 9) in (1, 2, 2.5, 5)
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1]
    assert nice_ticks(3, 3)[0] < 3 < nice_ticks(3, 3)[-1]


def test_y_ticks_include_zero_and_the_maximum():
    root = parse(bar_chart("t", ["a"], {"s": [37.0]}))
    ticks = [float(t) for t in texts(root, "tick") if t != "a"]
    assert 4 <= len(ticks) <= 6 and ticks[0] == 0 and ticks[-1] >= 37


def test_the_output_is_deterministic():
    def make() -> tuple[str, str]:
        series = {"b": [1.5, None], "a": [2.25, 3.0]}
        return bar_chart("t", ["x", "y"], series), line_chart("t", [0.1, 0.2], series)

    assert make() == make()
