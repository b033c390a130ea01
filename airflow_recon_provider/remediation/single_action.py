"""The single-action DAGs' kit: their forms, the scope step and its incident rule, the action
branch, and the DAG arguments they share.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param

from airflow_recon_provider.i18n import N_, _, language_scope
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.remediation import RemediationRequestError
from airflow_recon_provider.remediation.params import (
    divergence_kinds_param,
    incident_param,
    psp_param,
    reason_param,
    window_params,
)
from airflow_recon_provider.remediation.run_request import FormFields, RunRequest
from airflow_recon_provider.remediation.steps import scope_step

if TYPE_CHECKING:
    from airflow.providers.standard.operators.python import BranchPythonOperator
    from airflow.sdk import BaseOperator

    from airflow_recon_provider.operators.investigation import ValidateScopeOperator

log = logging.getLogger(__name__)

# -- the single-action DAGs ------------------------------------------------------------------------
#
# ``billing_gateway_reprocess``, ``billing_gateway_data_correction``,
# ``billing_gateway_reconciliation_control`` and ``billing_gateway_release_rollback`` run one
# runbook step alone: ``scope`` (the same validation and incident choice as the remediation's)
# >> the step (the same factory as the remediation's), through a ``choose_action`` branch when
# the form offers two actions. Whether the scope may open an incident is each DAG's
# :class:`IncidentRule`: only an action that changes payment data (a correction that is not a
# dry run) or pauses a PSP opens one; the others record on the PSP's open incident, if any.

#: the form's field choosing the action of a two-action DAG
ACTION_PARAM = "action"
#: the scope step of a single-action DAG: the DAG is one runbook step, no task group
SINGLE_ACTION_SCOPE_TASK_ID = "scope"
#: a single-action form without a ``dry_run`` field is a real run: the person chose the action
SINGLE_ACTION_FORM = FormFields(dry_run="{{ params.get('dry_run', False) }}")


@dataclass(frozen=True)
class IncidentRule:
    """When the scope of a single-action DAG may open an incident for a PSP that has none,
    and how the form's incident field says so.

    :param open_incident: the scope's ``open_incident`` (a bool, or a template over the form).
    :param when: the end of the incident field's description.
    """

    open_incident: bool | str
    when: str

    @property
    def description(self) -> str:
        return _(
            "Format: INCIDENT-<number>, in capitals and without spaces, e.g. INCIDENT-472. Empty: the "
            "PSP's open incident; %(when)s",
            when=_(self.when),
        )


#: reprocess and release actions change no payment data and pause no PSP
NEVER_OPENS = IncidentRule(False, N_("this action never opens one."))
#: a pause freezes finance's reconciliation: an incident; a resume ends one
OPENS_ON_PAUSE = IncidentRule(
    f"{{{{ (params.get('{ACTION_PARAM}') or '') == 'pause' }}}}",
    N_("a pause opens one when there is none, a resume never does."),
)
#: a correction changes payment data (a dry run never opens one)
OPENS_UNLESS_DRY_RUN = IncidentRule(True, N_("a real (not dry) run opens one when there is none."))


def action_param(choices: Mapping[str, str]) -> Param:
    """A required pick list of actions (value -> display name): no default, so that a person
    always says which action they mean (the DAG's documentation says what each does)."""
    return Param(
        type="string",
        enum=list(choices),
        values_display=dict(choices),
        title="Action",
        description="The runbook step to run: " + " or ".join(map(str.lower, choices.values())) + ".",
    )


def single_action_params(
    incidents: IncidentRule,
    *,
    action: Param | None = None,
    fields: Mapping[str, Param] | None = None,
    divergence_kinds: bool = False,
    dry_run: Param | None = None,
    config: ReconConfig | None = None,
) -> dict[str, Param]:
    """The form of a single-action DAG: PSP, window, [action], [the DAG's own fields],
    [divergence kinds], incident, [dry run], reason — the remediation's fields, so the same
    validation. In the configured language (``[recon] language``) when the DAG file is parsed."""
    with language_scope():
        return _single_action_params(
            incidents,
            action=action,
            fields=fields,
            divergence_kinds=divergence_kinds,
            dry_run=dry_run,
            config=config,
        )


def _single_action_params(
    incidents: IncidentRule,
    *,
    action: Param | None,
    fields: Mapping[str, Param] | None,
    divergence_kinds: bool,
    dry_run: Param | None,
    config: ReconConfig | None,
) -> dict[str, Param]:
    params: dict[str, Param] = {"psp": psp_param(config), **window_params(config, typed=True)}
    if action is not None:
        params[ACTION_PARAM] = action
    params.update(fields or {})
    if divergence_kinds:
        params["divergence_kinds"] = divergence_kinds_param()
    params["incident_id"] = incident_param(incidents.description)
    if dry_run is not None:
        params["dry_run"] = dry_run
    params["reason"] = reason_param()
    return params


def single_action_dag_args(doc_md: str | None, *tags: str) -> dict[str, Any]:
    """What every single-action DAG shares besides its id and form; the description is the
    documentation's heading (after its dash)."""
    heading = next((line for line in (doc_md or "").splitlines() if line.strip()), "")
    heading = heading.strip().lstrip("#").strip().split(" — ", 1)[-1].replace("*", "")
    return {
        "description": heading[:1].upper() + heading[1:],
        "doc_md": doc_md,
        "schedule": None,
        "start_date": datetime(2024, 1, 1, tzinfo=UTC),
        "catchup": False,
        # as the remediation's: a step that changes money or tells finance is not retried
        # blindly; each step is idempotent and can be cleared on purpose
        "default_args": {"retries": 0},
        "tags": ["billing-gateway", "reconciliation", "single-action", *tags],
    }


def single_action_scope(
    incidents: IncidentRule, *, lease: bool = False
) -> tuple[ValidateScopeOperator, RunRequest]:
    """The ``scope`` step of a single-action DAG and the request every later step reads.

    :param lease: the step repeats one of the remediation's (reprocess, correction,
        rollback/tag): a real run takes the PSP's remediation lease, so it never runs beside a
        real remediation of the PSP (add :func:`release_lease_step`).
    """
    scope = scope_step(
        SINGLE_ACTION_FORM,
        task_id=SINGLE_ACTION_SCOPE_TASK_ID,
        open_incident=incidents.open_incident,
        lease=lease,
    )
    return scope, RunRequest(SINGLE_ACTION_SCOPE_TASK_ID)


def _branch_for_action(action: Any, choices: Mapping[str, str]) -> str:
    chosen = "" if action is None else str(action).strip().lower()
    if chosen not in choices:
        raise RemediationRequestError(f"action must be one of {', '.join(choices)}, got {action!r}")
    log.info("Action %s: running %s", chosen, choices[chosen])
    return choices[chosen]


def choose_action_step(
    choices: Mapping[str, BaseOperator],
    *,
    task_id: str = "choose_action",
    action: str = f"{{{{ params.get('{ACTION_PARAM}') or '' }}}}",
) -> BranchPythonOperator:
    """A branch that runs the step of the form's action (``{action: step}``) and skips the
    others (a step skipped by a branch runs no callback: nothing on the incident timeline)."""
    from airflow.providers.standard.operators.python import BranchPythonOperator

    branch = BranchPythonOperator(
        task_id=task_id,
        python_callable=_branch_for_action,
        op_kwargs={"action": action, "choices": {name: task.task_id for name, task in choices.items()}},
        doc_md="Run the step of the form's action: " + ", ".join(choices) + ".",
    )
    branch >> list(choices.values())
    return branch


__all__ = [
    "ACTION_PARAM",
    "NEVER_OPENS",
    "OPENS_ON_PAUSE",
    "OPENS_UNLESS_DRY_RUN",
    "SINGLE_ACTION_FORM",
    "SINGLE_ACTION_SCOPE_TASK_ID",
    "IncidentRule",
    "action_param",
    "choose_action_step",
    "single_action_dag_args",
    "single_action_params",
    "single_action_scope",
]
