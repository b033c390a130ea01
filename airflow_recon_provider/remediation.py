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
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param, TaskGroup

from airflow_recon_provider.i18n import N_, _, format_number, language_scope, ngettext
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.corrections import DEFAULT_APPROVAL_TIMEOUT
from airflow_recon_provider.reconciliation.inputs import parse_bool
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
from airflow_recon_provider.reconciliation.remediation import (
    RemediationRequestError,
    RemediationStep,
)
from airflow_recon_provider.reconciliation.window import (
    ZONED_TIMESTAMP_FORMAT,
    ZONED_TIMESTAMP_PATTERN,
    max_window_hours,
)

if TYPE_CHECKING:
    from airflow.providers.standard.operators.python import BranchPythonOperator, ShortCircuitOperator
    from airflow.sdk import BaseOperator, Context

    from airflow_recon_provider.operators.investigation import ValidateScopeOperator

log = logging.getLogger(__name__)

#: the first task of a remediation run (in the ``investigate`` group)
SCOPE_TASK_ID = "investigate.scope"
#: the release operators' mode: ``local`` (development, demo) when the Airflow Variable
#: ``recon_release_mode`` (or ``AIRFLOW_VAR_RECON_RELEASE_MODE``) says so, else a pod
RELEASE_MODE = "{{ var.value.get('recon_release_mode', 'kubernetes') }}"
#: who may approve data corrections: user ids, comma separated (empty: anyone but the requester)
APPROVERS_ENV = "RECON_FINANCE_APPROVERS"
PSP_NAME_PATTERN = r"^[a-z0-9][a-z0-9_]{0,62}$"
INCIDENT_ID_PATTERN = r"^INCIDENT-\d+$"


# -- the form ----------------------------------------------------------------------------------


def psp_param(config: ReconConfig | None = None) -> Param:
    """The PSP field: a pick list of the configured PSPs with their display names; without a
    configured list, a PSP name (checked against ``payment_intents`` by the scope step)."""
    problem = None
    if config is None:
        config, problem = ReconConfig.load_for_form()
    if problem is not None:
        # the form still opens: it says why every run will be refused until RECON_CONFIG is fixed
        return Param(
            type="string",
            pattern=PSP_NAME_PATTERN,
            title="PSP",
            description=_(
                "ATTENTION: the reconciliation configuration (RECON_CONFIG) could not be read: "
                "%(problem)s. Every run is refused at its first step until it is fixed.",
                problem=problem,
            ),
        )
    if config.psps:
        return Param(
            type="string",
            enum=config.psp_names,
            values_display={p.name: p.display_name for p in config.psps},
            title="PSP",
            description=_("The payment service provider (PSP) whose reconciliation diverges."),
        )
    return Param(
        type="string",
        pattern=PSP_NAME_PATTERN,
        title="PSP",
        description=_(
            "The payment service provider (PSP) whose reconciliation diverges, as in "
            "payment_intents.provider: format lower-case letters, digits and _, e.g. stripe."
        ),
    )


