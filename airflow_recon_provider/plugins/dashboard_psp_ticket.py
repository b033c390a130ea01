"""The PSP ticket number on the dashboard's incident page — runbook, Comunicação 3.

"Registrar número do ticket do PSP (se houver) no incidente." On-call types the number the
PSP gave in the incident page's form (``POST /recon/incidents/{id}/psp-ticket``, or JSON on
``POST /recon/api/incidents/{id}/psp-ticket``): the same check as the remediation's entry
form (:func:`~airflow_recon_provider.reconciliation.psp_ticket.check_ticket_number`), recorded
by ``IncidentHook.set_psp_ticket`` (the incident's number, a timeline event
``incident.psp_ticket``; a second number replaces the first, both on the timeline), so the
next 30-minute update and the closing report show it.

Writing needs more than the dashboard's reading: the logged-in user must be allowed to edit
the ``billing_gateway_remediation`` DAG (Airflow's auth manager, ``PUT`` on the DAG).
"""

# no ``from __future__ import annotations`` here: FastAPI reads the annotations of the
# routes defined inside add_psp_ticket_routes (as in dashboard_app)
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from airflow_recon_provider.i18n import _, language_scope
from airflow_recon_provider.plugins.dashboard_data import REMEDIATION_DAG_ID

if TYPE_CHECKING:
    from fastapi import FastAPI

    from airflow_recon_provider.plugins.dashboard_incidents import IncidentReader

#: the form's field (the same name as the entry form's and the incident's column)
FIELD = "psp_ticket"


class TicketRefused(Exception):
    """The number was not recorded: ``message`` (in ``[recon] language``) says why,
    ``status_code`` how."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def require_editor_factory() -> Callable[..., Any]:
    """A FastAPI dependency: the logged-in user, allowed to edit the remediation DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import GetUserDep
    from fastapi import HTTPException, status

    def require_editor(user: GetUserDep) -> Any:
        from airflow.configuration import conf

        team_name = None
        if conf.getboolean("core", "multi_team", fallback=False):
            from airflow.models.dag import DagModel

            team_name = DagModel.get_team_name(REMEDIATION_DAG_ID)
        allowed = get_auth_manager().is_authorized_dag(
            method="PUT", details=DagDetails(id=REMEDIATION_DAG_ID, team_name=team_name), user=user
        )
        if not allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"you may not edit the {REMEDIATION_DAG_ID} DAG, so you may not record a PSP ticket number",
            )
        return user

    return require_editor


def _user_name(user: Any) -> str:
    name = user.get_name() if hasattr(user, "get_name") else None
    return str(name or getattr(user, "username", "") or "").strip() or "dashboard"


def _number_from(body: bytes, content_type: str) -> Any:
    """The typed number from the form (urlencoded) or JSON body."""
    if "application/json" in content_type:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise TicketRefused(_("the request's body is not JSON"), status_code=400) from None
        if not isinstance(data, dict):
            raise TicketRefused(
                _("send a JSON object %(example)s", example='{"psp_ticket": "..."}'), status_code=400
            )
        return data.get(FIELD)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise TicketRefused(_("the form is not in UTF-8"), status_code=400) from None
    values = fields.get(FIELD) or [""]
    if len(values) > 1:
        raise TicketRefused(_("send a single PSP ticket number"), status_code=400)
    return values[0]


def record_ticket(
    incidents: "IncidentReader", incident_id: str, number: Any, *, actor: str
) -> dict[str, Any]:
    """Check ``number`` and record it on ``incident_id``; nothing is written when refused.

    :raises TicketRefused: with the reason in the language in force and the HTTP status.
    """
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.errors import ConnectionMissingError, DatabaseUnavailableError
    from airflow_recon_provider.reconciliation.incidents import (
        IllegalTransitionError,
        IncidentError,
        IncidentNotFoundError,
        check_incident_id,
    )
    from airflow_recon_provider.reconciliation.psp_ticket import PspTicketNumberError, check_ticket_number

    try:
        check_incident_id(incident_id)
        ticket = check_ticket_number(number, required=True)
    except PspTicketNumberError as exc:
        raise TicketRefused(
            _("PSP ticket number refused, nothing was recorded: %(reason)s", reason=exc), status_code=400
        ) from None
    except IncidentError as exc:
        raise TicketRefused(_("invalid incident: %(reason)s", reason=exc), status_code=404) from None
    hook = IncidentHook(billing_gateway_conn_id=incidents.conn_id)
    try:
        before = hook.get(incident_id).psp_ticket
        incident = hook.set_psp_ticket(incident_id, ticket, actor=actor)
    except IncidentNotFoundError:
        raise TicketRefused(
            _("incident %(incident)s does not exist", incident=incident_id), status_code=404
        ) from None
    except IllegalTransitionError:
        raise TicketRefused(
            _(
                "incident %(incident)s is closed; its PSP ticket can no longer be changed",
                incident=incident_id,
            ),
            status_code=409,
        ) from None
    except (DatabaseUnavailableError, ConnectionMissingError) as exc:
        raise TicketRefused(
            _("database unavailable, nothing was recorded: %(reason)s", reason=exc), status_code=503
        ) from None
    return {
        "incident_id": incident.incident_id,
        "psp_ticket": incident.psp_ticket,
        "replaces": before if before and before != incident.psp_ticket else None,
        "recorded_by": actor,
    }


def add_psp_ticket_routes(
    app: "FastAPI", *, incidents: "IncidentReader", editor: Callable[..., Any] | None
) -> None:
    """Add the PSP ticket number's routes to the dashboard ``app``.

    :param incidents: the dashboard's incident reader (its connection is written to).
    :param editor: the dependency that returns the logged-in user allowed to edit the
        remediation DAG (:func:`require_editor_factory`); ``None`` only in tests of the page
        itself (the number is then recorded as by ``dashboard``).
    """
    from typing import Annotated

    from fastapi import Depends, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

    from airflow_recon_provider.plugins.dashboard_incidents_page import render_problem

    def no_login() -> None:
        return None

    User = Annotated[Any, Depends(editor or no_login)]

    async def submit(request: Request, incident_id: str, user: Any) -> dict[str, Any]:
        number = _number_from(await request.body(), request.headers.get("content-type", ""))
        return record_ticket(incidents, incident_id, number, actor=_user_name(user))

    @app.post("/incidents/{incident_id}/psp-ticket", response_class=HTMLResponse)
    async def psp_ticket_form(request: Request, incident_id: str, user: User) -> Any:
        with language_scope():
            try:
                await submit(request, incident_id, user)
            except TicketRefused as exc:
                return HTMLResponse(
                    render_problem(exc.message, status_code=exc.status_code, root="../../"),
                    status_code=exc.status_code,
                )
        # back to the incident page, which shows the number (POST, redirect, GET)
        return RedirectResponse(f"../{incident_id}#psp-ticket", status_code=303)

    @app.post("/api/incidents/{incident_id}/psp-ticket")
    async def psp_ticket_json(request: Request, incident_id: str, user: User) -> JSONResponse:
        with language_scope():
            try:
                return JSONResponse(await submit(request, incident_id, user))
            except TicketRefused as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status_code)


__all__ = ["FIELD", "TicketRefused", "add_psp_ticket_routes", "record_ticket", "require_editor_factory"]
