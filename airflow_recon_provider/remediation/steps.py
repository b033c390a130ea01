"""One factory per runbook step (each imports its own operator class, so a DAG file that
composes a few steps loads only their modules), and the dry-run gate (:func:`proceed_gate`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_recon_provider import configuration
from airflow_recon_provider.reconciliation.corrections import DEFAULT_APPROVAL_TIMEOUT
from airflow_recon_provider.reconciliation.errors import ConfigError
from airflow_recon_provider.reconciliation.inputs import parse_bool
from airflow_recon_provider.reconciliation.remediation import (
    RemediationRequestError,
    RemediationStep,
)
from airflow_recon_provider.remediation.run_request import FormFields, RunRequest
from airflow_recon_provider.remediation.timeline import (
    RecordStep,
    describe_correction,
    describe_psp_ticket,
    describe_recovery,
    describe_release,
    describe_reprocess,
    recorded,
)

if TYPE_CHECKING:
    from airflow.providers.standard.operators.python import ShortCircuitOperator
    from airflow.sdk import BaseOperator, Context

    from airflow_recon_provider.operators.investigation import ValidateScopeOperator

log = logging.getLogger(__name__)

#: the release operators' mode: ``local`` (development, demo) when the Airflow Variable
#: ``recon_release_mode`` (or ``AIRFLOW_VAR_RECON_RELEASE_MODE``) says so, else a pod
RELEASE_MODE = "{{ var.value.get('recon_release_mode', 'kubernetes') }}"


# -- the dry-run gate ------------------------------------------------------------------------------


def _proceed_unless_dry_run(dry_run: Any, section: str) -> bool:
    if parse_bool(dry_run, name="dry_run"):
        log.info("Dry run: %s skipped; nothing is paused, reprocessed, applied or closed", section)
        return False
    return True


def proceed_gate(
    request: RunRequest, *, section: str, task_id: str = "proceed", skip_all_downstream: bool = False
) -> ShortCircuitOperator:
    """The first task of a section that changes something: in a dry run its direct
    downstream steps are skipped (the others follow their trigger rules), or, with
    ``skip_all_downstream``, everything after it (nothing later runs in a dry run). Runs
    after a skipped section too (``none_failed``), never after a failed one."""
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    return ShortCircuitOperator(
        task_id=task_id,
        python_callable=_proceed_unless_dry_run,
        op_kwargs={"dry_run": request.dry_run, "section": section},
        ignore_downstream_trigger_rules=skip_all_downstream,
        trigger_rule="none_failed",
        doc_md=f"Dry run: skip the {section} steps; otherwise proceed.",
    )


# -- the steps -------------------------------------------------------------------------------------


def scope_step(
    form: FormFields = FormFields(),
    *,
    task_id: str = "scope",
    open_incident: bool = True,
    lease: bool = False,
    **kwargs: Any,
) -> ValidateScopeOperator:
    """Investigação 1, Validar Escopo: validate the request, choose the incident; with
    ``lease``, a real run takes the PSP's remediation lease (add :func:`release_lease_step`
    to the DAG to give it back at the end)."""
    from airflow_recon_provider.operators.investigation import ValidateScopeOperator

    return ValidateScopeOperator(
        task_id=task_id,
        psp=form.psp,
        window_start=form.window_start,
        window_end=form.window_end,
        window_hours=form.window_hours,
        divergence_kinds=form.divergence_kinds,
        incident_id=form.incident_id,
        dry_run=form.dry_run,
        after_release=form.after_release,
        reason=form.reason,
        open_incident=open_incident,
        lease=lease,
        **kwargs,
    )


def release_lease_step(*, task_id: str = "release_lease", **kwargs: Any) -> BaseOperator:
    """The run's last task: give back the PSP's remediation lease its scope took.

    Call it last inside the ``with DAG(...)`` block: it becomes a teardown downstream of every
    other task of the DAG, so it runs once all of them are done, whether the runbook
    succeeded or failed, and its own outcome does not decide the run's state. Branches and
    short-circuits (the dry-run gates) never skip a teardown.
    """
    from airflow_recon_provider.operators.remediation_lease import ReleaseRemediationLeaseOperator

    release = ReleaseRemediationLeaseOperator(
        task_id=task_id, doc_md="Give the PSP back to the next real remediation.", **kwargs
    )
    dag = release.dag
    if dag is None:
        raise RemediationRequestError(
            "release_lease_step() must be called inside a `with DAG(...)` block, after the other tasks"
        )
    # a question to a person (the PSP ticket number) keeps the run open, never the PSP's lease
    release.set_upstream(
        [task for task in dag.tasks if task is not release and not getattr(task, "outlives_lease", False)]
    )
    release.as_teardown()
    return release


def snapshot_step(request: RunRequest, *, task_id: str = "snapshot", **kwargs: Any) -> BaseOperator:
    """Investigação 1-4: snapshot CSV, divergence, cycles, ledger, Kafka, PSP health.

    In a finance report's dry run (Detecção 2) its success also records the findings for
    finance on the incident (:class:`~airflow_recon_provider.operators.finance_report.RecordFinanceFindings`).
    """
    from airflow_recon_provider.operators.finance_report import finance_findings_callback
    from airflow_recon_provider.operators.investigation import ReconciliationSnapshotOperator

    kwargs.setdefault("on_success_callback", finance_findings_callback(request.scope_task_id))
    return ReconciliationSnapshotOperator(
        task_id=task_id,
        psp=request.psp,
        window_start=request.window_start,
        window_end=request.window_end,
        divergence_kinds=request.divergence_kinds,
        incident_id=request.incident_id,
        **kwargs,
    )


def pause_step(request: RunRequest, *, task_id: str = "pause_reconciliation", **kwargs: Any) -> BaseOperator:
    """Ações de Contenção: pause the PSP's automatic reconciliation, tell finance."""
    from airflow_recon_provider.operators.controls import PauseReconciliationOperator

    return PauseReconciliationOperator(
        task_id=task_id,
        psp=request.psp,
        reason=request.reason,
        incident_id=request.incident_id,
        **kwargs,
    )


