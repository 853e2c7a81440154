"""Charts drawn on the server as inline SVG: no JavaScript library, no CDN, nothing the page's
Content-Security-Policy must allow. Each chart has a title and a description for screen
readers, each bar and point its number as a tooltip; the page's "Days as CSV" has them all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 24, 30
INNER_W, INNER_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM  # the plotting area


def _frame(title: str, description: str, body: list[str], y_labels: list[tuple[float, str]]) -> SafeString:
    key = slugify(title)  # ids unique on a page of charts with different titles
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-labelledby="{key}-title {key}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{key}-title">{escape(title)}</title>',
        f'<desc id="{key}-desc">{escape(description)}</desc>',
    ]
    for share, label in y_labels:
        y = TOP + INNER_H * (1 - share)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#444">{escape(label)}</text>'
        )
    parts += body
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text above is escaped


# at most this many dates under a chart: "Nov 08" is about 36 units wide at font size 12
X_LABELS = 6


def _x_labels(days: Sequence[date], xs: Sequence[float]) -> list[str]:
    step = max(1, -(-len(days) // X_LABELS))
    return [
        f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="12" fill="#444">'
        f"{day:%b %d}</text>"
        for i, (day, x) in enumerate(zip(days, xs))
        if i % step == 0
    ]


def bar_chart(days: Sequence[date], values: Sequence[int], *, title: str) -> SafeString:
    """One bar per day."""
    top = max(values, default=0) or 1
    slot = INNER_W / max(1, len(values))
    body, xs = [], []
    for i, value in enumerate(values):
        height = INNER_H * value / top
        x = LEFT + i * slot
        xs.append(x + slot / 2)
        body.append(
            f'<rect x="{x + slot * 0.15:.1f}" y="{TOP + INNER_H - height:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}" fill="#417690"><title>{days[i]:%Y-%m-%d}: {value}</title></rect>'
        )
    body += _x_labels(days, xs)
    description = (
        f"{len(values)} days, from {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}; most in a day: {top}."
        if values
        else "No searches in this period."
    )
    return _frame(title, description, body, [(0, "0"), (0.5, f"{top / 2:g}"), (1, str(top))])


def rate_chart(
    days: Sequence[date], series: dict[str, tuple[Sequence[float | None], str]], *, title: str
) -> SafeString:
    """Lines of shares (0 to 1) per day, each with its colour; a legend names them. A day whose
    share is None (no searches) is a gap in the line, not a 0%."""
    slot = INNER_W / max(1, len(days))
    xs = [LEFT + slot * (i + 0.5) for i in range(len(days))]
    body = []
    for n, (name, (values, colour)) in enumerate(series.items()):
        for run in _runs(list(zip(xs, values))):
            points = " ".join(f"{x:.1f},{TOP + INNER_H * (1 - v):.1f}" for x, v in run)
            body.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body += [
            f'<circle cx="{x:.1f}" cy="{TOP + INNER_H * (1 - v):.1f}" r="2.5" fill="{colour}">'
            f"<title>{escape(name)} {days[i]:%Y-%m-%d}: {v:.0%}</title></circle>"
            for i, (x, v) in enumerate(zip(xs, values))
            if v is not None
        ]
        body.append(
            f'<rect x="{LEFT + n * 190}" y="4" width="12" height="12" fill="{colour}"/>'
            f'<text x="{LEFT + 16 + n * 190}" y="14" font-size="13" fill="#222">{escape(name)}</text>'
        )
    body += _x_labels(days, xs)
    known = {name: [v for v in values if v is not None] for name, (values, _) in series.items()}
    description = (
        "; ".join(f"{name}: from {min(values):.0%} to {max(values):.0%}" for name, values in known.items() if values)
        or "No searches in this period."
    )
    return _frame(title, description, body, [(0, "0%"), (0.5, "50%"), (1, "100%")])


def _runs(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The stretches of days with a value, each drawn as its own line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, v in points:
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, v))
    return [run for run in runs if run]
