"""PspTicketNumberOperator — runbook, Comunicação 3 (número do ticket do PSP).

"Registrar número do ticket do PSP (se houver) no incidente." The PSP gives the number when
on-call opens the ticket with it, sending the CSV that :class:`PspTicketOperator` published.
Once that CSV exists, this task asks on-call for the number in Airflow's *Required actions*
(a human-in-the-loop entry form) and records it on the incident (``IncidentHook.set_psp_ticket``:
the incident's ``psp_ticket``, a timeline event ``incident.psp_ticket``), from where the
30-minute updates, the dashboard and the closing report show it.

It is a branch off the runbook's main path: recovery and closure never wait for it, and the
PSP's remediation lease is given back without it (see ``remediation.communicate_group``). The
question has a deadline (``response_timeout``, 1 hour by default): after it the scheduler ends
the task without a number, the run can finish, and the number can still be given on the
dashboard's incident page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLEntryOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from airflow_recon_provider.i18n import _, language_scope, ngettext
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.reconciliation.errors import ConfigError
from airflow_recon_provider.reconciliation.psp_ticket import TICKET_NUMBER_MAX_LENGTH, TICKET_NUMBER_PATTERN

if TYPE_CHECKING:
    from airflow.sdk import Context

#: the entry form's field
TICKET_FIELD = "psp_ticket"
#: how long on-call is asked before the task ends without a number
DEFAULT_TICKET_TIMEOUT = timedelta(hours=1)


def ticket_number_param() -> Param:
    """The form's field: empty (no number yet) or a ticket number, checked in the form; its
    title and description in ``[recon] language`` (rendered when the DAG is parsed)."""
    with language_scope():
        title = _("PSP ticket number")
        description = _(
            "The number the PSP gave the ticket (e.g. STRIPE-8812): letters and digits (at least one "
            "digit), with - _ . / # : or single spaces inside, up to %(max)s characters. Empty: the PSP "
            "has not given the number yet — record it later on the incident's page on the dashboard.",
            max=TICKET_NUMBER_MAX_LENGTH,
        )
    return Param(
        "",
        type="string",
        maxLength=TICKET_NUMBER_MAX_LENGTH,
        # empty, or a number with the blanks a paste leaves around it (removed when recorded)
        pattern="^ *$|^ *" + TICKET_NUMBER_PATTERN.removeprefix("^").removesuffix("$") + " *$",
        title=title,
        source="task",
        description=description,
    )


def _duration_text(span: timedelta) -> str:
    """``1 h``, ``2 min``, ``1 h 30 min``."""
    minutes = round(span.total_seconds() / 60)
    hours, rest = divmod(minutes, 60)
    parts = [f"{hours} h"] if hours else []
    if rest or not parts:
        parts.append(f"{rest} min")
    return " ".join(parts)


class PspTicketNumberOperator(HITLEntryOperator):
    """Ask on-call for the PSP's ticket number and record it on the incident.

    Skipped when there is nothing to ask: no PSP ticket CSV (the ticket step was skipped or
    failed), a CSV without rows (nothing was sent to the PSP), no incident, or a closed one.
    An answer with a number records it (a second number replaces the first; the timeline
    keeps both); an empty answer, or none before the deadline, records nothing and the task
    still succeeds. A number that is not one fails the task with the reason (the form refuses
    it first), and nothing is recorded. An answer that comes after the run closed the incident
    is not recorded either (a closed incident is final): the task is skipped, saying so.

    :param incident_id: the incident (templated).
    :param psp_ticket_task_id: the :class:`PspTicketOperator` task whose CSV the PSP gets.
    :param response_timeout: how long on-call is asked (default 1 hour; the remediation DAG
        takes ``[recon] psp_ticket_timeout``, else ``$RECON_PSP_TICKET_TIMEOUT_MINUTES``).
    :param billing_gateway_conn_id: connection of the gateway database (``recon`` schema).
    :param configuration_error: why the deadline could not be read from the configuration when
        the DAG was parsed; the task then refuses to run with that reason (the DAG still
        imports, with the default deadline).
    """

    template_fields = (*HITLEntryOperator.template_fields, "incident_id")
    ui_color = "#e0f2f1"
    #: a question to a person must not keep the PSP from its next remediation:
    #: ``release_lease_step`` does not wait for this task
    outlives_lease = True

    def __init__(
        self,
        *,
        incident_id: str,
        psp_ticket_task_id: str,
        response_timeout: timedelta = DEFAULT_TICKET_TIMEOUT,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        configuration_error: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "subject" not in kwargs:
            with language_scope():
                kwargs["subject"] = _("PSP ticket number")
        # the form is this one field: a task-level Param (HITLOperator leaves out the DAG's own)
        params = kwargs.pop("params", None)
        params = params if isinstance(params, ParamsDict) else ParamsDict(params or {})
        params[TICKET_FIELD] = ticket_number_param()
        super().__init__(
            params=params,
            response_timeout=response_timeout,
            **kwargs,
        )
        self.incident_id = incident_id
        self.psp_ticket_task_id = psp_ticket_task_id
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.configuration_error = configuration_error

    def execute(self, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_recon_provider.artifacts import dashboard_base_url
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import blank

        if self.configuration_error:
            raise ConfigError(f"the PSP ticket number is not asked: {self.configuration_error}")
        ticket = context["ti"].xcom_pull(task_ids=self.psp_ticket_task_id)
        if not isinstance(ticket, Mapping):
            raise AirflowSkipException("no PSP ticket CSV was produced: no ticket number to ask for")
        if not ticket.get("rows"):
            raise AirflowSkipException("the PSP ticket CSV has no divergent transaction: no ticket to open")
        if blank(self.incident_id):
            raise AirflowSkipException("the run has no incident to record a ticket number on")
        incident_id = str(self.incident_id).strip()
        incident = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id).get(incident_id)
        if not incident.is_open:
            raise AirflowSkipException(f"{incident_id} is closed: its PSP ticket number is no longer asked")

        artifact = ticket.get("artifact") or {}
        page = f"{dashboard_base_url()}/incidents/{incident_id}"
        deadline = _duration_text(self.response_timeout) if self.response_timeout else None
        rows = int(ticket.get("rows") or 0)
        # what on-call reads in Required actions, in [recon] language (pt-BR by default)
        with language_scope():
            csv_text = (
                f"[{artifact.get('name')}]({artifact['link']})"
                if artifact.get("link")
                else _("the ticket's CSV")
            )
            self.subject = _(
                "%(incident)s · PSP %(psp)s: PSP ticket number", incident=incident_id, psp=incident.psp
            )
            self.body = "\n\n".join(
                [
                    ngettext(
                        "**Communication** — open the ticket with PSP %(psp)s sending %(csv)s (%(num)s "
                        "divergent transaction) and type here the number the PSP gave.",
                        "**Communication** — open the ticket with PSP %(psp)s sending %(csv)s (%(num)s "
                        "divergent transactions) and type here the number the PSP gave.",
                        rows,
                        psp=incident.psp,
                        csv=csv_text,
                    ),
                    _(
                        "Ticket recorded today: **%(ticket)s** (a new number replaces it).",
                        ticket=incident.psp_ticket,
                    )
                    if incident.psp_ticket
                    else _("No PSP ticket recorded yet."),
                    (
                        _(
                            "Without an answer within %(deadline)s the request ends without a number. ",
                            deadline=deadline,
                        )
                        if deadline
                        else ""
                    )
                    + _("The number can also be recorded on the [incident's page](%(page)s). ", page=page)
                    + _("Recovery and closure do not wait for this answer."),
                ]
            )
        self.log.info("%s: asking on-call for the PSP ticket number of %s", incident_id, artifact.get("name"))
        return super().execute(context)

    def validate_params_input(self, params_input: Mapping) -> None:
        from airflow_recon_provider.reconciliation.psp_ticket import check_ticket_number

        # the reason in the refusal, before the form's schema says "does not match"
        with language_scope():
            number = check_ticket_number(params_input.get(TICKET_FIELD))
        super().validate_params_input({**params_input, TICKET_FIELD: number or ""})

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import run_id_of
        from airflow_recon_provider.reconciliation.incidents import IllegalTransitionError
        from airflow_recon_provider.reconciliation.psp_ticket import check_ticket_number

        answer = super().execute_complete(context, event)
        with language_scope():
            number = check_ticket_number((answer.get("params_input") or {}).get(TICKET_FIELD))
        user = answer.get("responded_by_user") or {}
        who = str(user.get("name") or user.get("id") or "").strip() or None
        incident_id = str(self.incident_id).strip()
        if number is None:
            self.log.info(
                "%s: %s; the number can be recorded on the dashboard's incident page",
                incident_id,
                f"{who} gave no PSP ticket number" if who else "no answer before the deadline",
            )
            return {"psp_ticket": None, "recorded": False, "responded_by": who, "incident_id": incident_id}
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        try:
            incident = hook.set_psp_ticket(
                incident_id, number, actor=who or "unknown", run_id=run_id_of(context)
            )
        except IllegalTransitionError as exc:
            # closed by this run's own Encerramento before the answer came: a closed incident
            # is final; say so without failing a run whose runbook succeeded
            raise AirflowSkipException(
                f"PSP ticket {number} not recorded: {exc} (closed before the number was given)"
            ) from None
        self.log.info("%s: PSP ticket %s recorded (given by %s)", incident_id, incident.psp_ticket, who)
        return {"psp_ticket": number, "recorded": True, "responded_by": who, "incident_id": incident_id}


__all__ = ["DEFAULT_TICKET_TIMEOUT", "TICKET_FIELD", "PspTicketNumberOperator", "ticket_number_param"]
