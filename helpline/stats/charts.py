"""Charts of the statistics page and the annual report, as inline SVG.

The horizontal bar chart is the takedown figures' (`helpline.takedown.report.bar_chart`, same
look, same rules: presentation attributes only, no script, no style attribute, so it renders
under `default-src 'self'`); this module adds a column chart of a series over weeks or months,
stacked by a dimension (contacts per week by channel), drawn the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from helpline.takedown.report import BAR_COLOUR, FONT, TRACK_COLOUR, WIDTH, Bar, bar_chart

__all__ = ["Bar", "bar_chart", "column_chart", "percent"]

# the stack's colours, darkest first (the first is the bar charts' colour)
STACK_COLOURS = (BAR_COLOUR, "#6b9fb3", "#c98a2b", "#8a5a9e", "#5b8c4a")
HEIGHT = 260
LEFT = 44
TOP = 44
PLOT_HEIGHT = 160
LEGEND_Y = TOP + PLOT_HEIGHT + 44


def percent(value: float | None) -> str:
    return f"{value * 100:.1f} %" if value is not None else "–"


def column_chart(
    name: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    empty: str,
) -> str:
    """Columns for `labels` (periods), each stacked from `series` ((name, one value per
    label)), with a legend. Empty (`empty` shown) when every value is zero."""
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    top = max(totals, default=0)
    title_id = f"chart-{name}-title"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-labelledby="{title_id}" '
        f'font-family="{FONT}" font-size="12" fill="currentColor">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<text x="0" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    if not labels or top == 0:
        parts.append(f'<text x="0" y="{TOP + 17}">{escape(empty)}</text></svg>')
        return "".join(parts)
    area = WIDTH - LEFT - 8
    slot = area / len(labels)
    width = max(2.0, slot * 0.7)
    base = TOP + PLOT_HEIGHT
    parts.append(
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - 8}" y2="{base}" stroke="{TRACK_COLOUR}"/>'
    )
    parts.append(f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{LEFT - 6}" y="{base}" text-anchor="end">0</text>')
    every = max(1, len(labels) // 12)  # at most about 12 labels under the axis
    for index, label in enumerate(labels):
        x = LEFT + index * slot + (slot - width) / 2
        y = float(base)
        tip = [f"{label}: {totals[index]}"]
        for position, (series_name, values) in enumerate(series):
            value = values[index]
            if value <= 0:
                continue
            tip.append(f"{series_name} {value}")
            height = value / top * PLOT_HEIGHT
            y -= height
            colour = STACK_COLOURS[position % len(STACK_COLOURS)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
                f'fill="{colour}"><title>{escape(series_name)}: {value}</title></rect>'
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x + width / 2:.1f}" y="{base + 16}" text-anchor="middle" '
                f'font-size="10"><title>{escape(", ".join(tip))}</title>{escape(label)}</text>'
            )
    x = float(LEFT)
    for position, (series_name, _) in enumerate(series):
        colour = STACK_COLOURS[position % len(STACK_COLOURS)]
        parts.append(
            f'<rect x="{x:.1f}" y="{LEGEND_Y - 10}" width="12" height="12" fill="{colour}"/>'
        )
        parts.append(f'<text x="{x + 16:.1f}" y="{LEGEND_Y}">{escape(series_name)}</text>')
        x += 16 + 8 * len(series_name) + 24
    parts.append("</svg>")
    return "".join(parts)
