"""The runbook's sections as task groups, one definition of each step.

Runbook *Billing Gateway — Falhas de Reconciliação*: Investigação, Ações de Contenção,
Mitigação, Critérios de Recuperação, Encerramento. The ``billing_gateway_remediation`` DAG is
``investigate_group() >> contain_group() >> mitigate_group() >> recover_group() >>
close_group()``; the single-action DAGs (``billing_gateway_reprocess``,
``billing_gateway_data_correction``, ``billing_gateway_reconciliation_control``,
``billing_gateway_release_rollback``) compose the same step factories (``scope_step``,
``reprocess_step``, ``correction_step``, ``pause_step`` ...) so that no wiring is copied.

How a run is wired:

- The run's request comes from its Params (:class:`FormFields`: templates over ``params``).
  The first task, ``scope`` (:class:`ValidateScopeOperator`), validates it — a specific
  error for each problem — and chooses the incident (the request's, the PSP's open one, or
  a new one; never a new one in a dry run). Every later step reads the *validated* request
  from the scope's XCom (:class:`RunRequest`: templates over ``ti.xcom_pull``).
- One real run per PSP at a time: the scope step of a real run takes the PSP's remediation
  lease (``recon.remediation_leases``) while it chooses the incident, and refuses the run —
  naming the running one and its incident — when another run that is still running holds
  it; :func:`release_lease_step`, a teardown after every other task, gives it back when the
  run ends (success or failure). The single-action DAGs that repeat a runbook step
  (reprocess, data correction, rollback/tag) take the same lease; dry runs never do.
- Dry run: each section that changes something starts with a ``proceed`` gate (a
  short-circuit) that skips its changing steps when the request is a dry run. A dry run is
  the investigation plus the correction's dry run (its CSV artifact): nothing is paused,
  reprocessed, applied, rolled back, resumed, tagged or closed, and no incident is opened.
- Incident timeline: every step appends an event (step, outcome, divergence % and amount
  at that moment, actor, run id): steps built here record their own; the others get
  :class:`RecordStep` callbacks (on success, failure and skip), which never change the
  step's outcome.

Heavy imports (hooks, psycopg connections, HTTP clients) happen inside the operators, and
each step factory imports its own operator class, so a DAG file that composes a few steps
loads only their modules and parses fast.

The package, by seam (every name stays importable from ``airflow_recon_provider.remediation``):

- :mod:`.params`: the forms' fields (``remediation_params``, ``psp_param``, ``window_params``...)
  and the correction approvers;
- :mod:`.run_request`: the request as templates (:class:`FormFields`, :class:`RunRequest`);
- :mod:`.timeline`: :class:`RecordStep` callbacks and the words of each step's outcome;
- :mod:`.steps`: one factory per runbook step and the dry-run gate;
- :mod:`.sections`: the runbook's sections as task groups;
- :mod:`.single_action`: the single-action DAGs' forms, scope, incident rule and branch.

(Not to be confused with :mod:`airflow_recon_provider.reconciliation.remediation`, the
Airflow-free step names and request errors these build on.)
"""

from __future__ import annotations

from typing import Any

from airflow_recon_provider.reconciliation.remediation import RemediationStep
from airflow_recon_provider.remediation.params import (
    APPROVERS_ENV,
    APPROVERS_OPTION,
    INCIDENT_ID_PATTERN,
    PSP_NAME_PATTERN,
    divergence_kinds_param,
    finance_approvers,
    incident_param,
    psp_param,
    reason_param,
    remediation_params,
    window_params,
)
from airflow_recon_provider.remediation.run_request import SCOPE_TASK_ID, FormFields, RunRequest
from airflow_recon_provider.remediation.sections import (
    close_group,
    communicate_group,
    contain_group,
    investigate_group,
    mitigate_group,
    recover_group,
)
from airflow_recon_provider.remediation.single_action import (
    ACTION_PARAM,
    NEVER_OPENS,
    OPENS_ON_PAUSE,
    OPENS_UNLESS_DRY_RUN,
    SINGLE_ACTION_FORM,
    SINGLE_ACTION_SCOPE_TASK_ID,
    IncidentRule,
    action_param,
    choose_action_step,
    single_action_dag_args,
    single_action_params,
    single_action_scope,
)
from airflow_recon_provider.remediation.steps import (
    FINANCE_RECIPIENTS,
    ONCALL_RECIPIENTS,
    PAGERDUTY_CONN,
    PSP_TICKET_TIMEOUT_ENV,
    PSP_TICKET_TIMEOUT_OPTION,
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
    psp_ticket_timeout,
    recovery_step,
    release_lease_step,
    reprocess_step,
    resume_step,
    rollback_step,
    scope_step,
    snapshot_step,
    tag_release_step,
)
from airflow_recon_provider.remediation.timeline import RecordStep, recorded

