"""The dashboard's FastAPI app, mounted by Airflow's API server at ``/recon``.

- ``GET /recon/`` — the page (HTML);
- ``GET /recon/api/psps`` — the same data as JSON;
- ``GET /recon/static/icon.svg`` — the navigation icon (no data, no login);
- incidents (open and closed), artifacts and each run's artifacts: see
  ``dashboard_incidents_app`` (same login and permission).

Airflow mounts plugin apps as they are: its API authentication does not apply to them by
itself. These routes therefore ask Airflow's auth manager, like Airflow's own routes do: the
caller must be logged in (the UI's ``_token`` cookie, or an ``Authorization: Bearer`` token
from ``POST /auth/token``) and allowed to read the ``billing_gateway_remediation`` DAG.
Without a login the page redirects to Airflow's login page and the JSON answers 401.
"""

# no ``from __future__ import annotations`` here: FastAPI reads the annotations of the
# route functions defined inside create_app (Annotated query types, the user dependency),
# which it can only resolve when they are evaluated where they are written.
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from airflow_recon_provider.plugins.dashboard_data import (
    CORRECTIONS_PAGE_SIZE,
    DEFAULT_CYCLES,
    MAX_CYCLES,
    REMEDIATION_DAG_ID,
    DashboardReader,
    DashboardUnavailable,
)
from airflow_recon_provider.reconciliation.window import max_window_hours

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from fastapi import FastAPI

    from airflow_recon_provider.plugins.dashboard_incidents import IncidentReader
    from airflow_recon_provider.plugins.dashboard_runs import RecentRun

log = logging.getLogger(__name__)

ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
    'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M3 3v18h18"/>'
    '<path d="M7 15l4-4 3 3 5-6"/><circle cx="19" cy="8" r="1"/></svg>'
)


def _parameter_problem(error: Any) -> str:
    """One invalid query parameter in words (the configured language), with the accepted range."""
    from airflow_recon_provider.reconciliation.i18n import _

    where = [str(p) for p in error.get("loc", ())[1:]]
    name = ".".join(where) or "request"
    value = error.get("input")
    if name == "cycles":
        return _(
            "cycles=%(value)s is out of range: the dashboard shows 1 to %(max)s hourly cycles (%(days)s "
            "days). Use, for example, ?cycles=%(max)s for the last %(days)s days, or ?end=<date and time "
            "with its zone> to look back at a past period.",
            value=value,
            max=MAX_CYCLES,
            days=MAX_CYCLES // 24,
        )
    if name == "page":
        return _("page=%(value)s is not a valid page: use a number from 1.", value=value)
    return f"{name}={value}: {error.get('msg')}"


def _parse_end(value: str | None) -> datetime | None:
    from airflow_recon_provider.reconciliation.window import parse_timestamp

    if not value:
        return None
    try:
        return parse_timestamp(value, name="end")
    except ValueError as exc:
        raise DashboardUnavailable(str(exc), status_code=400) from None


