"""The yearly trusted-flagger report (DSA art. 22(3)) and the figures' charts.

A trusted flagger publishes, at least once a year, the number of its notices by hosting
provider, by type of illegal content and by action taken. The report holds those counts and
nothing that could identify anyone: no URLs, no case ids or references, no staff or victims;
platforms are named (they are companies). It comes as JSON, as CSV and as a readable HTML page
whose charts are SVG drawn here, inline, with presentation attributes only (no script, no
style attribute), so the page renders under the app's `default-src 'self'` policy.

Every chart is also served alone as `image/svg+xml` over any period (`CHARTS`), for the console.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from helpline.takedown.figures import (
    NONE_CODE,
    Figures,
    Period,
    PeriodFigures,
    ratio,
)

TITLE = "Trusted flagger report"
ACTION_LABELS = {
    "DECISION_VISIBILITY_CONTENT_REMOVED": "Removed",
    "DECISION_VISIBILITY_CONTENT_DISABLED": "Access disabled",
    "DECISION_VISIBILITY_CONTENT_DEMOTED": "Demoted",
    "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED": "Age restricted",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED": "Interaction restricted",
    "DECISION_VISIBILITY_CONTENT_LABELLED": "Labelled",
    "DECISION_VISIBILITY_OTHER": "Other restriction",
    "removed": "Removed (no code given)",
    "restricted": "Restricted (no code given)",
    "declined": "Declined",
    "more_info_requested": "More information requested",
    "no_response": "No response",
    "awaiting": "Awaiting decision",
    "withdrawn": "Withdrawn by us",
}
DEFINITIONS = {
    "period": "Notices sent in the calendar year, in the helpline's time zone.",
    "notices": "Removal requests (DSA art. 16 notices) sent to a hosting provider; one notice "
    "can name several URLs.",
    "actions": "What the provider did with each URL: the DSA Transparency Database "
    "decision_visibility code when it removed or restricted the content, otherwise declined, "
    "no response, awaiting a decision, more information requested, or withdrawn by us.",
    "honour_rate": "Notices honoured in full, divided by notices honoured, partly honoured, "
    "declined or left without a decision past their deadline.",
    "time_to_removal": "From sending the notice to the provider's removal of a URL; median, "
    "and the nearest-rank 90th percentile.",
    "personal_data": "This report holds counts only: no URLs, case references or names of "
    "victims or staff.",
}


def human(code: str | None) -> str:
    """A Transparency Database code as words: `KEYWORD_CYBER_HARASSMENT` → `Cyber harassment`."""
    if code is None or code == NONE_CODE:
        return "No category code"
    if code in ACTION_LABELS:
        return ACTION_LABELS[code]
    for prefix in ("STATEMENT_CATEGORY_", "KEYWORD_", "DECISION_GROUND_"):
        if code.startswith(prefix):
            code = code[len(prefix) :]
    words = code.replace("_", " ").strip().lower()
    return words[:1].upper() + words[1:]


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


# ---------------------------------------------------------------- the report as data


@dataclass
class Report:
    year: int
    flagger: str
    generated_at: datetime
    figures: PeriodFigures

    @property
    def period(self) -> Period:
        return self.figures.period

    @property
    def providers(self) -> list[tuple[str, str, Figures]]:
        """(name, slug, figures) of every provider we sent notices to this year."""
        return [(p.name, p.slug, f) for p, f in self.figures.platforms if f.sent]

    def as_json(self) -> dict[str, Any]:
        overall = self.figures.overall
        return {
            "report": "DSA art. 22(3) trusted flagger report",
            "flagger": self.flagger,
            "year": self.year,
            "period": self.period.as_json(),
            "generated_at": self.generated_at.isoformat(),
            "totals": {
                "notices": overall.sent,
                "urls": sum(overall.urls.values()),
                "providers": len(self.providers),
                "honour_rate": overall.honour_rate,
                "median_hours_to_removal": _hours(overall.median_seconds),
            },
            "by_provider": [
                {
                    "provider": name,
                    "slug": slug,
                    "notices": f.sent,
                    "urls": sum(f.urls.values()),
                    "outcomes": f.notices,
                    "actions": dict(sorted(f.actions.items(), key=_by_count)),
                    "declined_reasons": dict(sorted(f.declined_reasons.items(), key=_by_count)),
                    "honour_rate": f.honour_rate,
                    "median_hours_to_removal": _hours(f.median_seconds),
                    "p90_hours_to_removal": _hours(f.p90_seconds),
                }
                for name, slug, f in self.providers
            ],
            "by_content_category": [
                {"dsa_category": None if code == NONE_CODE else code, "notices": count}
                for code, count in sorted(overall.content_categories.items(), key=_by_count)
            ],
            "by_content_keyword": [
                {"dsa_keyword": code, "notices": count}
                for code, count in sorted(overall.content_keywords.items(), key=_by_count)
            ],
            "by_action": [
                {"action": action, "urls": count}
                for action, count in sorted(overall.actions.items(), key=_by_count)
            ],
            "declined_reasons": [
                {"reason": reason, "urls": count}
                for reason, count in sorted(overall.declined_reasons.items(), key=_by_count)
            ],
            "by_outcome": overall.notices,
            "definitions": DEFINITIONS,
        }


def _hours(seconds: float | None) -> float | None:
    return round(seconds / 3600, 2) if seconds is not None else None


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = (
    "section",
    "provider",
    "dsa_category",
    "dsa_keyword",
    "action",
    "reason",
    "notices",
    "urls",
    "honour_rate",
    "median_hours_to_removal",
)


def _cell(value: object) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is quoted with a `'`."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def report_csv(report: Report) -> str:
    """One table, one row per count: `section` says which breakdown a row belongs to."""
    data = report.as_json()
    rows: list[dict[str, object]] = []
    totals = data["totals"]
    rows.append(
        {
            "section": "total",
            "notices": totals["notices"],
            "urls": totals["urls"],
            "honour_rate": totals["honour_rate"],
            "median_hours_to_removal": totals["median_hours_to_removal"],
        }
    )
    for entry in data["by_provider"]:
        rows.append(
            {
                "section": "provider",
                "provider": entry["provider"],
                "notices": entry["notices"],
                "urls": entry["urls"],
                "honour_rate": entry["honour_rate"],
                "median_hours_to_removal": entry["median_hours_to_removal"],
            }
        )
        for action, count in entry["actions"].items():
            rows.append(
                {
                    "section": "provider_action",
                    "provider": entry["provider"],
                    "action": action,
                    "urls": count,
                }
            )
    for entry in data["by_content_category"]:
        rows.append(
            {
                "section": "content_category",
                "dsa_category": entry["dsa_category"],
                "notices": entry["notices"],
            }
        )
    for entry in data["by_content_keyword"]:
        rows.append(
            {
                "section": "content_keyword",
                "dsa_keyword": entry["dsa_keyword"],
                "notices": entry["notices"],
            }
        )
    for entry in data["by_action"]:
        rows.append({"section": "action", "action": entry["action"], "urls": entry["urls"]})
    for entry in data["declined_reasons"]:
        rows.append(
            {"section": "declined_reason", "reason": entry["reason"], "urls": entry["urls"]}
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    return out.getvalue()


# ---------------------------------------------------------------- SVG charts

WIDTH = 760
LABEL_WIDTH = 250
VALUE_WIDTH = 150
BAR_AREA = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 20
ROW = 26
TOP = 44
BAR_COLOUR = "#24596e"
TRACK_COLOUR = "#c9d0d5"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
MAX_LABEL = 30  # at 13px, about 7px a character: fits LABEL_WIDTH


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: nothing to draw (no data for this row)
    text: str  # the value as shown beside the bar


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def bar_chart(name: str, title: str, bars: Sequence[Bar], *, maximum: float | None = None) -> str:
    """A horizontal bar chart as a standalone SVG document (also valid inline in HTML).
    Text uses `currentColor`, so inline it takes the page's text colour."""
    scale = maximum or max((b.value or 0.0 for b in bars), default=0.0) or 1.0
    height = TOP + max(len(bars), 1) * ROW + 12
    title_id = f"chart-{name}-title"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-labelledby="{title_id}" '
        f'font-family="{FONT}" font-size="13" fill="currentColor">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<text x="0" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    if not bars:
        parts.append(f'<text x="0" y="{TOP + 17}">No notices in this period.</text>')
    for index, bar in enumerate(bars):
        y = TOP + index * ROW
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 17}" text-anchor="end">'
            f"<title>{escape(bar.label)}</title>{escape(_short(bar.label))}</text>"
        )
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{y + 5}" width="{BAR_AREA}" height="16" '
            f'fill="{TRACK_COLOUR}" fill-opacity="0.35"/>'
        )
        if bar.value is not None and bar.value > 0:
            width = max(1.0, min(1.0, bar.value / scale) * BAR_AREA)
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y + 5}" width="{width:.1f}" height="16" '
                f'fill="{BAR_COLOUR}"/>'
            )
        parts.append(
            f'<text x="{LABEL_WIDTH + BAR_AREA + 8}" y="{y + 17}">{escape(bar.text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _percent(value: float | None) -> str:
    return f"{value * 100:.1f} %" if value is not None else "–"


def _hours_text(seconds: float | None) -> str:
    return f"{seconds / 3600:.1f} h" if seconds is not None else "–"


def honour_rate_chart(figures: PeriodFigures) -> str:
    bars = [
        Bar(
            p.name,
            f.honour_rate,
            f"{_percent(f.honour_rate)} ({f.notices['honoured']} of {f.concluded})",
        )
        for p, f in figures.platforms
        if f.sent
    ]
    return bar_chart("honour-rate", "Honour rate per platform", bars, maximum=1.0)


def time_to_removal_chart(figures: PeriodFigures) -> str:
    bars = [
        Bar(p.name, f.median_seconds, _hours_text(f.median_seconds))
        for p, f in figures.platforms
        if f.sent
    ]
    return bar_chart("time-to-removal", "Median time to removal per platform", bars)


def _counts_chart(name: str, title: str, counts: dict[str, int], unit: str) -> str:
    total = sum(counts.values())
    bars = [
        Bar(human(code), count, f"{count} {unit} ({_percent(ratio(count, total))})")
        for code, count in sorted(counts.items(), key=_by_count)
    ]
    return bar_chart(name, title, bars)


def categories_chart(figures: PeriodFigures) -> str:
    return _counts_chart(
        "categories",
        "Notices by type of illegal content",
        figures.overall.content_categories,
        "notices",
    )


def actions_chart(figures: PeriodFigures) -> str:
    return _counts_chart("actions", "URLs by action taken", figures.overall.actions, "URLs")


CHARTS: dict[str, Callable[[PeriodFigures], str]] = {
    "honour-rate": honour_rate_chart,
    "time-to-removal": time_to_removal_chart,
    "categories": categories_chart,
    "actions": actions_chart,
}


# ---------------------------------------------------------------- the readable page


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">None.</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(report: Report) -> str:
    data = report.as_json()
    figures = report.figures
    year = report.year
    totals = data["totals"]
    providers = _table(
        ["Hosting provider", "Notices", "URLs", "Honour rate", "Median time to removal"],
        [
            [
                e["provider"],
                e["notices"],
                e["urls"],
                _percent(e["honour_rate"]),
                f"{e['median_hours_to_removal']} h"
                if e["median_hours_to_removal"] is not None
                else "–",
            ]
            for e in data["by_provider"]
        ],
    )
    provider_actions = _table(
        ["Hosting provider", "Action taken", "URLs"],
        [
            [e["provider"], human(action), count]
            for e in data["by_provider"]
            for action, count in e["actions"].items()
        ],
    )
    categories = _table(
        ["Type of illegal content (DSA category)", "Code", "Notices"],
        [
            [human(e["dsa_category"]), e["dsa_category"] or "", e["notices"]]
            for e in data["by_content_category"]
        ],
    )
    keywords = _table(
        ["Specification (DSA keyword)", "Code", "Notices"],
        [
            [human(e["dsa_keyword"]), e["dsa_keyword"], e["notices"]]
            for e in data["by_content_keyword"]
        ],
    )
    actions = _table(
        ["Action taken", "URLs"], [[human(e["action"]), e["urls"]] for e in data["by_action"]]
    )
    reasons = _table(
        ["Why the provider declined", "URLs"],
        [[human(e["reason"]), e["urls"]] for e in data["declined_reasons"]],
    )
    definitions = "".join(
        f"<dt>{escape(k.replace('_', ' '))}</dt><dd>{escape(v)}</dd>"
        for k, v in DEFINITIONS.items()
    )
    title = f"{TITLE} {year}"
    zone = ZoneInfo(report.period.timezone)
    first = report.period.start.astimezone(zone).date().isoformat()
    last = (report.period.end.astimezone(zone) - timedelta(days=1)).date().isoformat()
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} — {escape(report.flagger)}</title>"
        '<link rel="stylesheet" href="/static/common/base.css">'
        "</head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f"<p>{escape(report.flagger)}, notices under DSA art. 16 as a trusted flagger "
        f"(art. 22(3)), sent from {first} to {last} ({escape(report.period.timezone)}). "
        f"Generated {escape(report.generated_at.isoformat(timespec='seconds'))}.</p>"
        f"<p>{totals['notices']} notices naming {totals['urls']} URLs to "
        f"{totals['providers']} hosting providers; honour rate "
        f"{escape(_percent(totals['honour_rate']))}.</p>"
        f'<p>Download: <a href="{year}">JSON</a> · <a href="{year}.csv">CSV</a></p>'
        "<h2>Notices by hosting provider</h2>"
        f"{providers}"
        f"<figure>{honour_rate_chart(figures)}</figure>"
        f"<figure>{time_to_removal_chart(figures)}</figure>"
        "<h2>Notices by type of illegal content</h2>"
        f"{categories}{keywords}"
        f"<figure>{categories_chart(figures)}</figure>"
        "<h2>Notices by action taken</h2>"
        f"{actions}"
        f"<figure>{actions_chart(figures)}</figure>"
        "<h3>By hosting provider</h3>"
        f"{provider_actions}"
        "<h3>Declined, with the provider's reasons</h3>"
        f"{reasons}"
        f"<h2>Definitions</h2><dl>{definitions}</dl>"
        "</main></body></html>\n"
    )
