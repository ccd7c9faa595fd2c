"""Charts as inline SVG, drawn on the server: no script, no download, readable without JavaScript.

Each chart is an ``<svg class="chart ...">`` with a ``<title>`` and, for every mark, a ``<title>``
giving its exact value (a tooltip, and what a screen reader says). Every mark can link to the rows
behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

__all__ = ["bars", "histogram", "line"]

W, H, PAD = 640, 200, 34


def _svg(kind: str, title: str, body: str) -> Markup:
    # Every piece of text in ``body`` was escaped where it was put in.
    return Markup(  # noqa: S704
        f'<svg class="chart {kind}" role="img" viewBox="0 0 {W} {H}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>'
    )


def _axis(top: float, label: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 8}" y2="{H - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{H - PAD}" class="axis"/>'
        f'<text x="{PAD - 4}" y="14" text-anchor="end" class="tick">{escape(_fmt(top))}</text>'
        f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end" class="tick">0</text>'
        f'<text x="{W - 8}" y="{H - 6}" text-anchor="end" class="label">{escape(label)}</text>'
    )


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:,.1f}"


def line(
    title: str, points: Sequence[tuple[str, float]], unit: str, links: Sequence[str | None] | None = None
) -> Markup:
    """A time series: ``points`` are (label, value) in order; one dot per point."""
    if not points:
        return _svg("line empty", title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>')
    top = max(v for _, v in points) or 1.0
    n = len(points)
    step = (W - PAD - 16) / max(n - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return PAD + 4 + i * step, (H - PAD) - (v / top) * (H - PAD - 12)

    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in
                    enumerate(xy(i, v) for i, (_, v) in enumerate(points)))  # fmt: skip
    dots = []
    for i, (label, v) in enumerate(points):
        x, y = xy(i, v)
        dot = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" class="mark">'
            f"<title>{escape(label)}: {escape(_fmt(v))} {escape(unit)}</title></circle>"
        )
        href = links[i] if links else None
        dots.append(f'<a href="{escape(href)}">{dot}</a>' if href else dot)
    first, last = points[0][0], points[-1][0]
    ends = (
        f'<text x="{PAD + 4}" y="{H - PAD + 14}" class="tick">{escape(first)}</text>'
        f'<text x="{W - 12}" y="{H - PAD + 14}" text-anchor="end" class="tick">{escape(last)}</text>'
    )
    return _svg("line", title, _axis(top, unit) + f'<path d="{path}" class="series"/>' + "".join(dots) + ends)


def bars(
    title: str, items: Sequence[tuple[str, float]], unit: str, links: Sequence[str | None] | None = None
) -> Markup:
    """One bar per item (label, value)."""
    if not items:
        return _svg("bars empty", title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>')
    top = max(v for _, v in items) or 1.0
    n = len(items)
    width = (W - PAD - 16) / n
    out = []
    for i, (label, v) in enumerate(items):
        h = (v / top) * (H - PAD - 12)
        x = PAD + 4 + i * width
        bar = (
            f'<rect x="{x:.1f}" y="{H - PAD - h:.1f}" width="{max(width - 4, 1):.1f}" height="{h:.1f}"'
            ' class="mark">'
            f"<title>{escape(label)}: {escape(_fmt(v))} {escape(unit)}</title></rect>"
        )
        href = links[i] if links else None
        out.append(f'<a href="{escape(href)}">{bar}</a>' if href else bar)
        if n <= 16:
            out.append(
                f'<text x="{x + width / 2:.1f}" y="{H - PAD + 14}" text-anchor="middle" class="tick">'
                f"{escape(label[:14])}</text>"
            )
    return _svg("bars", title, _axis(top, unit) + "".join(out))


def histogram(title: str, values: Sequence[float], unit: str, buckets: int = 12) -> Markup:
    """How ``values`` are distributed: ``buckets`` equal ranges from 0 to the largest."""
    if not values:
        return bars(title, [], "students")
    top = max(values) or 1.0
    size = top / buckets
    counts = [0] * buckets
    for v in values:
        counts[min(int(v / size), buckets - 1)] += 1
    items = [(f"{i * size:,.0f}-{(i + 1) * size:,.0f} {unit}", float(c)) for i, c in enumerate(counts)]
    svg = bars(title, items, "students")
    return Markup(str(svg).replace('class="chart bars"', 'class="chart histogram"', 1))  # noqa: S704