def mark_incident_step(
    request: RunRequest, to_state: str, *, task_id: str, note: str = "", **kwargs: Any
) -> BaseOperator:
    """The incident's state (mitigating, recovered, closed) with the figures of the moment."""
    from airflow_recon_provider.operators.incidents import IncidentTransitionOperator

    return IncidentTransitionOperator(
        task_id=task_id, incident_id=request.incident_id, to_state=to_state, note=note, **kwargs
    )


def reprocess_step(request: RunRequest, *, task_id: str = "reprocess", **kwargs: Any) -> BaseOperator:
    """Mitigação 1, Reprocessamento: re-run every cycle of the window, core fallback."""
    from airflow_recon_provider.operators.reprocess import ReprocessReconciliationOperator

    return ReprocessReconciliationOperator(
        task_id=task_id,
        psp=request.psp,
        window_start=request.window_start,
        window_end=request.window_end,
        **recorded(RemediationStep.REPROCESS, describe_reprocess, request),
        **kwargs,
    )


def correction_step(
    request: RunRequest,
    *,
    task_id: str = "correct_transactions",
    approvers: Sequence[str] | None = None,
    approval_timeout: timedelta | float = DEFAULT_APPROVAL_TIMEOUT,
    **kwargs: Any,
) -> BaseOperator:
    """Mitigação 2, Correção de Dados: dry run -> finance approval -> apply -> audit (a dry
    run request stops after the dry run's CSV)."""
    from airflow_recon_provider.operators.corrections import TransactionCorrectionOperator

    return TransactionCorrectionOperator(
        task_id=task_id,
        psp=request.psp,
        window_start=request.window_start,
        window_end=request.window_end,
        divergence_kinds=request.divergence_kinds,
        incident_id=request.incident_id,
        dry_run=request.dry_run,
        approvers=approvers,
        approval_timeout=approval_timeout,
        **recorded(RemediationStep.CORRECTION, describe_correction, request),
        **kwargs,
    )


def rollback_step(
    request: RunRequest,
    *,
    task_id: str = "rollback_release",
    after_release: str | bool | None = None,
    mode: str = RELEASE_MODE,
    **kwargs: Any,
) -> BaseOperator:
    """Mitigação 3, Rollback de Deploy: only when the request says the break followed a release."""
    from airflow_recon_provider.operators.release import RollbackDeployOperator

    kwargs.setdefault("psp", request.psp)
    kwargs.setdefault("incident_id", request.incident_id)
    return RollbackDeployOperator(
        task_id=task_id,
        after_release=request.after_release if after_release is None else after_release,
        mode=mode,
        **recorded(RemediationStep.ROLLBACK, describe_release, request),
        **kwargs,
    )


def _skip_without_external_kinds(context: Context) -> None:
    """A PSP ticket is about external inconsistencies; a request without any has none."""
    from airflow.sdk.exceptions import AirflowSkipException

    task = context["ti"].task  # rendered
    if not str(getattr(task, "divergence_kinds", "") or "").strip():
        raise AirflowSkipException(
            "the request has no external divergence kind (duplicate or missing in the statement, "
            "missing in the gateway, currency or amount mismatch): nothing to send to the PSP"
        )


