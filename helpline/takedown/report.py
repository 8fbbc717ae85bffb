"""The yearly trusted-flagger report (DSA art. 22(3)) and the figures' charts.

A trusted flagger publishes, at least once a year, the number of its notices by hosting
provider, by type of illegal content and by action taken. The report holds those counts and
nothing that could identify anyone: no URLs, no case ids or references, no staff or victims;
platforms are named (they are companies). It comes as JSON, as CSV and as a readable HTML page
whose charts are SVG drawn here, inline, with presentation attributes only (no script, no
style attribute), so the page renders under the app's `default-src 'self'` policy. The page
is in English or Dutch (`LANGUAGES`); the JSON and CSV keep their English keys and codes.

The report carries the flagger's statement of how it stays independent of the platforms
(`HELPLINE_TRUSTED_FLAGGER_STATEMENT`), which art. 22(3) asks the report to explain.

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
LANGUAGES = ("en", "nl")
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


ACTION_LABELS_NL = {
    "DECISION_VISIBILITY_CONTENT_REMOVED": "Verwijderd",
    "DECISION_VISIBILITY_CONTENT_DISABLED": "Toegang geblokkeerd",
    "DECISION_VISIBILITY_CONTENT_DEMOTED": "Minder zichtbaar gemaakt",
    "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED": "Leeftijdsgrens",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED": "Interactie beperkt",
    "DECISION_VISIBILITY_CONTENT_LABELLED": "Gelabeld",
    "DECISION_VISIBILITY_OTHER": "Andere beperking",
    "removed": "Verwijderd (zonder code)",
    "restricted": "Beperkt (zonder code)",
    "declined": "Geweigerd",
    "more_info_requested": "Meer informatie gevraagd",
    "no_response": "Geen reactie",
    "awaiting": "Wacht op besluit",
    "withdrawn": "Door ons ingetrokken",
}
DEFINITIONS_NL = {
    "period": "Meldingen verstuurd in het kalenderjaar, in de tijdzone van de hulplijn.",
    "notices": "Verwijderverzoeken (meldingen volgens art. 16 DSA) aan een hostingdienst; één "
    "melding kan meerdere URL's noemen.",
    "actions": "Wat de dienst met elke URL deed: de decision_visibility-code van de DSA "
    "Transparency Database als de inhoud is verwijderd of beperkt, anders geweigerd, geen "
    "reactie, wacht op besluit, meer informatie gevraagd of door ons ingetrokken.",
    "honour_rate": "Volledig gehonoreerde meldingen, gedeeld door de meldingen die gehonoreerd, "
    "deels gehonoreerd of geweigerd zijn of na hun termijn zonder besluit bleven.",
    "time_to_removal": "Van het versturen van de melding tot de verwijdering van een URL door de "
    "dienst; mediaan en het 90e percentiel (nearest rank).",
    "personal_data": "Dit verslag bevat alleen aantallen: geen URL's, dossiernummers of namen "
    "van slachtoffers of medewerkers.",
}
DEFINITION_TERMS_NL = {
    "period": "periode",
    "notices": "meldingen",
    "actions": "maatregelen",
    "honour_rate": "honoreringsgraad",
    "time_to_removal": "tijd tot verwijdering",
    "personal_data": "persoonsgegevens",
}
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Trusted flagger report",
        "intro": "{flagger}, notices under DSA art. 16 as a trusted flagger (art. 22(3)), "
        "sent from {first} to {last} ({timezone}). Generated {generated}.",
        "summary": "{notices} notices naming {urls} URLs to {providers} hosting providers; "
        "honour rate {rate}.",
        "download": "Download",
        "independence": "Independence",
        "no_statement": "No statement of independence has been configured "
        "(HELPLINE_TRUSTED_FLAGGER_STATEMENT).",
        "by_provider": "Notices by hosting provider",
        "by_content": "Notices by type of illegal content",
        "by_action": "Notices by action taken",
        "by_provider_short": "By hosting provider",
        "declined_heading": "Declined, with the provider's reasons",
        "definitions": "Definitions",
        "provider": "Hosting provider",
        "notices": "Notices",
        "urls": "URLs",
        "honour_rate": "Honour rate",
        "median": "Median time to removal",
        "action": "Action taken",
        "category": "Type of illegal content (DSA category)",
        "keyword": "Specification (DSA keyword)",
        "code": "Code",
        "reason": "Why the provider declined",
        "none": "None.",
        "empty_chart": "No notices in this period.",
        "chart_honour": "Honour rate per platform",
        "chart_removal": "Median time to removal per platform",
        "chart_categories": "Notices by type of illegal content",
        "chart_actions": "URLs by action taken",
        "of": "of",
        "unit_notices": "notices",
        "unit_urls": "URLs",
        "no_code": "No category code",
    },
    "nl": {
        "title": "Verslag trusted flagger",
        "intro": "{flagger}, meldingen volgens art. 16 DSA als betrouwbare flagger "
        "(art. 22, lid 3), verstuurd van {first} tot en met {last} ({timezone}). "
        "Gemaakt op {generated}.",
        "summary": "{notices} meldingen met {urls} URL's aan {providers} hostingdiensten; "
        "honoreringsgraad {rate}.",
        "download": "Downloaden",
        "independence": "Onafhankelijkheid",
        "no_statement": "Er is geen verklaring over de onafhankelijkheid ingesteld "
        "(HELPLINE_TRUSTED_FLAGGER_STATEMENT).",
        "by_provider": "Meldingen per hostingdienst",
        "by_content": "Meldingen per soort illegale inhoud",
        "by_action": "Meldingen per genomen maatregel",
        "by_provider_short": "Per hostingdienst",
        "declined_heading": "Geweigerd, met de redenen van de dienst",
        "definitions": "Begrippen",
        "provider": "Hostingdienst",
        "notices": "Meldingen",
        "urls": "URL's",
        "honour_rate": "Honoreringsgraad",
        "median": "Mediane tijd tot verwijdering",
        "action": "Genomen maatregel",
        "category": "Soort illegale inhoud (DSA-categorie)",
        "keyword": "Specificatie (DSA-trefwoord)",
        "code": "Code",
        "reason": "Waarom de dienst weigerde",
        "none": "Geen.",
        "empty_chart": "Geen meldingen in deze periode.",
        "chart_honour": "Honoreringsgraad per platform",
        "chart_removal": "Mediane tijd tot verwijdering per platform",
        "chart_categories": "Meldingen per soort illegale inhoud",
        "chart_actions": "URL's per genomen maatregel",
        "of": "van",
        "unit_notices": "meldingen",
        "unit_urls": "URL's",
        "no_code": "Geen categoriecode",
    },
}


def human(code: str | None, lang: str = "en") -> str:
    """A Transparency Database code as words: `KEYWORD_CYBER_HARASSMENT` → `Cyber harassment`.
    In Dutch the outcomes and actions are translated; other codes keep the register's words."""
    if code is None or code == NONE_CODE:
        return TEXT[lang]["no_code"]
    labels = ACTION_LABELS_NL if lang == "nl" else ACTION_LABELS
    if code in labels:
        return labels[code]
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
    statement: str = ""  # how the flagger stays independent (HELPLINE_TRUSTED_FLAGGER_STATEMENT)

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
            "independence_statement": self.statement.strip() or None,
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
    "text",
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
    rows.append({"section": "independence_statement", "text": data["independence_statement"]})
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