def _require_reader_factory() -> Any:
    """A FastAPI dependency: the logged-in user, allowed to read the remediation DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import GetUserDep
    from fastapi import HTTPException, status

    def require_reader(user: GetUserDep) -> Any:
        from airflow.configuration import conf

        team_name = None
        if conf.getboolean("core", "multi_team", fallback=False):
            from airflow.models.dag import DagModel

            team_name = DagModel.get_team_name(REMEDIATION_DAG_ID)
        allowed = get_auth_manager().is_authorized_dag(
            method="GET", details=DagDetails(id=REMEDIATION_DAG_ID, team_name=team_name), user=user
        )
        if not allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"you may not read the {REMEDIATION_DAG_ID} DAG, so you may not see its dashboard",
            )
        return user

    return require_reader


def create_app(
    *,
    reader: DashboardReader | None = None,
    incidents: "IncidentReader | None" = None,
    recent_runs: "Callable[[], Sequence[RecentRun]] | None" = None,
    require_login: bool = True,
) -> "FastAPI":
    """Build the dashboard app.

    :param reader: reads the data (default: the ``billing_gateway_db`` connection and
        ``ReconConfig.load()`` at every request, so a changed configuration shows at once).
    :param incidents: reads incidents and artifacts (default: the reader's connection).
    :param recent_runs: reads the latest runs of the runbook's DAGs (default: Airflow's
        metadata database, which the API server that mounts the app reads).
    :param require_login: ask Airflow's auth manager (always, in the API server); ``False``
        only for tests of the page itself.
    """
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.exceptions import HTTPException

    from airflow_recon_provider.i18n import _, language_scope
    from airflow_recon_provider.plugins.dashboard_finance_report import add_finance_report_routes
    from airflow_recon_provider.plugins.dashboard_incidents import IncidentReader
    from airflow_recon_provider.plugins.dashboard_incidents_app import (
        add_incident_routes,
        evidence_page_problem,
    )
    from airflow_recon_provider.plugins.dashboard_page import (
        TITLE,
        render_corrections,
        render_dashboard,
        render_error,
    )
    from airflow_recon_provider.plugins.dashboard_psp_ticket import (
        add_psp_ticket_routes,
        require_editor_factory,
    )
    from airflow_recon_provider.plugins.dashboard_runs import load_recent_runs, read_recent_runs

    reader = reader or DashboardReader()
    runs_reader = recent_runs or read_recent_runs
    incidents = incidents or IncidentReader(billing_gateway_conn_id=reader.conn_id)
    dependencies = [Depends(_require_reader_factory())] if require_login else []
    app = FastAPI(
        title=TITLE,
        description="Billing gateway reconciliation per PSP (airflow-recon-provider)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # ?lang=en / ?lang=pt-BR on any page, kept in a cookie (plugins/_language.py)
    from airflow_recon_provider.plugins._language import LanguageMiddleware

    app.add_middleware(LanguageMiddleware)

    def wants_html(request: Request) -> bool:
        return "/api/" not in request.url.path

    @app.exception_handler(HTTPException)
    async def http_errors(request: Request, exc: HTTPException) -> Response:
        if wants_html(request) and exc.status_code == 401:
            from airflow.api_fastapi.app import get_auth_manager

            next_url = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(get_auth_manager().get_url_login(next_url=next_url), status_code=303)
        if wants_html(request):
            path_in_app = request.url.path.removeprefix(request.scope.get("root_path") or "")
            page = evidence_page_problem(path_in_app, exc.status_code)  # pt-BR, incident pages
            if page is not None:
                return page
            return HTMLResponse(render_error(str(exc.detail)), status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> Response:
        with language_scope():
            problems = "; ".join(_parameter_problem(err) for err in exc.errors())
            if wants_html(request):
                return HTMLResponse(
                    render_error(problems, heading=_("Parameter out of range or invalid.")), status_code=400
                )
        return JSONResponse({"error": f"invalid parameters: {problems}"}, status_code=400)

    Cycles = Annotated[int, Query(ge=1, le=24 * 7, description="completed hourly cycles shown")]
    End = Annotated[str | None, Query(description="end of the period (ISO 8601); default: now")]

    @app.get("/", response_class=HTMLResponse, dependencies=dependencies)
    def dashboard_page(cycles: Cycles = DEFAULT_CYCLES, end: End = None) -> HTMLResponse:
        try:
            data = reader.read(cycles=cycles, end=_parse_end(end))
        except DashboardUnavailable as exc:
            return HTMLResponse(render_error(exc.message), status_code=exc.status_code)
        try:
            hours = max_window_hours(reader.config_loader().max_window)
        except Exception:  # the page already read the configuration; never fail here
            hours = None
        with language_scope():
            return HTMLResponse(
                render_dashboard(
                    data, end_param=end, recent_runs=load_recent_runs(runs_reader), max_window_hours=hours
                )
            )

    Page = Annotated[int, Query(ge=1, le=100_000, description="page of the list, from 1")]

    @app.get("/corrections/{psp}", response_class=HTMLResponse, dependencies=dependencies)
    def corrections_page(psp: str, page: Page = 1) -> HTMLResponse:
        """Every correction of a PSP, a page at a time, with the totals ("51-100 de 120")."""
        from airflow_recon_provider.reconciliation.errors import ReconError

        with language_scope():
            try:
                name = reader.psp_display_name(psp)
                if name is None:
                    return HTMLResponse(
                        render_error(
                            _("The PSP %(psp)s is not in the configuration.", psp=repr(psp)),
                            heading=_("Unknown PSP."),
                        ),
                        status_code=404,
                    )
                rows, total = reader.corrections_page(psp, page=page, page_size=CORRECTIONS_PAGE_SIZE)
            except ReconError as exc:
                return HTMLResponse(render_error(str(exc)), status_code=503)
            except Exception as exc:
                log.exception("reading the corrections of %s failed", psp)
                return HTMLResponse(
                    render_error(
                        _(
                            "the corrections could not be read (%(error)s); see the API server's log",
                            error=type(exc).__name__,
                        )
                    ),
                    status_code=503,
                )
            return HTMLResponse(
                render_corrections(psp, name, rows, total=total, page=page, page_size=CORRECTIONS_PAGE_SIZE)
            )

    @app.get("/api/psps", dependencies=dependencies)
    def dashboard_json(cycles: Cycles = DEFAULT_CYCLES, end: End = None) -> JSONResponse:
        try:
            data = reader.read(cycles=cycles, end=_parse_end(end))
        except DashboardUnavailable as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status_code)
        return JSONResponse(data.as_dict())

    @app.get("/static/icon.svg", include_in_schema=False)
    def icon() -> Response:
        return Response(ICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    add_incident_routes(app, incidents=incidents, dependencies=dependencies)
    # Comunicação 3: writing the PSP ticket number needs edit permission on the remediation DAG
    add_psp_ticket_routes(
        app, incidents=incidents, editor=require_editor_factory() if require_login else None
    )
    add_finance_report_routes(app, reader=reader, dependencies=dependencies)
    return app


__all__ = ["create_app"]
