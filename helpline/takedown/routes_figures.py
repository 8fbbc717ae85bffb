"""Staff endpoints for the takedown figures and the yearly trusted-flagger report (supervisor).

- `GET /api/staff/takedown/figures?from=&to=&platform=` — the figures as JSON;
- `GET /api/staff/takedown/charts/{chart}.svg?from=&to=&platform=` — one chart (`report.CHARTS`);
- `GET /api/staff/takedown/report/{year}` — the DSA art. 22(3) report as JSON,
  `…/{year}.csv` as CSV, `…/{year}.html` as a readable page with its charts inline, in
  English or, with `?lang=nl`, Dutch.

Nothing here holds personal data (see helpline/takedown/figures.py and report.py), so reading
it is not audited; every response is `no-store` like every other (core.http).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.errors import Invalid, NotFound
from helpline.core.http import route, services
from helpline.staff.auth import staff
from helpline.staff.models import Role
from helpline.takedown.figures import (
    PeriodFigures,
    parse_period,
    period_figures,
    year_period,
)
from helpline.takedown.report import CHARTS, LANGUAGES, Report, report_csv, report_html

SUPERVISOR = staff(Role.supervisor)
QUERY = frozenset({"from", "to", "platform"})
MAX_QUERY_CHARS = 100


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


async def _period_figures(request: Request) -> PeriodFigures:
    found = services(request)
    query = _query(request, QUERY)
    now = found.clock.now()
    period = parse_period(
        query.get("from"), query.get("to"), now=now, timezone=found.settings.timezone
    )
    return await period_figures(
        request.state.session, period, now=now, platform=query.get("platform")
    )


async def figures(request: Request) -> Response:
    return JSONResponse((await _period_figures(request)).as_json())


async def chart(request: Request) -> Response:
    draw = CHARTS.get(request.path_params["chart"])
    if draw is None:
        raise NotFound(f"no such chart; there are: {', '.join(CHARTS)}")
    svg = draw(await _period_figures(request))
    return Response(svg, media_type="image/svg+xml; charset=utf-8")


async def _report(request: Request, allowed: frozenset[str] = frozenset()) -> Report:
    found = services(request)
    _query(request, allowed)
    year = int(request.path_params["year"])
    period = year_period(year, found.settings.timezone)
    now = found.clock.now()
    result = await period_figures(request.state.session, period, now=now)
    return Report(
        year,
        found.settings.mail_from_name,
        now,
        result,
        statement=found.settings.trusted_flagger_statement,
    )


async def report_json(request: Request) -> Response:
    return JSONResponse((await _report(request)).as_json())


async def report_as_csv(request: Request) -> Response:
    report = await _report(request)
    name = f"trusted-flagger-report-{report.year}.csv"
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def report_page(request: Request) -> Response:
    lang = request.query_params.get("lang", LANGUAGES[0])
    if lang not in LANGUAGES:
        raise Invalid(f"lang: one of {', '.join(LANGUAGES)}")
    report = await _report(request, frozenset({"lang"}))
    return HTMLResponse(report_html(report, lang), headers={"Content-Language": lang})


def figures_routes() -> list[BaseRoute]:
    base = "/api/staff/takedown"
    return [
        route(f"{base}/figures", figures, access=SUPERVISOR),
        route(f"{base}/charts/{{chart}}.svg", chart, access=SUPERVISOR),
        route(f"{base}/report/{{year:int}}", report_json, access=SUPERVISOR),
        route(f"{base}/report/{{year:int}}.csv", report_as_csv, access=SUPERVISOR),
        route(f"{base}/report/{{year:int}}.html", report_page, access=SUPERVISOR),
    ]