def psp_ticket_step(request: RunRequest, *, task_id: str = "psp_ticket", **kwargs: Any) -> BaseOperator:
    """Mitigação 4, Sincronização com PSP: the divergent transactions for the PSP's ticket."""
    from airflow_recon_provider.operators.psp_ticket import PspTicketOperator

    return PspTicketOperator(
        task_id=task_id,
        psp=request.psp,
        window_start=request.window_start,
        window_end=request.window_end,
        divergence_kinds=request.psp_ticket_kinds,
        incident_id=request.incident_id,
        pre_execute=_skip_without_external_kinds,
        **recorded(RemediationStep.PSP_TICKET, describe_psp_ticket, request),
        **kwargs,
    )


#: how long on-call is asked for the PSP ticket number, in seconds (``[recon]``; default 1 hour)
PSP_TICKET_TIMEOUT_OPTION = "psp_ticket_timeout"
#: the environment variable, in minutes, that set it before the option (still read)
PSP_TICKET_TIMEOUT_ENV = "RECON_PSP_TICKET_TIMEOUT_MINUTES"


def psp_ticket_timeout() -> timedelta:
    """The PSP ticket number's deadline: ``[recon] psp_ticket_timeout`` (seconds, 60 to 604800),
    else ``$RECON_PSP_TICKET_TIMEOUT_MINUTES`` (minutes), else 1 hour."""
    import math

    if configuration.option(PSP_TICKET_TIMEOUT_OPTION):
        return timedelta(
            seconds=configuration.seconds(
                PSP_TICKET_TIMEOUT_OPTION, default=3600, minimum=60, maximum=7 * 24 * 3600
            )
        )
    raw = os.environ.get(PSP_TICKET_TIMEOUT_ENV, "").strip()
    if not raw:
        return timedelta(hours=1)
    try:
        minutes = float(raw)
    except ValueError:
        minutes = math.nan
    if not math.isfinite(minutes) or minutes <= 0:
        raise RemediationRequestError(
            f"${PSP_TICKET_TIMEOUT_ENV} must be a positive number of minutes, got {raw!r}"
        )
    return timedelta(minutes=minutes)


def psp_ticket_number_step(
    request: RunRequest, *, psp_ticket_task_id: str, task_id: str = "psp_ticket_number", **kwargs: Any
) -> BaseOperator:
    """Comunicação 3: ask on-call (Required actions) for the number the PSP gave the ticket
    whose CSV ``psp_ticket_task_id`` produced, and record it on the incident (unanswered
    after :func:`psp_ticket_timeout`, it ends without one)."""
    from airflow_recon_provider.operators.psp_ticket_number import PspTicketNumberOperator

    if "response_timeout" not in kwargs:
        try:
            kwargs["response_timeout"] = psp_ticket_timeout()
        except (ConfigError, RemediationRequestError) as exc:
            # the deadline is part of the task as parsed; a bad value must not take the DAG
            # out of the UI: the task keeps the default and refuses to run, saying why
            kwargs["configuration_error"] = str(exc)
    return PspTicketNumberOperator(
        task_id=task_id, incident_id=request.incident_id, psp_ticket_task_id=psp_ticket_task_id, **kwargs
    )


def recovery_step(
    request: RunRequest,
    *,
    task_id: str = "recovery_criteria",
    poll_interval: float | None = None,
    timeout: timedelta = timedelta(hours=24),
    **kwargs: Any,
) -> BaseOperator:
    """Critérios de Recuperação: < R$ 500 and < 10 keys, two successful cycles, the ledger
    aligned with the PSP's statements (deferrable). A first check that finds the window not
    recovered goes on the timeline too, with the figures of the criteria that hold it back."""
    from airflow_recon_provider.sensors.recovery import RecoverySensor

    kwargs.setdefault(
        "on_wait",
        RecordStep(RemediationStep.RECOVERY, "waiting", describe_recovery, request.scope_task_id, True),
    )
    return RecoverySensor(
        task_id=task_id,
        psp=request.psp,
        window_start=request.window_start,
        window_end=request.window_end,
        poll_interval=poll_interval,
        timeout=timeout.total_seconds(),
        # the recovery decision's own figures and rates go on the timeline (DESIGN 3a)
        **recorded(RemediationStep.RECOVERY, describe_recovery, request, decision=True),
        **kwargs,
    )