def window_params(config: ReconConfig | None = None, *, typed: bool = False) -> dict[str, Param]:
    """The window fields.

    ``typed`` (the remediation and single-action forms): the start and end are typed as text
    with their zone (``Z`` or an offset; the JSON-schema pattern refuses a time without one),
    never through Airflow's date picker, which reads and writes the UI's time zone without
    showing it (with the UI in America/Sao_Paulo a window typed in UTC landed three hours
    late); the end may be left empty and the window given as a start plus a duration in
    whole hours, bounded by the configured maximum (the form's number field cannot go past
    it). The scope step echoes the window in UTC and in America/Sao_Paulo and refuses, at
    once and in words, what the form could not (end before start, end and duration that
    disagree). Without ``typed`` (forms of other owners): the date-time fields as before.
    """
    if not typed:
        return {
            "window_start": Param(
                type="string",
                format="date-time",
                title="Window start",
                description=(
                    "Start of the affected period (inclusive), with its time zone, e.g. 2026-11-20T10:00Z."
                ),
            ),
            "window_end": Param(
                type="string",
                format="date-time",
                title="Window end",
                description=(
                    "End of the affected period (exclusive), after the start; at most the configured "
                    "maximum window (31 days by default)."
                ),
            ),
        }
    config = config if config is not None else ReconConfig.load_for_form()[0]
    hours = max_window_hours(config.max_window)
    return {
        "window_start": Param(
            type="string",
            pattern=ZONED_TIMESTAMP_PATTERN,
            title=_("Window start (with its zone: Z = UTC)"),
            description=_(
                "Start of the affected period (inclusive), typed with its time zone: %(format)s. "
                "E.g. 2026-12-06T22:00Z is 22:00 UTC = 19:00 in America/Sao_Paulo. Without a zone the "
                "request is refused. The first task (investigate.scope) and the run's note repeat the "
                "window in UTC and in America/Sao_Paulo.",
                format=_(ZONED_TIMESTAMP_FORMAT),
            ),
            examples=["2026-12-06T22:00Z", "2026-12-06T19:00-03:00"],
        ),
        "window_hours": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=hours,
            title=_("Duration (hours)"),
            description=_(
                "Duration of the window in whole hours, 1 to %(max)s (the configured maximum). Give the "
                "duration or the window end; with both, they must agree.",
                max=hours,
            ),
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            pattern=ZONED_TIMESTAMP_PATTERN,
            title=_("Window end (with its zone; optional with the duration)"),
            description=_(
                "End of the affected period (exclusive), after the start, in the same format: "
                "%(format)s. Leave it empty to use the duration.",
                format=_(ZONED_TIMESTAMP_FORMAT),
            ),
            examples=["2026-12-07T01:00Z", "2026-12-06T22:00-03:00"],
        ),
    }


def incident_param(description: str | None = None) -> Param:
    return Param(
        None,
        type=["null", "string"],
        pattern=INCIDENT_ID_PATTERN,
        title=_("Incident (INCIDENT-<number>)"),
        description=description
        or _(
            "Format: INCIDENT-<number>, in capitals and without spaces, e.g. INCIDENT-472. Empty: the "
            "PSP's open incident, or a new one (a dry run never opens an incident)."
        ),
    )


def reason_param() -> Param:
    return Param(
        "",
        type="string",
        maxLength=500,
        title=_("Reason"),
        description=_(
            "Why, in your words (up to 500 characters; kept on the incident and in recon.controls)."
        ),
    )


def divergence_kinds_param() -> Param:
    kinds = [kind.value for kind in ALL_KINDS]
    return Param(
        kinds,
        type="array",
        items={"type": "string", "enum": kinds},
        examples=kinds,
        values_display={kind.value: kind.label.capitalize() for kind in ALL_KINDS},
        uniqueItems=True,
        minItems=1,
        title=_("Divergence kinds"),
        description=_("The kinds of divergence in scope (missing capture, duplicated settlement, ...)."),
    )


def remediation_params(config: ReconConfig | None = None) -> dict[str, Param]:
    """The ``billing_gateway_remediation`` form: what a finance analyst fills in the UI, in the
    configured language (``[recon] language``) when the DAG file is parsed."""
    with language_scope():
        return _remediation_params(config)


def _remediation_params(config: ReconConfig | None) -> dict[str, Param]:
    return {
        "psp": psp_param(config),
        **window_params(config, typed=True),
        "divergence_kinds": divergence_kinds_param(),
        "incident_id": incident_param(),
        "dry_run": Param(
            True,
            type="boolean",
            title=_("Dry run"),
            description=_(
                "Investigate and propose corrections only (a CSV to review): nothing is paused, "
                "reprocessed or applied. Untick to run the runbook for real: it pauses the PSP's "
                "automatic reconciliation, tells finance and opens an incident when there is none."
            ),
        ),
        "after_release": Param(
            False,
            type="boolean",
            title=_("Broke after a release"),
            description=_(
                "The reconciliation broke after a release of the worker: roll it back (Mitigation 3)."
            ),
        ),
        "reason": reason_param(),
    }


def finance_approvers() -> list[str] | None:
    """Approvers of data corrections from ``$RECON_FINANCE_APPROVERS`` (comma separated)."""
    names = [n.strip() for n in os.environ.get(APPROVERS_ENV, "").split(",") if n.strip()]
    return names or None


