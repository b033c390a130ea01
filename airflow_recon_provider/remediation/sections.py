"""The runbook's sections as task groups: ``investigate_group() >> contain_group() >>
mitigate_group() >> recover_group() >> close_group()`` (and ``communicate_group``, a branch
off the main path), built from the step factories of :mod:`.steps`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import TaskGroup

from airflow_recon_provider.i18n import N_
from airflow_recon_provider.reconciliation.corrections import DEFAULT_APPROVAL_TIMEOUT
from airflow_recon_provider.remediation.run_request import FormFields, RunRequest
from airflow_recon_provider.remediation.steps import (
    RELEASE_MODE,
    closing_report_step,
    correction_step,
    final_communication_step,
    finance_review_step,
    mark_incident_step,
    pagerduty_step,
    pause_step,
    proceed_gate,
    psp_ticket_number_step,
    psp_ticket_step,
    recovery_step,
    reprocess_step,
    resume_step,
    rollback_step,
    scope_step,
    snapshot_step,
    tag_release_step,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator


# -- the sections ----------------------------------------------------------------------------------


def investigate_group(
    form: FormFields = FormFields(),
    *,
    group_id: str = "investigate",
    open_incident: bool = True,
    lease: bool = True,
    snapshot_kwargs: Mapping[str, Any] | None = None,
) -> TaskGroup:
    """Investigação: ``scope`` (validate the request, choose the incident; a real run takes
    the PSP's remediation lease unless ``lease`` is false) >> ``snapshot``.

    The scope step is ``<group_id>.scope``: pass ``RunRequest(f"{group_id}.scope")`` to the
    other sections when ``group_id`` is not ``investigate``.
    """
    request = RunRequest(f"{group_id}.scope")
    with TaskGroup(
        group_id, tooltip="Investigação: validar escopo, snapshot, jobs, integridade, PSP"
    ) as group:
        scope_step(form, open_incident=open_incident, lease=lease) >> snapshot_step(
            request, **dict(snapshot_kwargs or {})
        )
    return group


def contain_group(
    request: RunRequest = RunRequest(), *, group_id: str = "contain", **pause_kwargs: Any
) -> TaskGroup:
    """Ações de Contenção: pause the PSP's automatic reconciliation and tell finance (skipped
    in a dry run)."""
    with TaskGroup(
        group_id, tooltip="Ações de Contenção: pausar reconciliação, informar financeiro"
    ) as group:
        proceed_gate(request, section="containment") >> pause_step(request, **pause_kwargs)
    return group


def mitigate_group(
    request: RunRequest = RunRequest(),
    *,
    group_id: str = "mitigate",
    approvers: Sequence[str] | None = None,
    approval_timeout: timedelta | float = DEFAULT_APPROVAL_TIMEOUT,
    release_mode: str = RELEASE_MODE,
    reprocess_kwargs: Mapping[str, Any] | None = None,
    correction_kwargs: Mapping[str, Any] | None = None,
    rollback_kwargs: Mapping[str, Any] | None = None,
    psp_ticket_kwargs: Mapping[str, Any] | None = None,
) -> TaskGroup:
    """Mitigação: mark the incident mitigating >> reprocess (1) >> data correction with
    finance approval (2) >> rollback of the worker, only after a release (3), and the PSP
    ticket (4).

    In a dry run only the correction runs, as a dry run (its CSV artifact); everything else
    is skipped.
    """
    with TaskGroup(
        group_id, tooltip="Mitigação: reprocessar, corrigir dados, rollback, chamado PSP"
    ) as group:
        proceed = proceed_gate(request, section="mitigation")
        mitigating = mark_incident_step(
            request, "mitigating", task_id="mark_mitigating", note=N_("Mitigation started (runbook)")
        )
        reprocess = reprocess_step(request, **dict(reprocess_kwargs or {}))
        # after the reprocess, or alone in a dry run (the reprocess is skipped then)
        correct = correction_step(
            request,
            approvers=approvers,
            approval_timeout=approval_timeout,
            trigger_rule="none_failed",
            **dict(correction_kwargs or {}),
        )
        rollback = rollback_step(request, mode=release_mode, **dict(rollback_kwargs or {}))
        ticket = psp_ticket_step(request, **dict(psp_ticket_kwargs or {}))
        proceed >> mitigating >> reprocess >> correct >> [rollback, ticket]
        # Detecção 1: the PagerDuty alert is acknowledged once mitigation starts (a leaf)
        mitigating >> pagerduty_step(
            request, "acknowledge", task_id="pagerduty_acknowledge", note=N_("Mitigation started (runbook)")
        )
        # skipped directly by the gate in a dry run, although the correction ran
        proceed >> [rollback, ticket]
    return group


def communicate_group(
    psp_ticket: BaseOperator,
    request: RunRequest = RunRequest(),
    *,
    group_id: str = "communicate",
    **ticket_number_kwargs: Any,
) -> TaskGroup:
    """Comunicação 3: once ``psp_ticket`` (the Mitigação 4 step) produced the PSP's CSV,
    on-call is asked for the ticket number the PSP gave (``psp_ticket_number``).

    A branch off the main path: chain nothing after this group. Recovery and closure never
    wait for a person to type a number, and :func:`release_lease_step` does not wait for it
    either (the PSP is free for its next real remediation once the runbook's steps are done).
    The question has a deadline after which it ends without a number, so the run still
    finishes; the number can then be given on the dashboard's incident page.
    """
    with TaskGroup(group_id, tooltip="Comunicação: número do ticket do PSP") as group:
        psp_ticket >> psp_ticket_number_step(
            request, psp_ticket_task_id=psp_ticket.task_id, **ticket_number_kwargs
        )
    return group


def recover_group(
    request: RunRequest = RunRequest(), *, group_id: str = "recover", **recovery_kwargs: Any
) -> TaskGroup:
    """Critérios de Recuperação: wait (deferred) until the PSP's window recovered."""
    with TaskGroup(group_id, tooltip="Critérios de Recuperação") as group:
        # nothing after the recovery runs in a dry run
        proceed_gate(request, section="recovery", skip_all_downstream=True) >> recovery_step(
            request, **recovery_kwargs
        )
    return group


def close_group(
    request: RunRequest = RunRequest(),
    *,
    group_id: str = "close",
    release_mode: str = RELEASE_MODE,
    artifacts_dir: str | None = None,
    tag_kwargs: Mapping[str, Any] | None = None,
    communication_kwargs: Mapping[str, Any] | None = None,
) -> TaskGroup:
    """Encerramento: incident recovered >> resume reconciliation >> tag the release >>
    incident closed >> closing report (lessons learned) >> the review with finance scheduled
    (Encerramento 4) >> final update to finance, carrying the review's invitation."""
    # the review invites the finance addresses the final update goes to, from the same sender
    communication = dict(communication_kwargs or {})
    review_kwargs = {
        key: communication[given]
        for given, key in (("recipients", "finance_recipients"), ("smtp_conn_id", "smtp_conn_id"))
        if given in communication
    }
    with TaskGroup(
        group_id, tooltip="Encerramento: retomar, tag, relatório, revisão com financeiro, comunicação final"
    ) as group:
        (
            proceed_gate(request, section="closure", skip_all_downstream=True)
            >> mark_incident_step(
                request, "recovered", task_id="mark_recovered", note=N_("recovery criteria met")
            )
            >> resume_step(request)
            >> tag_release_step(request, mode=release_mode, **dict(tag_kwargs or {}))
            >> mark_incident_step(request, "closed", task_id="close_incident", note=N_("Closure (runbook)"))
            >> closing_report_step(request, artifacts_dir=artifacts_dir)
            >> finance_review_step(request, **review_kwargs)
            >> final_communication_step(request, **communication)
        )
        # Detecção 1: the PagerDuty alert is resolved once the incident is recovered (a leaf)
        group.get_child_by_label("mark_recovered") >> pagerduty_step(
            request, "resolve", task_id="pagerduty_resolve", note=N_("recovery criteria met")
        )
    return group


__all__ = [
    "close_group",
    "communicate_group",
    "contain_group",
    "investigate_group",
    "mitigate_group",
    "recover_group",
]