def bar_chart(
    name: str,
    title: str,
    bars: Sequence[Bar],
    *,
    maximum: float | None = None,
    empty: str = TEXT["en"]["empty_chart"],
) -> str:
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
        parts.append(f'<text x="0" y="{TOP + 17}">{escape(empty)}</text>')
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


def honour_rate_chart(figures: PeriodFigures, lang: str = "en") -> str:
    text = TEXT[lang]
    bars = [
        Bar(
            p.name,
            f.honour_rate,
            f"{_percent(f.honour_rate)} ({f.notices['honoured']} {text['of']} {f.concluded})",
        )
        for p, f in figures.platforms
        if f.sent
    ]
    return bar_chart(
        "honour-rate", text["chart_honour"], bars, maximum=1.0, empty=text["empty_chart"]
    )


def time_to_removal_chart(figures: PeriodFigures, lang: str = "en") -> str:
    text = TEXT[lang]
    bars = [
        Bar(p.name, f.median_seconds, _hours_text(f.median_seconds))
        for p, f in figures.platforms
        if f.sent
    ]
    return bar_chart("time-to-removal", text["chart_removal"], bars, empty=text["empty_chart"])


def _counts_chart(name: str, title: str, counts: dict[str, int], unit: str, lang: str) -> str:
    total = sum(counts.values())
    bars = [
        Bar(human(code, lang), count, f"{count} {unit} ({_percent(ratio(count, total))})")
        for code, count in sorted(counts.items(), key=_by_count)
    ]
    return bar_chart(name, title, bars, empty=TEXT[lang]["empty_chart"])


def categories_chart(figures: PeriodFigures, lang: str = "en") -> str:
    text = TEXT[lang]
    return _counts_chart(
        "categories",
        text["chart_categories"],
        figures.overall.content_categories,
        text["unit_notices"],
        lang,
    )


