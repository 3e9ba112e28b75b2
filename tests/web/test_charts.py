"""SVG charts: well-formed, escaped, accessible, colour-blind-safe, numbers where they belong."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date

import pytest

from emailexp.web import charts

SVG = "{http://www.w3.org/2000/svg}"
XSS = '<script>alert(1)</script>"&'


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))  # fails on malformed markup or unescaped text


def test_forest_plot_positions_and_text_alternative():
    rows = [charts.ForestRow("A (control)", 0.0, None, None, "control"),
            charts.ForestRow(XSS, 0.25, 0.10, 0.40, "p = 0.001"),
            charts.ForestRow("C", -0.05, -0.20, 0.10)]
    fig = parse(charts.forest_plot(rows, chart_id="lift", title="Lift vs control", desc="Relative lift",
                                   axis_label="Lift"))
    svg = fig.find(f"{SVG}svg")
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Lift vs control" and svg.find(f"{SVG}desc").text == "Relative lift"
    ref = next(e for e in svg.iter(f"{SVG}line") if e.get("class") == "reference")
    estimates = [float(g.get("data-x")) for g in svg.iter(f"{SVG}g") if g.get("class") == "estimate"]
    assert estimates[0] == pytest.approx(float(ref.get("x1")))       # 0 lift sits on the no-effect line
    assert estimates[1] > estimates[0] > estimates[2]
    interval = [e for e in svg.iter(f"{SVG}line") if e.get("class") == "interval"][0]
    assert float(interval.get("x1")) < estimates[1] < float(interval.get("x2"))
    table = fig.find("table")
    assert "visually-hidden" in table.get("class")
    cells = [[c.text for c in tr] for tr in table.iter("tr")][1:]
    assert cells[1] == [XSS, "+25.0%", "+10.0%", "+40.0%", "p = 0.001"]
    assert "<script>" not in str(charts.forest_plot(rows, chart_id="x", title=XSS, desc=XSS, axis_label=XSS))


def test_line_chart_series_are_told_apart_without_colour():
    days = [date(2026, 12, d) for d in range(1, 8)]
    series = [charts.Series("A", [(d, 0.20 + i * 0.001) for i, d in enumerate(days)]),
              charts.Series("B", [(d, 0.25) for d in days])]
    fig = parse(charts.line_chart(series, chart_id="cum", title="Cumulative", desc="d", x_label="Day",
                                  y_label="Open rate", x_fmt=lambda d: d.strftime("%m/%d")))
    lines = [e for e in fig.iter(f"{SVG}polyline") if e.get("class") == "series"]
    assert [e.get("stroke") for e in lines] == list(charts.OKABE_ITO[:2])
    assert lines[0].get("stroke-dasharray") is None and lines[1].get("stroke-dasharray")
    # B (25 %) is drawn above A (~20 %): smaller y in SVG coordinates
    ya = [float(p.split(",")[1]) for p in lines[0].get("points").split()]
    yb = [float(p.split(",")[1]) for p in lines[1].get("points").split()]
    assert all(b < a for a, b in zip(ya, yb))
    rows = [[c.text for c in tr] for tr in fig.find("table").iter("tr")]
    assert rows[0] == ["Day", "A", "B"] and rows[1] == ["12/01", "20.0%", "25.0%"] and len(rows) == 8


def test_bar_chart_heights_are_proportional():
    cats = [f"{h}h" for h in range(6)]
    series = [charts.Series("A", [(i, v) for i, v in enumerate([10, 20, 0, 40, 5, 5])]),
              charts.Series("B", [(i, 10) for i in range(6)])]
    fig = parse(charts.bar_chart(cats, series, chart_id="hours", title="Opens by hours since send", desc="d",
                                 x_label="Hours", y_label="Opens"))
    bars = [e for e in fig.iter(f"{SVG}rect") if e.get("class") == "bar"]
    a = [float(b.get("height")) for b in bars if b.find(f"{SVG}title").text.startswith("A:")]
    assert len(a) == 5  # zero is not drawn
    assert a[1] == pytest.approx(2 * a[0]) and a[2] == pytest.approx(4 * a[0])
    assert any("url(#hours-hatch1)" == b.get("fill") for b in bars)  # second series hatched


def test_heatmap_cells_colours_and_best_cell():
    weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    hours = [str(h) for h in range(24)]
    values = [[0.1 + 0.001 * h for h in range(24)] for _ in weekdays]
    values[1][8] = 0.5
    values[6][3] = None
    fig = parse(charts.heatmap(weekdays, hours, values, chart_id="hm", title="Predicted open rate", desc="d",
                               corner_label="Weekday"))
    cells = [e for e in fig.iter(f"{SVG}rect") if e.get("class") == "cell"]
    assert len(cells) == 7 * 24
    best = next(e for e in fig.iter(f"{SVG}rect") if e.get("class") == "best")
    assert (int(float(best.get("x"))) - 1, int(float(best.get("y"))) - 1) == \
        (int(cells[1 * 24 + 8].get("x")), int(cells[1 * 24 + 8].get("y")))
    assert cells[1 * 24 + 8].get("fill") == charts.heat_colour(1.0)
    assert cells[6 * 24 + 3].get("fill") == "url(#hm-missing)"
    assert cells[1 * 24 + 8].find(f"{SVG}title").text == "Tue 8: 50.0%"
    rows = [[c.text for c in tr] for tr in fig.find("table").iter("tr")]
    assert rows[2][9] == "50.0%" and rows[7][4] == "—"


def test_heat_colour_ramp_is_monotonic_in_lightness():
    def lum(hex_):
        r, g, b = (int(hex_[i:i + 2], 16) for i in (1, 3, 5))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    ramp = [lum(charts.heat_colour(k / 20)) for k in range(21)]
    assert all(a > b for a, b in zip(ramp, ramp[1:]))  # readable in greyscale


def test_ids_are_sanitised():
    out = str(charts.forest_plot([charts.ForestRow("A", 0.1, 0, 0.2)], chart_id='x" onload="alert(1)',
                                 title="t", desc="d", axis_label="a"))
    assert 'onload="' not in out and re.search(r'id="x--onload--alert-1--title"', out)