@dataclass(frozen=True)
class FormFields:
    """Templates that read a request from the run's Params (and so from its conf). The scope
    step validates what they render."""

    psp: str = "{{ params.psp }}"
    window_start: str = "{{ params.get('window_start') or '' }}"
    window_end: str = "{{ params.get('window_end') or '' }}"
    window_hours: str = "{{ params.get('window_hours') or '' }}"
    divergence_kinds: str = "{{ (params.get('divergence_kinds') or []) | join(',') }}"
    incident_id: str = "{{ params.get('incident_id') or '' }}"
    dry_run: str = "{{ params.get('dry_run', True) }}"
    after_release: str = "{{ params.get('after_release', False) }}"
    reason: str = "{{ params.get('reason') or '' }}"


class _ScopeValue:
    """A :class:`RunRequest` attribute: the template that reads ``key`` of the scope step's
    XCom, as text (``''`` when absent) or, with ``flag``, as a boolean with that default."""

    def __init__(self, key: str, *, flag: bool | None = None) -> None:
        self.key = key
        self.flag = flag

    def __get__(self, request: RunRequest | None, owner: type | None = None) -> Any:
        if request is None:
            return self
        if self.flag is None:
            return request.field(self.key)
        return f"{{{{ {request.scope_xcom}.get('{self.key}', {self.flag}) }}}}"


@dataclass(frozen=True)
class RunRequest:
    """Templates that give a step the run's validated request: the XCom of the scope step.

    :param scope_task_id: the task id of the :class:`ValidateScopeOperator` of the DAG.
    """

    scope_task_id: str = SCOPE_TASK_ID

    psp = _ScopeValue("psp")
    window_start = _ScopeValue("window_start")
    window_end = _ScopeValue("window_end")
    divergence_kinds = _ScopeValue("divergence_kinds_csv")
    psp_ticket_kinds = _ScopeValue("psp_ticket_kinds_csv")
    incident_id = _ScopeValue("incident_id")
    reason = _ScopeValue("reason")
    #: a request that cannot be read is a dry run: never change anything by accident
    dry_run = _ScopeValue("dry_run", flag=True)
    after_release = _ScopeValue("after_release", flag=False)

    @property
    def scope_xcom(self) -> str:
        """The Jinja expression of the scope step's XCom (an empty dict when missing)."""
        return f"(ti.xcom_pull(task_ids='{self.scope_task_id}') or {{}})"

    def field(self, key: str, default: str = "") -> str:
        return f"{{{{ {self.scope_xcom}.get('{key}') or '{default}' }}}}"


# -- the incident timeline for steps that do not record themselves -------------------------------