def actions_chart(figures: PeriodFigures, lang: str = "en") -> str:
    text = TEXT[lang]
    return _counts_chart(
        "actions", text["chart_actions"], figures.overall.actions, text["unit_urls"], lang
    )


CHARTS: dict[str, Callable[[PeriodFigures], str]] = {
    "honour-rate": honour_rate_chart,
    "time-to-removal": time_to_removal_chart,
    "categories": categories_chart,
    "actions": actions_chart,
}


# ---------------------------------------------------------------- the readable page


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">{escape(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _paragraphs(text: str) -> str:
    """Free text as paragraphs: a blank line starts a new one; always escaped."""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    return "".join(f"<p>{escape(' '.join(b.split()))}</p>" for b in blocks)


def report_html(report: Report, lang: str = "en") -> str:
    """The readable page, in English or Dutch (`LANGUAGES`)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}")
    t = TEXT[lang]
    data = report.as_json()
    figures = report.figures
    year = report.year
    totals = data["totals"]
    none = t["none"]
    providers = _table(
        [t["provider"], t["notices"], t["urls"], t["honour_rate"], t["median"]],
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
        none,
    )
    provider_actions = _table(
        [t["provider"], t["action"], t["urls"]],
        [
            [e["provider"], human(action, lang), count]
            for e in data["by_provider"]
            for action, count in e["actions"].items()
        ],
        none,
    )
    categories = _table(
        [t["category"], t["code"], t["notices"]],
        [
            [human(e["dsa_category"], lang), e["dsa_category"] or "", e["notices"]]
            for e in data["by_content_category"]
        ],
        none,
    )
    keywords = _table(
        [t["keyword"], t["code"], t["notices"]],
        [
            [human(e["dsa_keyword"], lang), e["dsa_keyword"], e["notices"]]
            for e in data["by_content_keyword"]
        ],
        none,
    )
    actions = _table(
        [t["action"], t["urls"]],
        [[human(e["action"], lang), e["urls"]] for e in data["by_action"]],
        none,
    )
    reasons = _table(
        [t["reason"], t["urls"]],
        [[human(e["reason"], lang), e["urls"]] for e in data["declined_reasons"]],
        none,
    )
    meanings = DEFINITIONS_NL if lang == "nl" else DEFINITIONS
    terms = DEFINITION_TERMS_NL if lang == "nl" else {k: k.replace("_", " ") for k in DEFINITIONS}
    definitions = "".join(
        f"<dt>{escape(terms[k])}</dt><dd>{escape(v)}</dd>" for k, v in meanings.items()
    )
    statement = report.statement.strip()
    independence = (
        _paragraphs(statement) if statement else f"<p><em>{escape(t['no_statement'])}</em></p>"
    )
    title = f"{t['title']} {year}"
    zone = ZoneInfo(report.period.timezone)
    first = report.period.start.astimezone(zone).date().isoformat()
    last = (report.period.end.astimezone(zone) - timedelta(days=1)).date().isoformat()
    intro = t["intro"].format(
        flagger=report.flagger,
        first=first,
        last=last,
        timezone=report.period.timezone,
        generated=report.generated_at.isoformat(timespec="seconds"),
    )
    summary = t["summary"].format(
        notices=totals["notices"],
        urls=totals["urls"],
        providers=totals["providers"],
        rate=_percent(totals["honour_rate"]),
    )
    return (
        "<!doctype html>\n"
        f'<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} — {escape(report.flagger)}</title>"
        '<link rel="stylesheet" href="/static/common/base.css">'
        "</head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f"<p>{escape(intro)}</p>"
        f"<p>{escape(summary)}</p>"
        f'<p>{escape(t["download"])}: <a href="{year}">JSON</a> · '
        f'<a href="{year}.csv">CSV</a></p>'
        f'<h2 id="independence">{escape(t["independence"])}</h2>'
        f"{independence}"
        f"<h2>{escape(t['by_provider'])}</h2>"
        f"{providers}"
        f"<figure>{honour_rate_chart(figures, lang)}</figure>"
        f"<figure>{time_to_removal_chart(figures, lang)}</figure>"
        f"<h2>{escape(t['by_content'])}</h2>"
        f"{categories}{keywords}"
        f"<figure>{categories_chart(figures, lang)}</figure>"
        f"<h2>{escape(t['by_action'])}</h2>"
        f"{actions}"
        f"<figure>{actions_chart(figures, lang)}</figure>"
        f"<h3>{escape(t['by_provider_short'])}</h3>"
        f"{provider_actions}"
        f"<h3>{escape(t['declined_heading'])}</h3>"
        f"{reasons}"
        f"<h2>{escape(t['definitions'])}</h2><dl>{definitions}</dl>"
        "</main></body></html>\n"
    )
