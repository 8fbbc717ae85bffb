"""Statistics endpoints (docs/statistics.md).

Supervisors (`stats_routes`, `stats_pages`):

- `GET /api/staff/stats?from=YYYY-MM-DD&to=YYYY-MM-DD&group=week|month` — the figures as JSON;
- `GET /api/staff/stats.csv?…` and `…/stats.json?…` — the counters summed per period, metric
  and dimensions (`EXPORT_COLUMNS`);
- `GET /staff/statistics?…&lang=nl|en` — the statistics page with its charts;
- `GET /staff/report/{year}` (and `.json`) — the annual report as it would be published.

Everyone (`report_routes`):

- `GET /report/{year}` and `GET /report/{year}.json` — the annual report, small numbers
  suppressed; only for a year that is over, and only when `HELPLINE_PUBLISH_REPORT` is on
  (otherwise 404, as if there were none);
- `GET /report/report.css` — the pages' stylesheet (screen and print).

Nothing here holds personal data, so reading it is not audited.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.errors import Invalid, NotFound
from helpline.core.http import PUBLIC, route, services
from helpline.staff.auth import staff
from helpline.staff.models import Role
from helpline.stats.counters import day_of
from helpline.stats.queries import Row, Span, parse_span, stats_figures, year_span
from helpline.stats.report import LANGUAGES, STYLESHEET, AnnualReport, statistics_page
from helpline.takedown.figures import period_figures, year_period
from helpline.takedown.report import Report as FlaggerReport

SUPERVISOR = staff(Role.supervisor)
SPAN_QUERY = frozenset({"from", "to", "group"})
EXPORT_COLUMNS = ("period", "group", "metric", "dims", "count")
MAX_QUERY_CHARS = 40
FIRST_YEAR = 2000


def _query(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query string, refusing unknown or repeated parameters."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise Invalid(f"{unknown[0]}: unknown parameter")
    values: dict[str, str] = {}
    for name in allowed:
        given = request.query_params.getlist(name)
        if len(given) > 1:
            raise Invalid(f"{name}: given more than once")
        if given:
            if not given[0].strip() or len(given[0]) > MAX_QUERY_CHARS:
                raise Invalid(f"{name}: empty or too long")
            values[name] = given[0]
    return values


def _today(request: Request) -> date:
    found = services(request)
    return date.fromisoformat(day_of(found.clock.now(), ZoneInfo(_zone(request))))


def _zone(request: Request) -> str:
    return services(request).settings.timezone


def _span(request: Request, extra: frozenset[str] = frozenset()) -> Span:
    query = _query(request, SPAN_QUERY | extra)
    return parse_span(query.get("from"), query.get("to"), query.get("group"), today=_today(request))


def language(request: Request) -> str:
    """`?lang=`, else the first of Accept-Language we speak, else English."""
    asked = request.query_params.get("lang")
    if asked is not None:
        if asked not in LANGUAGES:
            raise Invalid(f"lang: one of {', '.join(LANGUAGES)}")
        return asked
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and weight > 0:
            weighted.append((-weight, index, primary))
    return min(weighted)[2] if weighted else LANGUAGES[0]


# ---------------------------------------------------------------- supervisors


async def stats(request: Request) -> Response:
    span = _span(request)
    _, figures = await stats_figures(request.state.session, span)
    return JSONResponse({**figures, "timezone": _zone(request)})


def _export_name(span: Span, extension: str) -> str:
    return f"statistics-{span.first.isoformat()}-{span.last.isoformat()}-{span.group}.{extension}"


def rows_csv(rows: list[Row], group: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([row.period.isoformat(), group, row.metric, row.dims, row.count])
    return out.getvalue()


async def stats_csv(request: Request) -> Response:
    span = _span(request)
    rows, _ = await stats_figures(request.state.session, span)
    return Response(
        rows_csv(rows, span.group),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_export_name(span, "csv")}"'},
    )


async def stats_json(request: Request) -> Response:
    span = _span(request)
    rows, _ = await stats_figures(request.state.session, span)
    return JSONResponse(
        {**span.as_json(), "timezone": _zone(request), "rows": [r.as_json() for r in rows]},
        headers={"Content-Disposition": f'attachment; filename="{_export_name(span, "json")}"'},
    )


async def statistics(request: Request) -> Response:
    lang = language(request)
    span = _span(request, frozenset({"lang"}))
    _, figures = await stats_figures(request.state.session, span)
    page = statistics_page(figures, lang, timezone=_zone(request), year=_today(request).year - 1)
    return HTMLResponse(page, headers={"Content-Language": lang})


async def annual_report(request: Request, year: int) -> AnnualReport:
    found = services(request)
    if not FIRST_YEAR <= year <= _today(request).year:
        raise NotFound("no report for that year")
    now = found.clock.now()
    _, figures = await stats_figures(request.state.session, year_span(year))
    flagger_figures = await period_figures(
        request.state.session, year_period(year, found.settings.timezone), now=now
    )
    flagger = FlaggerReport(
        year,
        found.settings.mail_from_name,
        now,
        flagger_figures,
        statement=found.settings.trusted_flagger_statement,
    )
    return AnnualReport(
        year, found.settings.mail_from_name, now, found.settings.timezone, figures, flagger
    )


async def report_preview(request: Request) -> Response:
    lang = language(request)
    _query(request, frozenset({"lang"}))
    report = await annual_report(request, int(request.path_params["year"]))
    return HTMLResponse(report.html(lang), headers={"Content-Language": lang})


async def report_preview_json(request: Request) -> Response:
    _query(request, frozenset())
    report = await annual_report(request, int(request.path_params["year"]))
    return JSONResponse(report.as_json())


def stats_routes() -> list[BaseRoute]:
    """The API under /api/staff (supervisors)."""
    return [
        route("/api/staff/stats", stats, access=SUPERVISOR),
        route("/api/staff/stats.csv", stats_csv, access=SUPERVISOR),
        route("/api/staff/stats.json", stats_json, access=SUPERVISOR),
    ]


def stats_pages() -> list[BaseRoute]:
    """The supervisors' pages."""
    return [
        route("/staff/statistics", statistics, access=SUPERVISOR),
        route("/staff/report/{year:int}", report_preview, access=SUPERVISOR),
        route("/staff/report/{year:int}.json", report_preview_json, access=SUPERVISOR),
    ]


# ---------------------------------------------------------------- the public report


def published(request: Request, year: int) -> bool:
    """A year's report is public once the year is over, if the helpline publishes it."""
    settings = services(request).settings
    return settings.publish_report and year < _today(request).year


async def _public_report(request: Request) -> AnnualReport:
    year = int(request.path_params["year"])
    if not published(request, year):
        raise NotFound("no published report for that year")
    return await annual_report(request, year)


async def public_report(request: Request) -> Response:
    lang = language(request)
    _query(request, frozenset({"lang"}))
    report = await _public_report(request)
    return HTMLResponse(
        report.html(lang), headers={"Content-Language": lang, "Cache-Control": "no-store"}
    )


async def public_report_json(request: Request) -> Response:
    _query(request, frozenset())
    return JSONResponse((await _public_report(request)).as_json())


async def stylesheet(request: Request) -> Response:
    return Response(STYLESHEET, media_type="text/css; charset=utf-8")


def report_routes() -> list[BaseRoute]:
    """The public annual report and the pages' stylesheet."""
    return [
        route("/report/report.css", stylesheet, access=PUBLIC),
        route("/report/{year:int}", public_report, access=PUBLIC),
        route("/report/{year:int}.json", public_report_json, access=PUBLIC),
    ]
