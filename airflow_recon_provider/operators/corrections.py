"""Finance-approved data correction (runbook, Mitigação 2 "Correção de Dados").

:class:`TransactionCorrectionOperator` is one task that walks the runbook step:

1. **dry run** (``execute``): the divergence report of the PSP and window is turned into
   proposed corrections by the correction policy; the proposals go to a CSV artifact and to
   ``recon.correction_proposals`` under a deterministic correction key; the summary (never
   the rows) goes to XCom. With ``dry_run`` the task stops here.
2. **finance approval**: the task itself is a Human-in-the-loop task
   (:class:`~airflow.providers.standard.operators.hitl.HITLOperator`, options Approve /
   Reject). The request shows each currency's count and amount (never one sum across
   currencies), the converted total in the reporting currency with the rates used (and the
   currencies without a rate, named), and a sample of the dry run; approvers can
   be assigned; without an answer within ``approval_timeout`` the answer is Reject.
3. **apply** (``execute_complete``): refused if the answer comes from the user who
   triggered the run (or from someone not assigned); otherwise the stored correction set
   is applied in one database transaction (``CorrectionsHook.apply``) and the result goes
   to XCom.

Why one task and not three: the approval must refer to exactly the rows of its dry run and
the apply to exactly the approved set, and the simplest way to make that impossible to
mis-wire is to carry the correction key from the dry run to the apply inside one task
instance (in the HITL resume arguments) — the remediation DAG and the single-action
``billing_gateway_data_correction`` DAG then use the same single task and cannot be wired
in a way that skips a step. The proposals live in PostgreSQL, not in the worker, so the
resume may run on any worker. A worker lost while applying rolls the transaction back; the
task's retry starts again from the dry run (and asks finance again), and a correction set
already committed is never applied twice (``recon.corrections`` is unique per correction
key and transaction, and a corrected row no longer matches its "before" state).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.operators._context import run_actor
from airflow_recon_provider.operators._scoped import ScopeInputs
from airflow_recon_provider.reconciliation.corrections import (
    DEFAULT_APPROVAL_TIMEOUT,
    DEFAULT_ROW_CAP,
    DEFAULT_SAMPLE_SIZE,
    CorrectionPolicy,
    Decision,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.hooks.corrections import CorrectionsHook
    from airflow_recon_provider.reconciliation.corrections import DryRun

#: the legacy environment variable naming a local artifacts directory (see artifacts.py)
ARTIFACTS_ENV = "RECON_ARTIFACTS_DIR"


def _as_timedelta(value: timedelta | float | None) -> timedelta:
    if isinstance(value, bool) or value is None:
        raise ValueError(
            "approval_timeout must be a positive duration: without an answer, the answer is Reject"
        )
    delta = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    if delta <= timedelta(0):
        raise ValueError(f"approval_timeout must be positive, got {value!r}")
    return delta


def _hitl_users(approvers: Sequence[str | Mapping[str, str]] | str | None) -> list[dict[str, str]]:
    if approvers is None:
        return []
    if isinstance(approvers, str | Mapping):
        approvers = [approvers]
    users = []
    for approver in approvers:
        if isinstance(approver, str) and approver.strip():
            users.append({"id": approver.strip(), "name": approver.strip()})
        elif isinstance(approver, Mapping) and (approver.get("id") or approver.get("name")):
            ident = str(approver.get("id") or approver.get("name"))
            users.append({"id": ident, "name": str(approver.get("name") or ident)})
        else:
            raise ValueError(f"approver {approver!r} must be a user id or {{'id': ..., 'name': ...}}")
    return users


class TransactionCorrectionOperator(ScopeInputs, HITLOperator):
    """Dry run -> finance approval -> atomic apply -> audit of gateway transaction corrections.

    Runbook, Mitigação 2 "Correção de Dados". The task writes the dry run, then waits (in
    ``awaiting_input``) for finance to Approve or Reject it in the Airflow UI (Required
    actions), then applies exactly the approved set. See the module docstring for the
    design; what each outcome leaves:

    - ``dry_run``: the CSV artifact (in the artifact store, recorded in ``recon.artifacts``;
      XCom, the timeline and the approval text carry its dashboard link) and
      ``recon.correction_proposals`` rows, no change to
      payment data; returns ``{"outcome": "dry_run", ...}``.
    - nothing to correct: returns ``{"outcome": "nothing_to_correct", ...}`` without asking.
    - more proposals than ``row_cap``: :class:`RowCapExceededError` before anyone is asked.
    - Reject, or no answer in ``approval_timeout``: nothing applied, an incident event,
      ``{"outcome": "rejected" | "timed_out", ...}``; the task succeeds (a decision is not a
      failure).
    - approval by the user who triggered the run, or by someone not in ``approvers``:
      :class:`SelfApprovalError` / :class:`ApproverNotAssignedError`, nothing applied, the
      task fails (a retry asks again).
    - Approve: ``CorrectionsHook.apply`` in one transaction; returns
      ``{"outcome": "applied", "result": {applied, already_applied, conflicts, skipped, ...}}``.

    :param psp: the PSP whose gateway transactions are corrected.
    :param window_start: start of the window (ISO 8601 with offset, inclusive).
    :param window_end: end of the window (exclusive).
    :param divergence_kinds: kinds to consider (list or comma-separated); empty means all.
        Kinds the policy does not correct are counted in the dry run as needing a PSP
        ticket or a person.
    :param incident_id: the incident (e.g. ``INCIDENT-472``): the correction key is scoped to
        it, and its timeline gets the dry run, the decision and the apply.
    :param dry_run: stop after the dry run (no approval, nothing applied).
    :param row_cap: most transactions one approval may correct in this run.
    :param approvers: users who may approve (ids, or ``{"id", "name"}``); any user with
        access when omitted. Not templated on purpose: a run's conf must not choose its
        own approvers.
    :param approval_timeout: how long finance has to answer (``timedelta`` or seconds);
        after it the answer is Reject.
    :param policy: which kinds are corrected and to which status
        (:class:`CorrectionPolicy` or its dict form); default: ``status_mismatch`` takes the
        PSP's mapped status, nothing else is corrected.
    :param artifacts_dir: another artifact store base for the dry-run CSV (a directory or a
        URL such as ``s3://bucket/prefix``); default ``[recon] artifacts_base_url`` (see
        :mod:`airflow_recon_provider.artifacts`). The CSV is ``<base>/<dag_id>/<run_id>/
        correction_<key>.csv``, written once.
    :param sample_size: proposals shown to the approver.
    :param subject: headline of the approval request; default: PSP, then each currency's
        count and amount.
    :param billing_gateway_conn_id: connection of the gateway database (the primary).
    """

    template_fields: Sequence[str] = (
        "psp",
        "window_start",
        "window_end",
        "divergence_kinds",
        "incident_id",
        "dry_run",
        "row_cap",
        "artifacts_dir",
        "subject",
    )
    ui_color = "#fde7e9"

    APPROVE = "Approve"
    REJECT = "Reject"
    #: HITL arguments this operator decides itself
    FIXED_ARGS = (
        "options",
        "defaults",
        "multiple",
        "body",
        "assigned_users",
        "response_timeout",
    )

    def __init__(
        self,
        *,
        psp: str,
        window_start: str,
        window_end: str,
        divergence_kinds: Sequence[str] | str | None = None,
        incident_id: str | None = None,
        dry_run: bool | str = False,
        row_cap: int | str | None = DEFAULT_ROW_CAP,
        approvers: Sequence[str | Mapping[str, str]] | str | None = None,
        approval_timeout: timedelta | float = DEFAULT_APPROVAL_TIMEOUT,
        policy: CorrectionPolicy | Mapping[str, Any] | None = None,
        artifacts_dir: str | None = None,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        subject: str | None = None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        fixed = [arg for arg in self.FIXED_ARGS if arg in kwargs]
        if fixed:
            raise ValueError(f"TransactionCorrectionOperator sets {', '.join(fixed)} itself")
        assigned = _hitl_users(approvers)
        super().__init__(
            subject=subject or "Approve data correction of PSP {{ task.psp }}",
            options=[self.APPROVE, self.REJECT],
            # the timeout answer: the scheduler's awaiting_input sweep writes the defaults as
            # the response, so a request nobody answers is a Reject, never an Approve
            defaults=[self.REJECT],
            multiple=False,
            assigned_users=assigned or None,
            response_timeout=_as_timedelta(approval_timeout),
            **kwargs,
        )
        self.psp = psp
        self.window_start = window_start
        self.window_end = window_end
        self.divergence_kinds = divergence_kinds
        self.incident_id = incident_id
        self.dry_run = dry_run
        self.row_cap = row_cap
        self.approvers = [u["id"] for u in assigned]
        self.approval_timeout = self.response_timeout
        # validated now: a bad policy is a DAG import error, not a failure at 3 a.m.
        self.policy = CorrectionPolicy.coerce(policy)
        self.artifacts_dir = artifacts_dir
        self.sample_size = sample_size
        self.custom_subject = subject is not None
        self.billing_gateway_conn_id = billing_gateway_conn_id

    # -- helpers -----------------------------------------------------------------------------
    def _hook(self) -> CorrectionsHook:
        from airflow_recon_provider.hooks.corrections import CorrectionsHook

        return CorrectionsHook(billing_gateway_conn_id=self.billing_gateway_conn_id)

    def _record(self, hook: CorrectionsHook, *, incident_id: str | None, outcome: str, **event: Any) -> None:
        """An incident event for a step that changed no payment data; never hides the step."""
        if not incident_id:
            return
        try:
            if not hook.record_decision(incident_id=incident_id, outcome=outcome, **event):
                self.log.warning(
                    "Incident %s not found: correction step %s not on its timeline", incident_id, outcome
                )
        except Exception:
            self.log.exception("Could not record correction step %s on incident %s", outcome, incident_id)

    # -- 1. dry run, then ask ------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import TaskAwaitingInput, TaskDeferred

        from airflow_recon_provider.artifacts import spool_file
        from airflow_recon_provider.i18n import language_scope
        from airflow_recon_provider.operators._artifacts import publish_artifact
        from airflow_recon_provider.reconciliation.corrections import (
            approval_body,
            approval_subject,
            check_row_cap,
            correction_scope,
            parse_row_cap,
            per_currency_text,
        )

        hook = self._hook()
        psp = self.scope_psp()
        window = self.scope_window(hook.config)
        kinds = self.scope_kinds()
        dry_run = self.flag("dry_run")
        row_cap = parse_row_cap(self.row_cap)
        incident_id = self.scope_incident_id()
        run_id = context["run_id"]
        # who asked: the user who triggered the run; runs nobody triggered by hand (schedule,
        # the divergence watch) are requested by their DAG
        requested_by = run_actor(context)
        scope = correction_scope(incident_id=incident_id, dag_id=context["ti"].dag_id, run_id=run_id)

        with spool_file("dry-run") as spool:
            spool.mkdir()
            dry = hook.dry_run(
                psp,
                window,
                kinds,
                policy=self.policy,
                scope=scope,
                run_id=run_id,
                requested_by=requested_by,
                incident_id=incident_id,
                artifact_dir=spool,
                sample_size=self.sample_size,
                row_cap=row_cap,
            )
            # the proposals are committed; the CSV goes to the artifact store, and what
            # leaves this task (XCom, timeline, approval text) is its dashboard link
            record = publish_artifact(
                context,
                kind="dry_run",
                name=f"correction_{dry.correction_key}.csv",
                source=str(dry.artifact),
                psp=psp,
                incident_id=incident_id,
                base_url=self.optional_text("artifacts_dir"),
                billing_gateway_conn_id=self.billing_gateway_conn_id,
            )
        dry = replace(dry, artifact=record.link, artifact_record=record.summary())
        summary = dry.as_dict()
        context["ti"].xcom_push(key="dry_run", value=summary)
        base = {
            "psp": psp,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "incident_id": incident_id,
            "correction_key": dry.correction_key,
            "requested_by": requested_by,
            "dry_run": summary,
        }
        if dry_run:
            outcome = "dry_run"
        elif not dry.proposal_count:
            outcome = "nothing_to_correct"
        elif dry.row_cap_exceeded:
            outcome = "row_cap_exceeded"
        else:
            outcome = "approval_requested"
        self._record(
            hook,
            incident_id=incident_id,
            outcome=outcome,
            actor=requested_by,
            run_id=run_id,
            details=self._event_details(dry),
        )
        if dry_run:
            self.log.info("Dry run only: nothing asked, nothing applied. Artifact: %s", dry.artifact)
            return {**base, "outcome": "dry_run"}
        if not dry.proposal_count:
            self.log.info("Nothing to correct automatically for PSP %s in %s", psp, window)
            return {**base, "outcome": "nothing_to_correct"}
        check_row_cap(dry.proposal_count, row_cap)

        # what finance reads, in [recon] language (pt-BR by default)
        with language_scope():
            self.body = approval_body(
                dry,
                requested_by=requested_by,
                run_id=run_id,
                incident_id=incident_id,
                timeout=self.response_timeout,
                approvers=self.approvers,
            )
            if not self.custom_subject:
                self.subject = approval_subject(dry)
        self.hitl_summary_extra.update({"correction_key": dry.correction_key, "psp": psp})
        self.log.info(
            "Asking finance to approve correction set %s (%d transaction(s): %s); requested by %s",
            dry.correction_key,
            dry.proposal_count,
            per_currency_text(dry.by_currency),
            requested_by,
        )
        try:
            super().execute(context)
        except (TaskAwaitingInput, TaskDeferred) as waiting:
            # what the resumed task applies: the key of this dry run, never a recomputation
            waiting.kwargs = {**(waiting.kwargs or {}), "correction": {**base, "row_cap": row_cap}}
            raise
        raise RuntimeError("the Human-in-the-loop request did not pause the task")  # pragma: no cover

    @staticmethod
    def _event_details(dry: DryRun) -> dict[str, Any]:
        summary = dry.as_dict()
        # counts, and amounts per currency in their own minor units (never summed across
        # currencies); the converted figures with the rates they used
        keep = (
            "correction_key",
            "proposal_count",
            "by_currency",
            "by_kind",
            "manual_count",
            "manual_by_currency",
            "reporting_currency",
            "proposal_converted_amount_minor",
            "manual_converted_amount_minor",
            "fx_rates",
            "unconverted_currencies",
            "artifact",
            "artifact_record",
            "row_cap",
        )
        return {k: summary[k] for k in keep}

    # -- 2./3. the answer, then apply -------------------------------------------------------------
    def _decision(self, event: Mapping[str, Any]) -> tuple[Decision, Mapping[str, Any] | None]:
        if "error" in event:
            if event.get("error_type") == "timeout":
                return Decision.TIMED_OUT, None
            self.process_trigger_event_error(dict(event))
        chosen = list(event.get("chosen_options") or [])
        self.validate_chosen_options(chosen)
        responder = event.get("responded_by_user")
        # the timeout sweep answers with the defaults and no user: never an approval
        if event.get("timedout") or not responder:
            return Decision.TIMED_OUT, None
        return (Decision.APPROVED if chosen == [self.APPROVE] else Decision.REJECTED), responder

    def execute_complete(
        self, context: Context, event: dict[str, Any], correction: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from airflow_recon_provider.reconciliation.corrections import check_approver, user_label
        from airflow_recon_provider.reconciliation.errors import ApprovalRefusedError, ReconError

        if not correction or not correction.get("correction_key"):
            raise ReconError("the approval came back without its correction set: nothing applied; re-run")
        key = correction["correction_key"]
        incident_id = correction.get("incident_id")
        requested_by = correction["requested_by"]
        run_id = context["run_id"]
        hook = self._hook()
        decision, responder = self._decision(event)
        who = user_label(responder) or "nobody (timeout)"
        self.hitl_summary_extra.update({"decision": decision.value, "correction_key": key})
        if decision is not Decision.APPROVED:
            self.log.warning("Correction set %s %s by %s: nothing applied", key, decision.value, who)
            self._record(
                hook,
                incident_id=incident_id,
                outcome=decision.value,
                actor=who,
                run_id=run_id,
                details={"correction_key": key, "requested_by": requested_by},
            )
            return {**correction, "outcome": decision.value, "decided_by": who, "result": None}
        try:
            approved_by = check_approver(
                requested_by=requested_by, responder=responder, approvers=self.assigned_users
            )
        except ApprovalRefusedError as refused:
            self.log.error("Approval of correction set %s refused: %s", key, refused)
            self._record(
                hook,
                incident_id=incident_id,
                outcome="approval_refused",
                actor=who,
                run_id=run_id,
                details={"correction_key": key, "requested_by": requested_by, "reason": str(refused)},
            )
            raise
        # the stored dry run of the key finance approved, read and checked by the apply itself
        result = hook.apply(
            psp=correction["psp"],
            correction_key=key,
            requested_by=requested_by,
            approved_by=approved_by,
            run_id=run_id,
            incident_id=incident_id,
            row_cap=correction.get("row_cap"),
        )
        if result.conflicts:
            self.log.warning(
                "%d transaction(s) changed since the dry run and were left as they are: %s",
                len(result.conflicts),
                json.dumps([c.as_dict() for c in result.conflicts[:20]]),
            )
        return {
            **correction,
            "outcome": "applied",
            "approved_by": approved_by,
            "decided_by": approved_by,
            "result": result.as_dict(),
        }


__all__ = ["ARTIFACTS_ENV", "DEFAULT_APPROVAL_TIMEOUT", "TransactionCorrectionOperator"]
