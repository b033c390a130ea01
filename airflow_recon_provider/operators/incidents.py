"""Operators of the runbook's communication with finance and of the incident's closure.

- :class:`SendIncidentUpdatesOperator` — Comunicação: every 30 minutes, for each incident
  not yet normalized, the update to finance@platform.io and the incidents channel; the final
  "normalized" update once an incident recovers (DAG ``billing_gateway_incident_updates``).
- :class:`ContainmentNoticeOperator` — Ações de Contenção, second bullet: finance is told of
  the freeze of a PSP and of the estimated resumption.
- :class:`ClosingReportOperator` — Encerramento: the closing report (markdown and HTML) from
  the incident's timeline, attached to the incident and written to the artifact store.
- :class:`IncidentTransitionOperator` — the incident's state as the remediation walks the
  runbook (mitigating, recovered, closed), with the divergence figures of that moment.

Thin: each builds :class:`FinanceNotifier` or :class:`IncidentHook` in ``execute`` (imports
inside, so DAG files parse fast) and calls one or two of their methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import (
    BILLING_GATEWAY_CONN_ID,
    FINANCE_EMAIL,
    INCIDENTS_CHANNEL,
    SLACK_CONN_ID,
    SMTP_CONN_ID,
)
from airflow_recon_provider.operators._context import blank
from airflow_recon_provider.operators._scoped import ScopedOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.notifications.finance import FinanceNotifier

_FINANCE = FINANCE_EMAIL


def _run_moment(context: Context) -> datetime:
    """The moment of this run: its logical date (the 30-minute slot), else when it ran."""
    moment = context.get("logical_date")
    if moment is None:
        dag_run = context.get("dag_run")
        moment = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    return moment.astimezone(UTC)


def _note_text(note: str) -> str:
    """A note marked with ``N_`` in the DAG (``"Mitigation started (runbook)"``) in ``[recon]
    language``; any other note as it was written."""
    from airflow_recon_provider.i18n import _, language_scope

    with language_scope():
        return _(note)


class _FinanceOperator(ScopedOperator):
    """Common ground: who is told, through which connections."""

    def __init__(
        self,
        *,
        recipients: str | Sequence[str] = _FINANCE,
        from_email: str | None = None,
        smtp_conn_id: str = SMTP_CONN_ID,
        slack_conn_id: str | None = SLACK_CONN_ID,
        slack_channel: str = INCIDENTS_CHANNEL,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recipients = recipients
        self.from_email = from_email
        self.smtp_conn_id = smtp_conn_id
        self.slack_conn_id = slack_conn_id
        self.slack_channel = slack_channel
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def _notifier(self, context: Context, *, actor: str | None = None) -> FinanceNotifier:
        from airflow_recon_provider.notifications.finance import FinanceNotifier

        dag = context.get("dag")
        return FinanceNotifier(
            recipients=self.recipients,
            from_email=self.from_email,
            smtp_conn_id=self.smtp_conn_id,
            slack_conn_id=None if blank(self.slack_conn_id) else self.slack_conn_id,
            slack_channel=self.slack_channel,
            billing_gateway_conn_id=self.billing_gateway_conn_id,
            actor=actor or (f"{dag.dag_id}.{self.task_id}" if dag is not None else self.task_id),
        )


class SendIncidentUpdatesOperator(_FinanceOperator):
    """Send the update of every incident finance must still hear about (runbook, Comunicação).

    For each incident not yet normalized: the update of this run's slot (divergence % and
    amount now, steps since the last update, resumption estimate, PSP ticket). For each
    recovered or closed incident: the final "normalized" update, once, then silence. A
    delivery that fails is recorded and carried by the next run's update; the task then fails
    so the outage shows in Airflow. Undelivered containment notices are sent again.

    Returns one ``{"incident_id", "kind", "channels", "skipped"}`` per incident.

    :param incident_id: only this incident (templated; e.g. the remediation's final
        communication); empty: every incident finance must still hear about.
    :param recipients: finance's addresses (comma separated); templated.
    :param from_email: sender; default: the SMTP connection's ``from_email``.
    :param smtp_conn_id: SMTP connection; templated.
    :param slack_conn_id: Slack connection (``slack`` or ``slackwebhook``); empty: no Slack.
    :param slack_channel: the incidents channel; templated.
    :param billing_gateway_conn_id: gateway database (``recon`` schema).
    :param cadence_minutes: the DAG's schedule, used to spot runs that never happened.
    """

    template_fields: Sequence[str] = (
        "incident_id",
        "recipients",
        "smtp_conn_id",
        "slack_conn_id",
        "slack_channel",
    )
    ui_color = "#fde7e9"

    def __init__(self, *, cadence_minutes: int = 30, incident_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cadence_minutes = cadence_minutes
        self.incident_id = incident_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from datetime import timedelta

        from airflow_recon_provider.notifications.finance import DeliveryOutcome, FinanceDeliveryError

        slot = _run_moment(context)
        run_id = context.get("run_id")
        notifier = self._notifier(context)
        notifier.check_connections()  # a missing connection fails here, before any write
        results = []
        failures: list[str] = []
        hook = notifier.incident_hook()
        incident_id = self.scope_incident_id()
        incidents = [hook.get(incident_id)] if incident_id else hook.incidents_to_communicate()
        for incident in incidents:
            try:
                result = notifier.send_incident_update(
                    incident.incident_id,
                    slot=slot,
                    run_id=run_id,
                    cadence=timedelta(minutes=self.cadence_minutes),
                    detect_missed=True,
                )
            except Exception as exc:
                # one incident's problem does not silence the others
                self.log.exception("Update of %s failed", incident.incident_id)
                failures.append(f"{incident.incident_id}: {type(exc).__name__}: {exc}")
                continue
            results.append(result.as_dict())
            failures += [f"{incident.incident_id} {ch}: {o}" for ch, o in result.failed.items()]
            self.log.info(
                "%s (%s): %s", incident.incident_id, result.kind, results[-1]["channels"] or result.skipped
            )
        resent = notifier.resend_unsent(kinds=("containment",), run_id=run_id)
        failures += [
            f"containment notice {i}: {o}" for i, o in resent.items() if DeliveryOutcome.parse(o).failed
        ]
        if not results:
            self.log.info("No incident to report at %s", slot.isoformat())
        if failures:
            raise FinanceDeliveryError(
                f"{len(failures)} finance message(s) not delivered; recorded in recon.notifications and "
                "carried by the next run: " + " | ".join(failures)
            )
        return results


class ContainmentNoticeOperator(_FinanceOperator):
    """Tell finance that reconciliation of a PSP is frozen, and until when (runbook, Ações de
    Contenção). Returns the outcome per channel.

    :param psp: the paused PSP; templated.
    :param paused_by: who paused it; templated.
    :param reason: why; templated.
    :param eta_resumption: estimated resumption, ISO 8601 with offset or a datetime; empty:
        not yet estimated; templated.
    :param incident_id: the incident of the pause (default: the PSP's open incident); templated.
    :param paused_at: when it was paused (ISO 8601); default: this run's moment. One notice
        per PSP and moment, so a re-run does not notify twice; templated.
    """

    template_fields: Sequence[str] = (
        "psp",
        "paused_by",
        "reason",
        "eta_resumption",
        "incident_id",
        "paused_at",
        "recipients",
        "smtp_conn_id",
        "slack_conn_id",
        "slack_channel",
    )
    ui_color = "#fff4ce"

    def __init__(
        self,
        *,
        psp: str,
        paused_by: str,
        reason: str,
        eta_resumption: str | datetime | None = None,
        incident_id: str | None = None,
        paused_at: str | datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.paused_by = paused_by
        self.reason = reason
        self.eta_resumption = eta_resumption
        self.incident_id = incident_id
        self.paused_at = paused_at

    def execute(self, context: Context) -> dict[str, str]:
        from airflow_recon_provider.reconciliation.window import parse_timestamp

        eta = (
            None
            if blank(self.eta_resumption)
            else parse_timestamp(self.eta_resumption, name="eta_resumption")
        )
        paused_at = (
            _run_moment(context)
            if blank(self.paused_at)
            else parse_timestamp(self.paused_at, name="paused_at")
        )
        psp = str(self.psp).strip()
        outcomes = self._notifier(context, actor=str(self.paused_by)).send_containment_notice(
            psp,
            paused_by=str(self.paused_by),
            reason=str(self.reason),
            eta_resumption=eta,
            incident_id=self.scope_incident_id(),
            paused_at=paused_at,
            run_id=context.get("run_id"),
        )
        self.log.info("Containment notice for PSP %s: %s", psp, outcomes)
        return outcomes


class IncidentTransitionOperator(ScopedOperator):
    """Move an incident to a state of its lifecycle (``open -> mitigating -> recovered ->
    closed``) and record it on the timeline with the divergence figures of that moment
    (runbook, Comunicação: "Atualizar incidente com percentual de divergência e passos
    executados"). An incident already in the target state is left as it is (a re-run).

    Returns ``{"incident_id", "from", "to", "changed"}``.

    :param incident_id: ``INCIDENT-<n>``; templated.
    :param to_state: ``mitigating``, ``recovered`` or ``closed``; templated.
    :param note: why, on the timeline; templated.
    :param actor: who; default: the user who triggered the run, else ``airflow:<dag_id>``.
    :param billing_gateway_conn_id: gateway database (``recon`` schema).
    """

    template_fields: Sequence[str] = ("incident_id", "to_state", "note", "actor")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        incident_id: str,
        to_state: str,
        note: str = "",
        actor: str | None = None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.to_state = to_state
        self.note = note
        self.actor = actor
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import run_actor, run_id_of
        from airflow_recon_provider.reconciliation.incidents import parse_state

        incident_id = self.scope_incident_id(required=True)
        target = parse_state(self.to_state)
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        incident = hook.get(incident_id)
        if incident.state is target:
            self.log.info("%s already is %s: nothing to change", incident_id, target.value)
            return {"incident_id": incident_id, "from": target.value, "to": target.value, "changed": False}
        figures, note = hook.current_figures(incident)
        actor = self.optional_text("actor") or run_actor(context)
        hook.transition(
            incident_id,
            target,
            actor=actor,
            run_id=run_id_of(context),
            note="" if blank(self.note) else _note_text(str(self.note)),
            figures=None if note else figures,
        )
        return {"incident_id": incident_id, "from": incident.state.value, "to": target.value, "changed": True}


class ClosingReportOperator(ScopedOperator):
    """Build the closing report of an incident (runbook, Encerramento) and attach it.

    The markdown and HTML are stored on the incident row (``closing_report_md`` /
    ``closing_report_html``) and written once each to the artifact store as
    ``<incident_id>-closing-report.{md,html}`` under ``<base>/<dag_id>/<run_id>/`` (kinds
    ``closing_report`` / ``closing_report_html`` in ``recon.artifacts``; a retry keeps the
    first try's files and stores its own beside them). Returns (XCom)
    ``{"incident_id", "markdown": {id, name, link, ...}, "html": {...}}``: dashboard links,
    never a worker path.

    :param incident_id: ``INCIDENT-<n>``; templated.
    :param artifacts_dir: another artifact store base (a directory or a URL such as
        ``s3://bucket/prefix``) than ``[recon] artifacts_base_url``; templated.
    :param billing_gateway_conn_id: gateway database (``recon`` schema).
    """

    template_fields: Sequence[str] = ("incident_id", "artifacts_dir")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        incident_id: str,
        artifacts_dir: str | None = None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.artifacts_dir = artifacts_dir
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._artifacts import publish_artifact
        from airflow_recon_provider.reconciliation.incident_messages import (
            render_closing_report_html,
            render_closing_report_markdown,
        )

        incident_id = self.scope_incident_id(required=True)
        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        report = hook.closing_report(incident_id)
        markdown = render_closing_report_markdown(report)
        html = render_closing_report_html(report)
        records = {}
        for key, kind, suffix, content in (
            ("markdown", "closing_report", "md", markdown),
            ("html", "closing_report_html", "html", html),
        ):
            # stamped with its generation time: a retry keeps the first try's file
            records[key] = publish_artifact(
                context,
                kind=kind,
                name=f"{incident_id}-closing-report.{suffix}",
                source=content.encode("utf-8"),
                psp=report.incident.psp,
                incident_id=incident_id,
                base_url=self.optional_text("artifacts_dir"),
                billing_gateway_conn_id=self.billing_gateway_conn_id,
                keep_retries=True,
            )
        dag = context.get("dag")
        hook.attach_closing_report(
            incident_id,
            markdown=markdown,
            html=html,
            actor=f"{dag.dag_id}.{self.task_id}" if dag is not None else self.task_id,
            run_id=context.get("run_id"),
            artifacts=[records["markdown"].summary(), records["html"].summary()],
        )
        self.log.info(
            "Closing report of %s: %s; %s",
            incident_id,
            records["markdown"].describe(),
            records["html"].describe(),
        )
        return {"incident_id": incident_id, **{key: r.summary() for key, r in records.items()}}


__all__ = [
    "ClosingReportOperator",
    "ContainmentNoticeOperator",
    "IncidentTransitionOperator",
    "SendIncidentUpdatesOperator",
]
