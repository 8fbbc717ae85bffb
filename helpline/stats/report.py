"""The statistics page (staff) and the public annual report, as HTML with inline SVG charts,
and the report as JSON.

The staff page shows the counters as they are. The public report shows them with **small
numbers suppressed**: a count of 1 to 4 is published as "<5" (and, when a breakdown has just
one such cell, the next smallest cell too, so that the total does not give it away), and a
share is published only when the counts on both sides of it are 0 or at least 5. A rare
category in a small period could otherwise point at a person. The trusted-flagger figures in
the report (DSA art. 22(3), helpline.takedown.report) are suppressed the same way; the exact
figures stay available to supervisors (`/api/staff/takedown/report/{year}`).

Pages are English or Dutch; codes are labelled with the console's own words
(frontend/console/i18n), so the two never disagree. Charts are inline SVG without scripts;
the stylesheet (`STYLESHEET`, with print rules) is served by the app, so the page renders
under `default-src 'self'`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from xml.sax.saxutils import escape

from helpline.pages import frontend_root
from helpline.stats.charts import Bar, bar_chart, column_chart, percent
from helpline.takedown.report import Report as FlaggerReport
from helpline.takedown.report import human

LANGUAGES = ("en", "nl")
THRESHOLD = 5
SUPPRESSED = "<5"
Count = int | str  # a count, or SUPPRESSED

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "stats_title": "Statistics",
        "report_title": "Annual report {year}",
        "period": "From {first} to {last} ({timezone}), by {group}.",
        "week": "week",
        "month": "month",
        "download": "Download",
        "report_link": "Annual report",
        "contacts": "Contacts",
        "contacts_chart": "Contacts per {group} by channel",
        "channels": "Contacts by channel",
        "categories": "Closed cases by category",
        "outcomes": "Closed cases by outcome",
        "helped": "Helped without referral",
        "helped_text": "{cases} of {closed} closed cases were helped without a referral ({share}).",
        "eligible": "Reports that led to a removal request",
        "eligible_text": "{cases} of {closed} closed cases led to a removal request sent to a "
        "platform ({share}).",
        "first_response": "Time to first response (minutes)",
        "risk": "Risk flags of closed cases",
        "takedown": "Removal requests",
        "honour_chart": "Honour rate per platform",
        "removal_chart": "Removed within 24 hours, per platform",
        "platform": "Platform",
        "sent": "Sent",
        "honour_rate": "Honour rate",
        "removal": "Time to removal (hours)",
        "handovers": "Referrals to partner organisations",
        "handover_chart": "Handovers delivered per kind of partner",
        "partner_kind": "Kind of partner",
        "status": "Status",
        "count": "Number",
        "flagger": "Trusted flagger figures (DSA art. 22(3))",
        "flagger_summary": "{notices} notices naming {urls} URLs to {providers} hosting "
        "providers; honour rate {rate}.",
        "provider": "Hosting provider",
        "notices": "Notices",
        "urls": "URLs",
        "action": "Action taken",
        "content": "Type of illegal content",
        "independence": "Independence",
        "suppression": "Small numbers are not published: a count of 1 to 4 is shown as "
        "“<5”, and sometimes one more cell is hidden so that totals do not reveal it; a "
        "percentage is shown only when it rests on enough cases. A rare category in a short "
        "period could otherwise point at a person.",
        "anonymous": "These figures are counters written at the moment of each event (a "
        "contact, a closure, a notice, a handover). They hold no case numbers, names or "
        "texts and cannot be traced back to a case.",
        "empty": "Nothing counted in this period.",
        "none": "None.",
        "total": "Total",
        "generated": "Generated {generated}.",
    },
    "nl": {
        "stats_title": "Statistieken",
        "report_title": "Jaarverslag {year}",
        "period": "Van {first} tot en met {last} ({timezone}), per {group}.",
        "week": "week",
        "month": "maand",
        "download": "Downloaden",
        "report_link": "Jaarverslag",
        "contacts": "Contacten",
        "contacts_chart": "Contacten per {group} per kanaal",
        "channels": "Contacten per kanaal",
        "categories": "Afgesloten zaken per categorie",
        "outcomes": "Afgesloten zaken per uitkomst",
        "helped": "Geholpen zonder doorverwijzing",
        "helped_text": "{cases} van {closed} afgesloten zaken zijn geholpen zonder "
        "doorverwijzing ({share}).",
        "eligible": "Meldingen die tot een verwijderverzoek leidden",
        "eligible_text": "{cases} van {closed} afgesloten zaken leidden tot een "
        "verwijderverzoek aan een platform ({share}).",
        "first_response": "Tijd tot eerste reactie (minuten)",
        "risk": "Risico's bij afgesloten zaken",
        "takedown": "Verwijderverzoeken",
        "honour_chart": "Honoreringsgraad per platform",
        "removal_chart": "Binnen 24 uur verwijderd, per platform",
        "platform": "Platform",
        "sent": "Verstuurd",
        "honour_rate": "Honoreringsgraad",
        "removal": "Tijd tot verwijdering (uren)",
        "handovers": "Doorverwijzingen naar partnerorganisaties",
        "handover_chart": "Overdrachten afgeleverd per soort partner",
        "partner_kind": "Soort partner",
        "status": "Status",
        "count": "Aantal",
        "flagger": "Cijfers als trusted flagger (art. 22, lid 3 DSA)",
        "flagger_summary": "{notices} meldingen met {urls} URL's aan {providers} "
        "hostingdiensten; honoreringsgraad {rate}.",
        "provider": "Hostingdienst",
        "notices": "Meldingen",
        "urls": "URL's",
        "action": "Genomen maatregel",
        "content": "Soort illegale inhoud",
        "independence": "Onafhankelijkheid",
        "suppression": "Kleine aantallen worden niet gepubliceerd: een aantal van 1 tot en met "
        "4 staat er als „<5”, en soms is nog een vakje verborgen zodat het totaal het niet "
        "verraadt; een percentage staat er alleen als het op genoeg zaken berust. Een "
        "zeldzame categorie in een korte periode zou anders naar een persoon kunnen wijzen.",
        "anonymous": "Deze cijfers zijn tellers die op het moment van elke gebeurtenis zijn "
        "bijgewerkt (een contact, een afsluiting, een melding, een overdracht). Ze bevatten "
        "geen dossiernummers, namen of teksten en zijn niet naar een zaak te herleiden.",
        "empty": "Niets geteld in deze periode.",
        "none": "Geen.",
        "total": "Totaal",
        "generated": "Gemaakt op {generated}.",
    },
}

# words for the codes the console has no label for
EXTRA_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "outcome.ended_by_victim": "Ended by the victim",
        "outcome.deleted_by_victim": "Deleted by the victim",
        "outcome.purged_open": "Removed while open (retention)",
        "partner.sexual_violence_care": "Sexual violence care",
        "partner.victim_support": "Victim support",
        "partner.police": "Police",
        "partner.gp": "General practitioner",
        "partner.other": "Other",
        "notice.honoured": "Honoured",
        "notice.partly_honoured": "Partly honoured",
        "notice.declined": "Declined",
        "notice.no_response": "No response",
    },
    "nl": {
        "outcome.ended_by_victim": "Beëindigd door het slachtoffer",
        "outcome.deleted_by_victim": "Verwijderd door het slachtoffer",
        "outcome.purged_open": "Verwijderd terwijl open (bewaartermijn)",
        "partner.sexual_violence_care": "Zorg na seksueel geweld",
        "partner.victim_support": "Slachtofferhulp",
        "partner.police": "Politie",
        "partner.gp": "Huisarts",
        "partner.other": "Anders",
        "notice.honoured": "Gehonoreerd",
        "notice.partly_honoured": "Deels gehonoreerd",
        "notice.declined": "Geweigerd",
        "notice.no_response": "Geen reactie",
    },
}

STYLESHEET = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: #1d2a30; margin: 0; line-height: 1.45; }
main { max-width: 800px; margin: 0 auto; padding: 1.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #c9d0d5; padding: 0.25rem 0.75rem 0.25rem 0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; }
.note { font-size: 0.9rem; color: #44545c; }
nav a { margin-right: 1rem; }
@media print {
  @page { size: A4; margin: 15mm; }
  body { color: #000; font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav, .no-print { display: none; }
  h2 { break-after: avoid; }
  figure, table { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


@cache
def _console_labels(lang: str) -> dict[str, str]:
    path = frontend_root() / "console" / "i18n" / f"{lang}.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in loaded.items() if isinstance(v, str)}


def label(kind: str, code: str, lang: str) -> str:
    """The words for a code: `label("category", "doxxing", "nl")`."""
    key = f"{kind}.{code}"
    found = _console_labels(lang).get(key) or EXTRA_LABELS[lang].get(key)
    return found or code.replace("_", " ").capitalize()


# ---------------------------------------------------------------- small numbers


def suppress(count: int) -> Count:
    return SUPPRESSED if 0 < count < THRESHOLD else count


def suppress_breakdown(counts: Mapping[str, int]) -> dict[str, Count]:
    """Each count suppressed; if exactly one cell was, the next smallest non-zero one too
    (the total, published elsewhere, would otherwise give the hidden one away)."""
    result: dict[str, Count] = {key: suppress(value) for key, value in counts.items()}
    hidden = [key for key, value in result.items() if value == SUPPRESSED]
    if len(hidden) == 1:
        shown = sorted((v, k) for k, v in counts.items() if v >= THRESHOLD)
        if shown:
            result[shown[0][1]] = SUPPRESSED
    return result


def suppressed_share(part: int, whole: int) -> float | None:
    """A share, unless the counts on either side of it are small."""
    rest = whole - part
    if whole == 0 or 0 < part < THRESHOLD or 0 < rest < THRESHOLD:
        return None
    return round(part / whole, 4)


def public_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures of `queries.figures` with small numbers suppressed, for publication."""
    contacts, cases = figures["contacts"], figures["cases"]
    notices, handovers = figures["notices"], figures["handovers"]
    closed = cases["closed"]
    helped = cases["helped_without_referral"]["cases"]
    eligible = cases["takedown_eligible"]["cases"]
    return {
        "from": figures["from"],
        "to": figures["to"],
        "group": figures["group"],
        "contacts": {
            "total": suppress(contacts["total"]),
            "by_channel": suppress_breakdown(contacts["by_channel"]),
            "by_period": [
                {k: (v if k == "period" else suppress(v)) for k, v in entry.items()}
                for entry in contacts["by_period"]
            ],
        },
        "cases": {
            "closed": suppress(closed),
            "by_category": suppress_breakdown(cases["by_category"]),
            "by_outcome": suppress_breakdown(cases["by_outcome"]),
            "first_response_minutes": suppress_breakdown(cases["first_response_minutes"]),
            "helped_without_referral": {
                "cases": suppress(helped),
                "share": suppressed_share(helped, closed),
            },
            "takedown_eligible": {
                "cases": suppress(eligible),
                "share": suppressed_share(eligible, closed),
            },
        },
        "notices": {
            "sent": suppress(notices["sent"]),
            "outcomes": suppress_breakdown(notices["outcomes"]),
            "honour_rate": suppressed_share(
                notices["outcomes"]["honoured"],
                sum(v for k, v in notices["outcomes"].items()),
            ),
            "removal_hours": suppress_breakdown(notices["removal_hours"]),
            "by_platform": [
                {
                    "name": entry["name"],
                    "sent": suppress(entry["sent"]),
                    "outcomes": suppress_breakdown(entry["outcomes"]),
                    "honour_rate": suppressed_share(
                        entry["outcomes"]["honoured"], entry["concluded"]
                    ),
                    "removal_hours": suppress_breakdown(entry["removal_hours"]),
                    "removed_within_24h": suppressed_share(
                        sum(entry["removal_hours"][b] for b in ("0-1", "1-6", "6-24")),
                        entry["removed"],
                    ),
                }
                for entry in notices["by_platform"]
            ],
        },
        "handovers": {
            "delivered_by_partner_kind": suppress_breakdown(handovers["delivered_by_partner_kind"]),
        },
    }


