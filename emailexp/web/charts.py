"""Server-side SVG charts: numbers in, escaped SVG markup out. No JavaScript, no network.

Every chart is a `<figure>` holding an `<svg role="img">` with `<title>` and `<desc>`, and a
visually hidden `<table>` with the same numbers as its text alternative. Series are told apart
by colour (the Okabe-Ito palette, safe for the common colour-vision deficiencies) *and* by
marker shape or dash pattern, so they survive greyscale printing. All text passes through
`markupsafe.escape`; callers pass already-translated labels and a `fmt` function for values.
The module is pure (no Flask), so it is unit-tested on its own.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from markupsafe import Markup, escape

# Okabe & Ito (2008), "Color Universal Design"; black first is left out (reserved for axes/text).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down", "cross", "plus", "star")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 2 1 2", "3 6")
# A colour-blind-safe sequential ramp (viridis endpoints and middle), light to dark for print.
HEAT_STOPS = ((0.0, (253, 231, 37)), (0.25, (94, 201, 98)), (0.5, (33, 145, 140)),
              (0.75, (59, 82, 139)), (1.0, (68, 1, 84)))

Fmt = Callable[[float], str]


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def signed_pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:+.{digits}f}%"


def _num(value: float) -> str:
    """Coordinates with 2 decimals: short markup, no exponent notation."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def _id(chart_id: str, suffix: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in chart_id) or "chart"
    return f"{safe}-{suffix}"


def marker(shape: str, x: float, y: float, size: float, colour: str) -> str:
    """An SVG marker of `shape` centred on (x, y)."""
    s = size
    fill = f'fill="{colour}" stroke="#000" stroke-width="0.8"'
    if shape == "square":
        return f'<rect x="{_num(x - s)}" y="{_num(y - s)}" width="{_num(2 * s)}" height="{_num(2 * s)}" {fill}/>'
    if shape in ("triangle", "triangle-down"):
        d = -1 if shape == "triangle" else 1
        pts = [(x, y + d * s * 1.2), (x - s * 1.1, y - d * s * 0.9), (x + s * 1.1, y - d * s * 0.9)]
        return f'<polygon points="{" ".join(f"{_num(a)},{_num(b)}" for a, b in pts)}" {fill}/>'
    if shape == "diamond":
        pts = [(x, y - s * 1.3), (x + s * 1.3, y), (x, y + s * 1.3), (x - s * 1.3, y)]
        return f'<polygon points="{" ".join(f"{_num(a)},{_num(b)}" for a, b in pts)}" {fill}/>'
    if shape in ("cross", "plus", "star"):
        arms = {"cross": [(1, 1), (1, -1)], "plus": [(1, 0), (0, 1)], "star": [(1, 1), (1, -1), (1, 0), (0, 1)]}[shape]
        lines = "".join(f'<line x1="{_num(x - a * s)}" y1="{_num(y - b * s)}" x2="{_num(x + a * s)}" '
                        f'y2="{_num(y + b * s)}" stroke="{colour}" stroke-width="2.5"/>' for a, b in arms)
        return f"<g>{lines}</g>"
    return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(s)}" {fill}/>'


def _figure(chart_id: str, title: str, desc: str, width: int, height: int, body: list[str], table: str,
            caption: str | None = None) -> Markup:
    tid, did = _id(chart_id, "title"), _id(chart_id, "desc")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-labelledby="{tid} {did}" font-family="system-ui, sans-serif" '
           f'font-size="12"><title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>'
           + "".join(body) + "</svg>")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return Markup(f'<figure class="chart" id="{_id(chart_id, "figure")}">{svg}{cap}{table}</figure>')