def _describe_reprocess(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    cycles = result.get("cycles") or []
    text = ngettext(
        "%(done)s of %(num)s cycle of %(start)s - %(end)s reprocessed in Airflow",
        "%(done)s of %(num)s cycles of %(start)s - %(end)s reprocessed in Airflow",
        len(cycles),
        done=format_number(int(result.get("succeeded_count") or 0)),
        start=result.get("window_start"),
        end=result.get("window_end"),
    )
    if result.get("fallback_count"):
        text += ", " + _(
            "%(count)s sent to billing-gateway-core",
            count=format_number(int(result["fallback_count"])),
        )
    states = [{"cycle_start": c.get("cycle_start"), "state": c.get("state")} for c in cycles]
    return text, {"cycles": states, "all_resolved": result.get("all_resolved")}


def _describe_correction(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    outcome = result.get("outcome")
    dry = result.get("dry_run") or {}
    details = {
        "outcome": outcome,
        "correction_key": result.get("correction_key"),
        "artifact": dry.get("artifact_record") or dry.get("artifact"),
    }
    if outcome == "applied":
        applied = int((result.get("result") or {}).get("applied", 0))
        text = ngettext(
            "%(num)s correction applied, approved by %(approver)s",
            "%(num)s corrections applied, approved by %(approver)s",
            applied,
            approver=result.get("approved_by"),
        )
        return text, details
    if outcome == "dry_run":
        proposed = int(dry.get("proposal_count", 0))
        text = ngettext(
            "dry run: %(num)s correction proposed in %(artifact)s",
            "dry run: %(num)s corrections proposed in %(artifact)s",
            proposed,
            artifact=_artifact_text(dry.get("artifact_record")),
        )
        return text, details
    if outcome == "nothing_to_correct":
        return _("nothing to correct automatically"), details
    decision = {"rejected": _("rejected"), "timed_out": _("timed out")}.get(str(outcome), str(outcome))
    text = _(
        "correction %(decision)s by %(who)s: nothing applied",
        decision=decision,
        who=result.get("decided_by") or _("nobody"),
    )
    return text, details


def _artifact_text(artifact: Any) -> str:
    """An artifact of a step's result (``ArtifactRecord.summary()``) for the timeline: its
    name and dashboard link, never a storage path."""
    if isinstance(artifact, Mapping) and artifact.get("link"):
        return f"{artifact.get('name')} ({artifact['link']})"
    return _("no artifact")


def _describe_psp_ticket(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    artifact = result.get("artifact")
    text = ngettext(
        "%(num)s divergent transaction for the PSP in %(artifact)s",
        "%(num)s divergent transactions for the PSP in %(artifact)s",
        int(result.get("rows") or 0),
        artifact=_artifact_text(artifact),
    )
    if result.get("psp_ticket"):
        text += " " + _("(ticket %(ticket)s)", ticket=result["psp_ticket"])
    return text, {
        "artifact": artifact,
        "counts": result.get("counts"),
        "psp_ticket": result.get("psp_ticket"),
    }


def _describe_release(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    action = {"rollback": _("rollback"), "tag": _("tag")}.get(str(result.get("action")), result.get("action"))
    record = (
        _artifact_text(result.get("record"))
        if result.get("record")
        else _("not stored: %(error)s", error=result.get("record_error") or _("unknown error"))
    )
    return (
        _(
            "%(action)s of %(service)s in %(env)s done (%(mode)s mode); release record %(record)s",
            action=action,
            service=result.get("service"),
            env=result.get("env"),
            mode=result.get("mode"),
            record=record,
        ),
        {
            key: result.get(key)
            for key in ("action", "service", "env", "mode", "pod", "record", "record_error")
        },
    )


def _decision_figures(result: Mapping[str, Any]) -> Any:
    """The figures a decision used (the recovery sensor's result: converted amount, each
    currency's own figures, the rates), or ``None`` when the result does not carry them."""
    from airflow_recon_provider.reconciliation.figures import Figures
    from airflow_recon_provider.reconciliation.incidents import IncidentInputError

    if "divergent_amount_minor" not in result or "by_currency" not in result:
        return None
    try:
        return Figures.from_dict(result)
    except IncidentInputError as exc:
        log.warning("the step's result has malformed figures: %s", exc)
        return None


def _describe_recovery(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The runbook's three recovery criteria, each with its figures (the ledger's beside the
    statement's and the gateway's); the whole check in the details (the closing report's)."""
    from airflow_recon_provider.reconciliation.recovery import recovery_criteria

    met = result.get("status") == "recovered"
    criteria = "; ".join(criterion.text() for criterion in recovery_criteria(result))
    return (
        _("recovery criteria met: %(criteria)s", criteria=criteria)
        if met
        else _("recovery criteria not met yet: %(criteria)s", criteria=criteria),
        {
            "latest_cycle_states": result.get("latest_cycle_states"),
            "checked_at": result.get("checked_at"),
            "recovery": dict(result),
        },
    )


@dataclass(frozen=True)
class RecordStep:
    """A task callback that appends the task's outcome to the run's incident timeline: the
    step, what came of it, the divergence % and amount at that moment, who, which run.

    Attach it as ``on_success_callback`` / ``on_failure_callback`` / ``on_skipped_callback``
    (see :func:`recorded`). It never changes the step's outcome: a problem recording the
    event is logged. Runs without an incident (a dry run without one) record nothing.

    :param step: the runbook step (:class:`RemediationStep`).
    :param state: the task state it is attached to: ``success``, ``failed`` or ``skipped``;
        ``waiting``: called with the task's result while it waits (the recovery sensor's
        ``on_wait``).
    :param describe: result (the task's XCom) -> ``(outcome text, details)``.
    :param scope_task_id: where the run's request and incident are (the scope step's XCom).
    :param decision: the task's result carries the figures of its decision (the recovery
        sensor): on success those go on the timeline, with the rates they were converted
        with (DESIGN 3a), rather than figures read again afterwards.
    """

    step: str
    state: str = "success"
    describe: Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]]] | None = None
    scope_task_id: str = SCOPE_TASK_ID
    decision: bool = False

    def __call__(self, context: Context, result: Mapping[str, Any] | None = None) -> None:
        """``result``: the task's result when it is not (yet) its XCom (a sensor's evaluation
        while it waits, state ``waiting``)."""
        try:
            self._record(context, result)
        except Exception:
            log.exception("Could not record step %s on the incident timeline", self.step)

    def _result(self, context: Context, result: Mapping[str, Any] | None) -> Any:
        if result is not None:
            return result
        ti = context["ti"]
        return ti.xcom_pull(task_ids=ti.task_id)

    def _outcome(self, context: Context, given: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
        if self.state in ("success", "waiting"):
            result = self._result(context, given)
            if self.describe is not None and isinstance(result, Mapping):
                return self.describe(result)
            return _("done"), {}
        error = context.get("exception")
        # the error itself is for engineers: as it was raised
        reason = f"{type(error).__name__}: {error}" if error is not None else ""
        if self.state == "skipped":
            if error is not None and str(error):
                return _("skipped: %(why)s", why=error), {}
            return _("skipped"), {}
        return (_("failed: %(why)s", why=reason) if reason else _("failed")), {"error": reason}

    def _record(self, context: Context, given: Mapping[str, Any] | None = None) -> None:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import run_actor, run_id_of
        from airflow_recon_provider.reconciliation.window import Window

        ti = context["ti"]
        scope = ti.xcom_pull(task_ids=self.scope_task_id) or {}
        incident_id = scope.get("incident_id")
        if not incident_id:
            return
        with language_scope():  # the timeline keeps the text in the configured language
            outcome, details = self._outcome(context, given)
        hook = IncidentHook()
        figures = None
        if self.decision and self.state in ("success", "waiting"):
            result = self._result(context, given)
            figures = _decision_figures(result) if isinstance(result, Mapping) else None
        if figures is None:
            figures = hook.gateway.summary(
                scope["psp"], Window.parse(scope["window_start"], scope["window_end"])
            )
        hook.record_event(
            incident_id,
            step=self.step,
            outcome=outcome,
            actor=run_actor(context),
            run_id=run_id_of(context),
            figures=figures,
            details={"task_id": ti.task_id, "state": self.state, **details},
        )


def recorded(
    step: str,
    describe: Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]]] | None,
    request: RunRequest,
    *,
    decision: bool = False,
) -> dict[str, Any]:
    """Operator arguments that put a step's success, failure and skip on the timeline
    (``decision``: a success records the figures of the task's result, see :class:`RecordStep`)."""
    scope = request.scope_task_id
    return {
        "on_success_callback": RecordStep(step, "success", describe, scope, decision),
        "on_failure_callback": RecordStep(step, "failed", None, scope),
        "on_skipped_callback": RecordStep(step, "skipped", None, scope),
    }


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
        **recorded(RemediationStep.REPROCESS, _describe_reprocess, request),
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
        **recorded(RemediationStep.CORRECTION, _describe_correction, request),
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
        **recorded(RemediationStep.ROLLBACK, _describe_release, request),
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
        **recorded(RemediationStep.PSP_TICKET, _describe_psp_ticket, request),
        **kwargs,
    )