def public_flagger(report: FlaggerReport) -> dict[str, Any]:
    """The trusted-flagger report's counts, small numbers suppressed."""
    data = report.as_json()
    totals = data["totals"]
    overall = report.figures.overall
    return {
        "flagger": data["flagger"],
        "period": data["period"],
        "independence_statement": data["independence_statement"],
        "totals": {
            "notices": suppress(totals["notices"]),
            "urls": suppress(totals["urls"]),
            "providers": totals["providers"],
            "honour_rate": suppressed_share(overall.notices["honoured"], overall.concluded),
        },
        "by_provider": [
            {
                "provider": entry["provider"],
                "notices": suppress(entry["notices"]),
                "urls": suppress(entry["urls"]),
                "outcomes": suppress_breakdown(entry["outcomes"]),
                "actions": suppress_breakdown(entry["actions"]),
                "honour_rate": suppressed_share(figures.notices["honoured"], figures.concluded),
            }
            for entry, (_, _, figures) in zip(data["by_provider"], report.providers, strict=True)
        ],
        "by_content_category": suppress_breakdown(
            {e["dsa_category"] or "none": e["notices"] for e in data["by_content_category"]}
        ),
        "by_action": suppress_breakdown({e["action"]: e["urls"] for e in data["by_action"]}),
    }


