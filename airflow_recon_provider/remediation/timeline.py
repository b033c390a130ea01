"""The incident timeline for the steps that do not record themselves: :class:`RecordStep`
callbacks (success, failure, skip, and a sensor's wait) and the words each step's result is
described with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.i18n import _, format_number, language_scope, ngettext
from airflow_recon_provider.remediation.run_request import SCOPE_TASK_ID, RunRequest

if TYPE_CHECKING:
    from airflow.sdk import Context


log = logging.getLogger(__name__)

# -- the incident timeline for steps that do not record themselves -------------------------------


def describe_reprocess(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
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


def describe_correction(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
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


def describe_psp_ticket(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
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


def describe_release(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
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


def describe_recovery(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
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


__all__ = [
    "RecordStep",
    "describe_correction",
    "describe_psp_ticket",
    "describe_recovery",
    "describe_release",
    "describe_reprocess",
    "recorded",
]