def resume_step(
    request: RunRequest, *, task_id: str = "resume_reconciliation", **kwargs: Any
) -> BaseOperator:
    """Encerramento: resume the PSP's automatic reconciliation, tell the incidents channel."""
    from airflow_recon_provider.operators.controls import ResumeReconciliationOperator

    kwargs.setdefault("reason", "recovery criteria met (runbook Encerramento)")
    return ResumeReconciliationOperator(
        task_id=task_id, psp=request.psp, incident_id=request.incident_id, **kwargs
    )


def tag_release_step(
    request: RunRequest, *, task_id: str = "tag_release", mode: str = RELEASE_MODE, **kwargs: Any
) -> BaseOperator:
    """Encerramento: ``rollback_and_tag.py tag ... --notes "reconciliation incident"``."""
    from airflow_recon_provider.operators.release import TagReleaseOperator

    kwargs.setdefault("psp", request.psp)
    kwargs.setdefault("incident_id", request.incident_id)
    return TagReleaseOperator(
        task_id=task_id,
        mode=mode,
        **recorded(RemediationStep.TAG_RELEASE, describe_release, request),
        **kwargs,
    )


def closing_report_step(
    request: RunRequest, *, task_id: str = "closing_report", artifacts_dir: str | None = None, **kwargs: Any
) -> BaseOperator:
    """Encerramento: the lessons-learned document from the timeline, attached to the incident."""
    from airflow_recon_provider.operators.incidents import ClosingReportOperator

    return ClosingReportOperator(
        task_id=task_id, incident_id=request.incident_id, artifacts_dir=artifacts_dir, **kwargs
    )


#: who is invited to the review with finance besides finance: on-call's addresses (Airflow
#: Variable ``recon_oncall_recipients``, comma separated; empty: finance only)
ONCALL_RECIPIENTS = "{{ var.value.get('recon_oncall_recipients', '') }}"
FINANCE_RECIPIENTS = "{{ var.value.get('recon_finance_recipients', 'finance@platform.io') }}"


def finance_review_step(
    request: RunRequest, *, task_id: str = "schedule_finance_review", **kwargs: Any
) -> BaseOperator:
    """Encerramento 4: schedule the review with finance and on-call (the next business-day
    slot after the closure); the closing e-mail carries its invitation."""
    from airflow_recon_provider.operators.finance_review import ScheduleFinanceReviewOperator

    kwargs.setdefault("finance_recipients", FINANCE_RECIPIENTS)
    kwargs.setdefault("oncall_recipients", ONCALL_RECIPIENTS)
    return ScheduleFinanceReviewOperator(task_id=task_id, incident_id=request.incident_id, **kwargs)


def final_communication_step(
    request: RunRequest, *, task_id: str = "final_communication", **kwargs: Any
) -> BaseOperator:
    """Comunicação: the final "normalized" update to finance (e-mail) and Slack."""
    kwargs.setdefault("recipients", "{{ var.value.get('recon_finance_recipients', 'finance@platform.io') }}")
    from airflow_recon_provider.operators.incidents import SendIncidentUpdatesOperator

    return SendIncidentUpdatesOperator(task_id=task_id, incident_id=request.incident_id, **kwargs)


#: the PagerDuty connection of the alert (Airflow Variable ``recon_pagerduty_conn_id``; empty
#: there: nobody is paged)
PAGERDUTY_CONN = "{{ var.value.get('recon_pagerduty_conn_id', 'pagerduty_recon') }}"


def pagerduty_step(
    request: RunRequest, action: str, *, task_id: str, note: str = "", **kwargs: Any
) -> BaseOperator:
    """Detecção 1: acknowledge or resolve the incident's PagerDuty alert (the watch triggered
    it). A leaf that always succeeds: a PagerDuty outage is recorded on the timeline and never
    holds the runbook up."""
    from airflow_recon_provider.operators.pagerduty import PagerDutyIncidentEventOperator

    kwargs.setdefault("pagerduty_conn_id", PAGERDUTY_CONN)
    return PagerDutyIncidentEventOperator(
        task_id=task_id, incident_id=request.incident_id, action=action, note=note, **kwargs
    )


__all__ = [
    "FINANCE_RECIPIENTS",
    "ONCALL_RECIPIENTS",
    "PAGERDUTY_CONN",
    "PSP_TICKET_TIMEOUT_ENV",
    "RELEASE_MODE",
    "closing_report_step",
    "correction_step",
    "final_communication_step",
    "finance_review_step",
    "mark_incident_step",
    "pagerduty_step",
    "pause_step",
    "proceed_gate",
    "psp_ticket_number_step",
    "psp_ticket_step",
    "psp_ticket_timeout",
    "recovery_step",
    "release_lease_step",
    "reprocess_step",
    "resume_step",
    "rollback_step",
    "scope_step",
    "snapshot_step",
    "tag_release_step",
]