# ---------------------------------------------------------------- HTML pieces


def _cell(value: object) -> str:
    numeric = isinstance(value, int) or value == SUPPRESSED
    css = ' class="n"' if numeric else ""
    return f"<td{css}>{escape(str(value))}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">{escape(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: Count) -> float | None:
    """The length of a bar: a suppressed count is drawn as nothing (its text says <5)."""
    return float(value) if isinstance(value, int) else None


def _counts_chart(name: str, title: str, counts: Mapping[str, Count], kind: str, lang: str) -> str:
    bars = [
        Bar(label(kind, code, lang), _number(count), str(count))
        for code, count in counts.items()
        if count != 0
    ]
    return bar_chart(name, title, bars, empty=TEXT[lang]["empty"])


def _rates_chart(
    name: str, title: str, rates: Sequence[tuple[str, float | None]], lang: str
) -> str:
    bars = [Bar(who, rate, percent(rate)) for who, rate in rates]
    return bar_chart(name, title, bars, maximum=1.0, empty=TEXT[lang]["empty"])


@dataclass
class Page:
    title: str
    lang: str
    body: str

    def html(self) -> str:
        return (
            "<!doctype html>\n"
            f'<html lang="{self.lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(self.title)}</title>"
            '<link rel="stylesheet" href="/report/report.css">'
            f"</head><body><main>{self.body}</main></body></html>\n"
        )


def _sections(figures: dict[str, Any], lang: str, *, public: bool) -> str:
    """The helpline's own numbers: the same sections on the staff page and in the report
    (`figures` as from `queries.figures`, or `public_figures` of it)."""
    t = TEXT[lang]
    contacts, cases = figures["contacts"], figures["cases"]
    notices, handovers = figures["notices"], figures["handovers"]
    group = t[figures["group"]]
    channels = sorted({k for e in contacts["by_period"] for k in e if k not in ("period", "total")})
    series = [
        (
            label("channel", channel, lang),
            [v if isinstance(v := e.get(channel, 0), int) else 0 for e in contacts["by_period"]],
        )
        for channel in channels
    ]
    labels = [e["period"] for e in contacts["by_period"]]
    parts = [
        f"<h2>{escape(t['contacts'])}</h2>",
        "<figure>"
        + column_chart(
            "contacts", t["contacts_chart"].format(group=group), labels, series, empty=t["empty"]
        )
        + "</figure>",
        table(
            [t["channels"], t["count"]],
            [[label("channel", c, lang), n] for c, n in contacts["by_channel"].items()]
            + [[t["total"], contacts["total"]]],
            t["none"],
        ),
        f"<h2>{escape(t['categories'])}</h2>",
        "<figure>"
        + _counts_chart("categories", t["categories"], cases["by_category"], "category", lang)
        + "</figure>",
        f"<h2>{escape(t['outcomes'])}</h2>",
        table(
            [t["outcomes"], t["count"]],
            [[label("outcome", c, lang), n] for c, n in cases["by_outcome"].items()],
            t["none"],
        ),
        f"<h3>{escape(t['helped'])}</h3>",
        "<p>"
        + escape(
            t["helped_text"].format(
                cases=cases["helped_without_referral"]["cases"],
                closed=cases["closed"],
                share=percent(cases["helped_without_referral"]["share"]),
            )
        )
        + "</p>",
        f"<h3>{escape(t['eligible'])}</h3>",
        "<p>"
        + escape(
            t["eligible_text"].format(
                cases=cases["takedown_eligible"]["cases"],
                closed=cases["closed"],
                share=percent(cases["takedown_eligible"]["share"]),
            )
        )
        + "</p>",
        f"<h3>{escape(t['first_response'])}</h3>",
        table(
            [t["first_response"], t["count"]],
            [[c, n] for c, n in cases["first_response_minutes"].items()],
            t["none"],
        ),
    ]
    if not public:
        parts += [
            f"<h3>{escape(t['risk'])}</h3>",
            table(
                [t["risk"], t["count"]],
                [[label("flag", c, lang), n] for c, n in cases["risk_flags"].items()],
                t["none"],
            ),
        ]
    platforms = notices["by_platform"]
    parts += [
        f"<h2>{escape(t['takedown'])}</h2>",
        "<figure>"
        + _rates_chart(
            "honour-rate",
            t["honour_chart"],
            [(p["name"], p["honour_rate"]) for p in platforms],
            lang,
        )
        + "</figure>",
        "<figure>"
        + _rates_chart(
            "removed-24h",
            t["removal_chart"],
            [(p["name"], p["removed_within_24h"]) for p in platforms],
            lang,
        )
        + "</figure>",
        table(
            [
                t["platform"],
                t["sent"],
                t["honour_rate"],
                *(f"{b} h" for b in notices["removal_hours"]),
            ],
            [
                [p["name"], p["sent"], percent(p["honour_rate"]), *p["removal_hours"].values()]
                for p in platforms
            ],
            t["none"],
        ),
        f"<h2>{escape(t['handovers'])}</h2>",
        "<figure>"
        + _counts_chart(
            "handovers",
            t["handover_chart"],
            handovers["delivered_by_partner_kind"],
            "partner",
            lang,
        )
        + "</figure>",
    ]
    if not public:
        parts.append(
            table(
                [t["partner_kind"], t["status"], t["count"]],
                [
                    [label("partner", kind, lang), status, n]
                    for kind, statuses in handovers["by_partner_kind"].items()
                    for status, n in statuses.items()
                ],
                t["none"],
            )
        )
    return "".join(parts)


def statistics_page(figures: dict[str, Any], lang: str, *, timezone: str, year: int) -> str:
    """The console's statistics page (supervisors): the counters as they are."""
    t = TEXT[lang]
    query = f"from={figures['from']}&amp;to={figures['to']}&amp;group={figures['group']}"
    body = (
        f"<h1>{escape(t['stats_title'])}</h1>"
        "<p>"
        + escape(
            t["period"].format(
                first=figures["from"],
                last=figures["to"],
                timezone=timezone,
                group=t[figures["group"]],
            )
        )
        + "</p>"
        f'<nav><a href="/api/staff/stats.csv?{query}">CSV</a>'
        f'<a href="/api/staff/stats.json?{query}">JSON</a>'
        f'<a href="/staff/report/{year}?lang={lang}">{escape(t["report_link"])} {year}</a></nav>'
        f'<p class="note">{escape(t["anonymous"])}</p>' + _sections(figures, lang, public=False)
    )
    return Page(t["stats_title"], lang, body).html()


@dataclass
class AnnualReport:
    year: int
    helpline: str
    generated_at: datetime
    timezone: str
    figures: dict[str, Any]  # queries.figures of the year
    flagger: FlaggerReport

    def as_json(self) -> dict[str, Any]:
        """What is published: small numbers suppressed."""
        return {
            "report": "annual report",
            "helpline": self.helpline,
            "year": self.year,
            "timezone": self.timezone,
            "generated_at": self.generated_at.isoformat(),
            "small_numbers": f"counts from 1 to {THRESHOLD - 1} are published as {SUPPRESSED!r}",
            "helpline_figures": public_figures(self.figures),
            "trusted_flagger": public_flagger(self.flagger),
        }

    def html(self, lang: str) -> str:
        t = TEXT[lang]
        data = self.as_json()
        flagger = data["trusted_flagger"]
        title = t["report_title"].format(year=self.year)
        totals = flagger["totals"]
        statement = self.flagger.statement.strip()
        period = t["period"].format(
            first=f"{self.year}-01-01",
            last=f"{self.year}-12-31",
            timezone=self.timezone,
            group=t["month"],
        )
        generated = t["generated"].format(generated=self.generated_at.isoformat(timespec="seconds"))
        body = (
            f"<h1>{escape(self.helpline)} — {escape(title)}</h1>"
            f"<p>{escape(period)}</p>"
            f'<p class="no-print">{escape(t["download"])}: '
            f'<a href="{self.year}.json">JSON</a></p>'
            f'<p class="note">{escape(t["suppression"])}</p>'
            f'<p class="note">{escape(t["anonymous"])}</p>'
            + _sections(data["helpline_figures"], lang, public=True)
            + f"<h2>{escape(t['flagger'])}</h2>"
            + "<p>"
            + escape(
                t["flagger_summary"].format(
                    notices=totals["notices"],
                    urls=totals["urls"],
                    providers=totals["providers"],
                    rate=percent(totals["honour_rate"]),
                )
            )
            + "</p>"
            + table(
                [t["provider"], t["notices"], t["urls"], t["honour_rate"]],
                [
                    [e["provider"], e["notices"], e["urls"], percent(e["honour_rate"])]
                    for e in flagger["by_provider"]
                ],
                t["none"],
            )
            + table(
                [t["content"], t["notices"]],
                [[human(c, lang), n] for c, n in flagger["by_content_category"].items()],
                t["none"],
            )
            + table(
                [t["action"], t["urls"]],
                [[human(c, lang), n] for c, n in flagger["by_action"].items()],
                t["none"],
            )
            + (
                f"<h3>{escape(t['independence'])}</h3><p>{escape(' '.join(statement.split()))}</p>"
                if statement
                else ""
            )
            + f'<p class="note">{escape(generated)}</p>'
        )
        return Page(f"{title} — {self.helpline}", lang, body).html()