#: how long on-call is asked for the PSP ticket number, in minutes (default 60)
PSP_TICKET_TIMEOUT_ENV = "RECON_PSP_TICKET_TIMEOUT_MINUTES"


def psp_ticket_timeout() -> timedelta:
    """The PSP ticket number's deadline from ``$RECON_PSP_TICKET_TIMEOUT_MINUTES`` (default 1 hour)."""
    import math

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

    kwargs.setdefault("response_timeout", psp_ticket_timeout())
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
        RecordStep(RemediationStep.RECOVERY, "waiting", _describe_recovery, request.scope_task_id, True),
    )
    return RecoverySensor(
        task_id=task_id,
        psp=request.psp,
        window_start=request.window_start,
        window_end=request.window_end,
        poll_interval=poll_interval,
        timeout=timeout.total_seconds(),
        # the recovery decision's own figures and rates go on the timeline (DESIGN 3a)
        **recorded(RemediationStep.RECOVERY, _describe_recovery, request, decision=True),
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
        **recorded(RemediationStep.TAG_RELEASE, _describe_release, request),
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
    "NEVER_OPENS",
    "OPENS_ON_PAUSE",
    "OPENS_UNLESS_DRY_RUN",
    "PSP_TICKET_TIMEOUT_ENV",
    "RELEASE_MODE",
    "SCOPE_TASK_ID",
    "SINGLE_ACTION_FORM",
    "SINGLE_ACTION_SCOPE_TASK_ID",
    "FormFields",
    "IncidentRule",
    "RecordStep",
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