def _table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + f'<th scope="row">{escape(r[0])}</th>'
                   + "".join(f"<td>{escape(c)}</td>" for c in r[1:]) + "</tr>" for r in rows)
    return (f'<table class="visually-hidden chart-data"><caption>{escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi - step * 1e-9:  # float steps can stop one short of hi: the axis must cover the data
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


@dataclass(frozen=True)
class ForestRow:
    """One line of a forest plot: an estimate with its interval (e.g. relative lift vs control)."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None
    note: str = ""   # e.g. "control" or "adjusted p = 0.003"


def forest_plot(rows: Sequence[ForestRow], *, chart_id: str, title: str, desc: str, axis_label: str,
                headers: Sequence[str] = ("Variant", "Estimate", "Lower", "Upper", ""), fmt: Fmt = signed_pct,
                reference: float = 0.0, width: int = 640) -> Markup:
    """Estimates with intervals on a common axis, a dashed reference line at `reference` (no effect)."""
    row_h, top, left, right, bottom = 34, 16, 150, 30, 46
    height = top + bottom + row_h * max(1, len(rows))
    values = [v for r in rows for v in (r.estimate, r.low, r.high) if v is not None and math.isfinite(v)]
    lo, hi = min(values + [reference]), max(values + [reference])
    pad = (hi - lo) * 0.08 or 0.05
    ticks = _nice_ticks(lo - pad, hi + pad)
    lo, hi = ticks[0], ticks[-1]
    plot_w = width - left - right

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    body = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    axis_y = height - bottom + 6
    for t in ticks:
        x = sx(t)
        body.append(f'<line x1="{_num(x)}" y1="{top}" x2="{_num(x)}" y2="{_num(axis_y)}" stroke="#e3e6ec"/>')
        body.append(f'<text x="{_num(x)}" y="{_num(axis_y + 16)}" text-anchor="middle" fill="#333">{escape(fmt(t))}</text>')
    rx = sx(reference)
    body.append(f'<line class="reference" x1="{_num(rx)}" y1="{top - 6}" x2="{_num(rx)}" y2="{_num(axis_y)}" '
                f'stroke="#000" stroke-dasharray="4 3"/>')
    body.append(f'<text x="{_num(left + plot_w / 2)}" y="{height - 6}" text-anchor="middle" fill="#333">'
                f"{escape(axis_label)}</text>")
    table_rows = []
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        colour, shape = OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)]
        body.append(f'<text x="{left - 10}" y="{_num(y + 4)}" text-anchor="end" fill="#111">{escape(r.label)}</text>')
        if r.low is not None and r.high is not None:
            body.append(f'<line class="interval" x1="{_num(sx(r.low))}" y1="{_num(y)}" x2="{_num(sx(r.high))}" '
                        f'y2="{_num(y)}" stroke="{colour}" stroke-width="3"/>')
            for v in (r.low, r.high):
                body.append(f'<line x1="{_num(sx(v))}" y1="{_num(y - 6)}" x2="{_num(sx(v))}" y2="{_num(y + 6)}" '
                            f'stroke="{colour}" stroke-width="2"/>')
        if r.estimate is not None:
            body.append(f'<g class="estimate" data-x="{_num(sx(r.estimate))}">'
                        + marker(shape, sx(r.estimate), y, 6, colour) + "</g>")
        table_rows.append([r.label, fmt(r.estimate) if r.estimate is not None else "—",
                           fmt(r.low) if r.low is not None else "—", fmt(r.high) if r.high is not None else "—",
                           r.note])
    return _figure(chart_id, title, desc, width, height, body, _table(title, headers, table_rows))


@dataclass(frozen=True)
class Series:
    """A named line or bar series; `points` are (x, y) with x a number, date or datetime."""

    label: str
    points: Sequence[tuple[float | date | datetime, float | None]]


def _x_value(x) -> float:
    if isinstance(x, datetime):
        return x.timestamp()
    if isinstance(x, date):
        return float(x.toordinal())
    return float(x)


def line_chart(series: Sequence[Series], *, chart_id: str, title: str, desc: str, x_label: str, y_label: str,
               fmt: Fmt = pct, x_fmt: Callable[[object], str] = str, width: int = 640, height: int = 300,
               y_min: float | None = 0.0) -> Markup:
    """Lines (e.g. cumulative open rate per variant over time), each with its own colour, dash and marker."""
    left, right, top, bottom = 62, 130, 16, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [_x_value(x) for s in series for x, y in s.points if y is not None]
    ys = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
    if not xs:
        xs, ys = [0.0, 1.0], [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_hi = x_lo + 1
    ticks = _nice_ticks(min(ys) if y_min is None else min(y_min, min(ys)), max(ys) * 1.05 if max(ys) > 0 else 1)
    y_lo, y_hi = ticks[0], ticks[-1]

    def sx(x) -> float:
        return left + (_x_value(x) - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    body = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    for t in ticks:
        body.append(f'<line x1="{left}" y1="{_num(sy(t))}" x2="{left + plot_w}" y2="{_num(sy(t))}" stroke="#e3e6ec"/>')
        body.append(f'<text x="{left - 6}" y="{_num(sy(t) + 4)}" text-anchor="end" fill="#333">{escape(fmt(t))}</text>')
    all_x = sorted({x for s in series for x, _ in s.points}, key=_x_value)
    if all_x:
        step = max(1, len(all_x) // 6)
        for x in all_x[::step]:
            body.append(f'<text x="{_num(sx(x))}" y="{top + plot_h + 18}" text-anchor="middle" fill="#333">'
                        f"{escape(x_fmt(x))}</text>")
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" fill="#333">{escape(x_label)}</text>')
    body.append(f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" fill="#333">'
                f"{escape(y_label)}</text>")
    for i, s in enumerate(series):
        colour, dash, shape = OKABE_ITO[i % len(OKABE_ITO)], DASHES[i % len(DASHES)], MARKERS[i % len(MARKERS)]
        pts = [(sx(x), sy(y)) for x, y in s.points if y is not None and math.isfinite(y)]
        if not pts:
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2.5"{dash_attr} '
                    f'points="{" ".join(f"{_num(a)},{_num(b)}" for a, b in pts)}"/>')
        every = max(1, len(pts) // 8)
        body.extend(marker(shape, a, b, 4, colour) for a, b in pts[::every])
        ly = top + 14 + i * 20
        body.append(f'<line x1="{left + plot_w + 12}" y1="{ly}" x2="{left + plot_w + 40}" y2="{ly}" stroke="{colour}" '
                    f'stroke-width="2.5"{dash_attr}/>' + marker(shape, left + plot_w + 26, ly, 4, colour))
        body.append(f'<text x="{left + plot_w + 46}" y="{ly + 4}" fill="#111">{escape(s.label)}</text>')
    headers = [x_label] + [s.label for s in series]
    lookup = [{x: y for x, y in s.points} for s in series]
    rows = [[x_fmt(x)] + [fmt(m[x]) if m.get(x) is not None else "—" for m in lookup] for x in all_x]
    return _figure(chart_id, title, desc, width, height, body, _table(title, headers, rows))


def bar_chart(categories: Sequence[str], series: Sequence[Series], *, chart_id: str, title: str, desc: str,
              x_label: str, y_label: str, fmt: Fmt = lambda v: f"{v:,.0f}", width: int = 640,
              height: int = 280) -> Markup:
    """Grouped bars (e.g. opens by hours since send, per variant). `series[i].points` are
    (category index, value). Series after the first are hatched so they differ without colour."""
    left, right, top, bottom = 62, 130, 16, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [y for s in series for _, y in s.points if y is not None]
    ticks = _nice_ticks(0, max(values) if values and max(values) > 0 else 1)
    y_hi = ticks[-1]
    n = max(1, len(categories))
    group_w = plot_w / n
    bar_w = group_w * 0.8 / max(1, len(series))

    def sy(y: float) -> float:
        return top + plot_h - y / y_hi * plot_h

    defs = []
    for i in range(1, len(series)):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        angle = (45, -45, 0, 90)[(i - 1) % 4]
        defs.append(f'<pattern id="{_id(chart_id, f"hatch{i}")}" width="6" height="6" patternUnits="userSpaceOnUse" '
                    f'patternTransform="rotate({angle})"><rect width="6" height="6" fill="{colour}"/>'
                    f'<line x1="0" y1="0" x2="0" y2="6" stroke="#fff" stroke-width="2"/></pattern>')
    body = [f"<defs>{''.join(defs)}</defs>" if defs else "",
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    for t in ticks:
        body.append(f'<line x1="{left}" y1="{_num(sy(t))}" x2="{left + plot_w}" y2="{_num(sy(t))}" stroke="#e3e6ec"/>')
        body.append(f'<text x="{left - 6}" y="{_num(sy(t) + 4)}" text-anchor="end" fill="#333">{escape(fmt(t))}</text>')
    label_every = max(1, n // 12)
    for c, name in enumerate(categories):
        if c % label_every == 0:
            body.append(f'<text x="{_num(left + group_w * (c + 0.5))}" y="{top + plot_h + 18}" text-anchor="middle" '
                        f'fill="#333">{escape(name)}</text>')
    for i, s in enumerate(series):
        fill = OKABE_ITO[i % len(OKABE_ITO)] if i == 0 else f"url(#{_id(chart_id, f'hatch{i}')})"
        for c, y in s.points:
            if y is None or y <= 0:
                continue
            x = left + group_w * c + group_w * 0.1 + bar_w * i
            body.append(f'<rect class="bar" x="{_num(x)}" y="{_num(sy(y))}" width="{_num(bar_w)}" '
                        f'height="{_num(top + plot_h - sy(y))}" fill="{fill}" stroke="#000" stroke-width="0.5">'
                        f"<title>{escape(s.label)}: {escape(categories[c])}: {escape(fmt(y))}</title></rect>")
        ly = top + 6 + i * 20
        body.append(f'<rect x="{left + plot_w + 12}" y="{ly}" width="14" height="14" fill="{fill}" stroke="#000" '
                    f'stroke-width="0.5"/><text x="{left + plot_w + 32}" y="{ly + 12}" fill="#111">'
                    f"{escape(s.label)}</text>")
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" fill="#333">{escape(x_label)}</text>')
    body.append(f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" fill="#333">'
                f"{escape(y_label)}</text>")
    lookup = [{c: y for c, y in s.points} for s in series]
    rows = [[name] + [fmt(m[c]) if m.get(c) is not None else "—" for m in lookup] for c, name in enumerate(categories)]
    return _figure(chart_id, title, desc, width, height, body, _table(title, [x_label] + [s.label for s in series], rows))


def heat_colour(t: float) -> str:
    """Colour of `t` in [0, 1] on the viridis-like ramp."""
    t = min(1.0, max(0.0, t))
    for (t0, c0), (t1, c1) in zip(HEAT_STOPS, HEAT_STOPS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0) if t1 > t0 else 0
            r, g, b = (round(a + (b_ - a) * f) for a, b_ in zip(c0, c1))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#440154"


def heatmap(row_labels: Sequence[str], col_labels: Sequence[str], values: Sequence[Sequence[float | None]], *,
            chart_id: str, title: str, desc: str, corner_label: str, fmt: Fmt = pct, missing: str = "—",
            cell: int = 24) -> Markup:
    """A grid (e.g. weekday x hour of predicted open rate). Darker = higher; every cell carries its
    value in a `<title>` tooltip and in the hidden table; empty cells (None) are hatched grey."""
    left, top = 90, 26
    width = left + cell * len(col_labels) + 20
    height = top + cell * len(row_labels) + 60
    finite = [v for row in values for v in row if v is not None and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = (hi - lo) or 1.0
    pid = _id(chart_id, "missing")
    body = [f'<defs><pattern id="{pid}" width="5" height="5" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="5" height="5" fill="#eee"/>'
            f'<line x1="0" y1="0" x2="0" y2="5" stroke="#bbb"/></pattern></defs>',
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    for c, name in enumerate(col_labels):
        if len(col_labels) <= 12 or c % 2 == 0:
            body.append(f'<text x="{left + cell * c + cell / 2}" y="{top - 8}" text-anchor="middle" fill="#333" '
                        f'font-size="10">{escape(name)}</text>')
    for r, rname in enumerate(row_labels):
        y = top + cell * r
        body.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end" fill="#111">{escape(rname)}</text>')
        for c, cname in enumerate(col_labels):
            v = values[r][c] if c < len(values[r]) else None
            ok = v is not None and math.isfinite(v)
            fill = heat_colour((v - lo) / span) if ok else f"url(#{pid})"
            body.append(f'<rect class="cell" x="{left + cell * c}" y="{y}" width="{cell}" height="{cell}" '
                        f'fill="{fill}" stroke="#fff"><title>{escape(rname)} {escape(cname)}: '
                        f"{escape(fmt(v) if ok else missing)}</title></rect>")
    best = None
    for r, row in enumerate(values):
        for c, v in enumerate(row):
            if v is not None and math.isfinite(v) and (best is None or v > best[0]):
                best = (v, r, c)
    if best:
        body.append(f'<rect class="best" x="{left + cell * best[2] + 1}" y="{top + cell * best[1] + 1}" '
                    f'width="{cell - 2}" height="{cell - 2}" fill="none" stroke="#000" stroke-width="2"/>')
    ly = top + cell * len(row_labels) + 18
    for k in range(11):
        body.append(f'<rect x="{left + k * 16}" y="{ly}" width="16" height="10" fill="{heat_colour(k / 10)}"/>')
    body.append(f'<text x="{left - 6}" y="{ly + 9}" text-anchor="end" fill="#333" font-size="10">{escape(fmt(lo))}</text>')
    body.append(f'<text x="{left + 11 * 16 + 6}" y="{ly + 9}" fill="#333" font-size="10">{escape(fmt(hi))}</text>')
    rows = [[rname] + [fmt(values[r][c]) if c < len(values[r]) and values[r][c] is not None else missing
                       for c in range(len(col_labels))] for r, rname in enumerate(row_labels)]
    return _figure(chart_id, title, desc, width, height, body, _table(title, [corner_label, *col_labels], rows))