# the name it had in the single module (tests import it)
from airflow_recon_provider.remediation.timeline import describe_recovery as _describe_recovery  # noqa: F401

#: the operator classes the step factories build, by module: still importable from here
#: (``from airflow_recon_provider.remediation import ValidateScopeOperator``), loaded on use
_STEP_CLASSES = {
    "BranchPythonOperator": "airflow.providers.standard.operators.python",
    "ShortCircuitOperator": "airflow.providers.standard.operators.python",
    "PauseReconciliationOperator": "airflow_recon_provider.operators.controls",
    "ResumeReconciliationOperator": "airflow_recon_provider.operators.controls",
    "TransactionCorrectionOperator": "airflow_recon_provider.operators.corrections",
    "ClosingReportOperator": "airflow_recon_provider.operators.incidents",
    "IncidentTransitionOperator": "airflow_recon_provider.operators.incidents",
    "SendIncidentUpdatesOperator": "airflow_recon_provider.operators.incidents",
    "ReconciliationSnapshotOperator": "airflow_recon_provider.operators.investigation",
    "ScheduleFinanceReviewOperator": "airflow_recon_provider.operators.finance_review",
    "ValidateScopeOperator": "airflow_recon_provider.operators.investigation",
    "PspTicketOperator": "airflow_recon_provider.operators.psp_ticket",
    "PspTicketNumberOperator": "airflow_recon_provider.operators.psp_ticket_number",
    "PagerDutyIncidentEventOperator": "airflow_recon_provider.operators.pagerduty",
    "RollbackDeployOperator": "airflow_recon_provider.operators.release",
    "TagReleaseOperator": "airflow_recon_provider.operators.release",
    "ReprocessReconciliationOperator": "airflow_recon_provider.operators.reprocess",
    "RecoverySensor": "airflow_recon_provider.sensors.recovery",
    "ReleaseRemediationLeaseOperator": "airflow_recon_provider.operators.remediation_lease",
}


def __getattr__(name: str) -> Any:
    module = _STEP_CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ACTION_PARAM",
    "APPROVERS_ENV",
    "APPROVERS_OPTION",
    "FINANCE_RECIPIENTS",
    "INCIDENT_ID_PATTERN",
    "NEVER_OPENS",
    "ONCALL_RECIPIENTS",
    "OPENS_ON_PAUSE",
    "OPENS_UNLESS_DRY_RUN",
    "PAGERDUTY_CONN",
    "PSP_NAME_PATTERN",
    "PSP_TICKET_TIMEOUT_ENV",
    "PSP_TICKET_TIMEOUT_OPTION",
    "RELEASE_MODE",
    "SCOPE_TASK_ID",
    "SINGLE_ACTION_FORM",
    "SINGLE_ACTION_SCOPE_TASK_ID",
    "FormFields",
    "IncidentRule",
    "RecordStep",
    "RemediationStep",
    "RunRequest",
    "action_param",
    "choose_action_step",
    "close_group",
    "closing_report_step",
    "communicate_group",
    "contain_group",
    "correction_step",
    "divergence_kinds_param",
    "final_communication_step",
    "finance_approvers",
    "finance_review_step",
    "incident_param",
    "investigate_group",
    "mark_incident_step",
    "mitigate_group",
    "pagerduty_step",
    "pause_step",
    "proceed_gate",
    "psp_param",
    "psp_ticket_number_step",
    "psp_ticket_step",
    "psp_ticket_timeout",
    "reason_param",
    "recorded",
    "recover_group",
    "recovery_step",
    "release_lease_step",
    "remediation_params",
    "reprocess_step",
    "resume_step",
    "rollback_step",
    "scope_step",
    "single_action_dag_args",
    "single_action_params",
    "single_action_scope",
    "snapshot_step",
    "tag_release_step",
    "window_params",
]
