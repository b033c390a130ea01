"""ReprocessReconciliationOperator — runbook, Mitigação 1 (Reprocessamento).

"Reexecutar DAG no Airflow com Trigger DAG para o intervalo afetado. Se falha persistir,
acionar reconciliação manual pelo serviço core (POST /payments/reconciliation)."

1. For every hourly cycle of ``[window_start, window_end)`` a run of the reconciliation
   DAG is triggered with conf ``{"psp", "cycle_start", "reprocess": true}`` (a PSP paused
   by the containment step is reconciled by these runs, while scheduled runs keep skipping
   it) and a run id deterministic per
   PSP, cycle and remediation task instance: a retry finds its runs instead of
   triggering them twice. Runs are triggered through the Task SDK's execution API, as
   ``TriggerDagRunOperator`` does (see :mod:`airflow_recon_provider.hooks.dag_runs`);
   nothing touches the metadata database.
2. The task defers to :class:`~airflow_recon_provider.triggers.reprocess.ReconciliationRunsTrigger`
   (always with a timeout), so no worker slot is held while the runs execute. When the
   runs already finished (a retry) it does not defer at all.
3. Per-cycle states go to XCom (key ``cycle_states``). A run that succeeded counts only
   when the PSP's ``match_transactions`` ran (a site's own reconciliation DAG may skip a
   paused PSP regardless of the ``reprocess`` flag, which is not a reprocess).
4. Cycles that did not succeed fall back to billing-gateway-core, one request per cycle
   with an ``Idempotency-Key`` per PSP, cycle and remediation task instance.

Result (XCom ``return_value``): ``{"psp", "window_start", "window_end" (the span of the
reprocessed cycles), "cycles": [{"cycle_start", "cycle_end", "run_id", "run_state",
"state", "fallback"}], "all_succeeded", "all_resolved", "succeeded_count",
"fallback_count"}``. ``state`` is ``success``, ``failed``, ``skipped`` (the run succeeded
without reconciling the PSP) or ``timeout``; ``fallback`` is ``None`` or the core's answer
(``{"status": "accepted", "http_status", "job_id", "core_status", "idempotency_key"}`` or
``{"status": "error", "error", "http_status", "idempotency_key"}``). ``all_succeeded``:
every cycle reprocessed in Airflow; ``all_resolved``: every cycle reprocessed or accepted
by the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import BILLING_CORE_CONN_ID, BILLING_GATEWAY_CONN_ID, RECONCILIATION_DAG_ID
from airflow_recon_provider.operators._scoped import ScopedOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.reconciliation.reprocess import CycleRun


def _seconds(value: timedelta | float | int, *, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


class ReprocessReconciliationOperator(ScopedOperator):
    """Re-run the reconciliation DAG for every cycle of a PSP's window, wait for the runs
    without holding a worker slot, and fall back to billing-gateway-core for cycles that
    still fail.

    :param psp: the PSP to reprocess (templated).
    :param window_start: start of the affected window, ISO 8601 with offset (templated).
    :param window_end: end of the window, exclusive (templated); every hourly cycle that
        overlaps ``[window_start, window_end)`` is reprocessed.
    :param reconciliation_dag_id: the DAG that reconciles one cycle given conf
        ``{"psp", "cycle_start", "reprocess"}`` (templated).
    :param verify_task_id: task of that DAG whose success proves the PSP's cycle was
        reconciled; ``None`` trusts the run state alone (a site's own DAG).
    :param wait_timeout: how long to wait for the runs (timedelta or seconds); cycles still
        unfinished then count as ``timeout`` and fall back to the core.
    :param poll_interval: seconds between checks of the runs' states in the triggerer.
    :param max_cycles: most cycles (runs) one task may trigger.
    :param fallback_to_core: ask billing-gateway-core to reconcile cycles that did not succeed.
    :param fail_when_unresolved: fail the task (after recording its result in XCom) when a
        cycle neither succeeded nor was accepted by the core.
    :param billing_core_conn_id: connection of billing-gateway-core.
    :param billing_gateway_conn_id: connection of the gateway database (PSP check, pause state).
    :param core_timeout: seconds per HTTP attempt to the core.
    :param core_max_attempts: HTTP attempts per cycle while the core is unavailable.
    """

    template_fields: Sequence[str] = ("psp", "window_start", "window_end", "reconciliation_dag_id")
    ui_color = "#fce8e6"

    def __init__(
        self,
        *,
        psp: str,
        window_start: str | datetime,
        window_end: str | datetime,
        reconciliation_dag_id: str = RECONCILIATION_DAG_ID,
        verify_task_id: str | None = "match_transactions",
        wait_timeout: timedelta | float = timedelta(hours=2),
        poll_interval: float = 60.0,
        max_cycles: int = 72,
        fallback_to_core: bool = True,
        fail_when_unresolved: bool = True,
        billing_core_conn_id: str = BILLING_CORE_CONN_ID,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        core_timeout: float = 30.0,
        core_max_attempts: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.window_start = window_start
        self.window_end = window_end
        self.reconciliation_dag_id = reconciliation_dag_id
        self.verify_task_id = verify_task_id
        self.wait_timeout = _seconds(wait_timeout, name="wait_timeout")
        self.poll_interval = _seconds(poll_interval, name="poll_interval")
        if isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"max_cycles must be a positive integer, got {max_cycles!r}")
        self.max_cycles = max_cycles
        self.fallback_to_core = fallback_to_core
        self.fail_when_unresolved = fail_when_unresolved
        self.billing_core_conn_id = billing_core_conn_id
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.core_timeout = core_timeout
        self.core_max_attempts = core_max_attempts

    # -- plan ------------------------------------------------------------------------------
    @staticmethod
    def _key(context: Context) -> str:
        from airflow_recon_provider.reconciliation.reprocess import remediation_key

        ti = context["ti"]
        return remediation_key(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)

    def _check_psp(self, psp: str) -> None:
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

        gateway = BillingGatewayHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        gateway.resolve_psp(psp)
        paused, reason, actor = gateway.is_paused(psp)
        if paused:
            # containment pauses the *automatic* reconciliation; reprocessing is the runbook's
            # next step, so these runs carry reprocess=true and reconcile the PSP anyway
            self.log.info(
                "PSP %s is paused in recon.controls by %s (%s): scheduled runs of %s skip it; the "
                "runs triggered here carry reprocess=true and reconcile it anyway",
                psp,
                actor or "unknown",
                reason or "no reason given",
                self.reconciliation_dag_id,
            )

    # -- execute ---------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.dag_runs import dag_is_paused, read_run_states, trigger_dag_run
        from airflow_recon_provider.reconciliation.reprocess import FINISHED_RUN_STATES, plan_reprocess
        from airflow_recon_provider.triggers.reprocess import ReconciliationRunsTrigger

        psp = self.scope_psp()
        window = self.scope_window()
        plan = plan_reprocess(psp, window, key=self._key(context), max_cycles=self.max_cycles)
        self._check_psp(psp)
        dag_id = self.reconciliation_dag_id
        if dag_is_paused(dag_id):
            self.log.warning(
                "DAG %s is paused in Airflow: its runs stay queued until it is unpaused "
                "(waiting at most %.0f s, then the core fallback)",
                dag_id,
                self.wait_timeout,
            )
        ti = context["ti"]
        for item in plan:
            note = (
                f"Reprocess of PSP {psp} cycle {item.cycle} requested by {ti.dag_id} run {ti.run_id} "
                f"task {ti.task_id} (runbook Mitigação 1)"
            )
            created = trigger_dag_run(dag_id, item.run_id, conf=item.conf, note=note)
            self.log.info(
                "PSP %s cycle %s: %s %s run %s",
                psp,
                item.cycle,
                "triggered" if created else "already triggered (retry):",
                dag_id,
                item.run_id,
            )

        cycles = [item.as_dict() for item in plan]
        # poke once: on a retry the runs may have finished already
        runs = read_run_states(dag_id, [item.run_id for item in plan], verify_task_id=self.verify_task_id)
        if all(runs[item.run_id]["state"] in FINISHED_RUN_STATES for item in plan):
            return self._finish(context, psp, plan, runs)

        deadline = datetime.now(UTC) + timedelta(seconds=self.wait_timeout)
        self.log.info(
            "waiting for %d %s run(s) of PSP %s in the triggerer until %s",
            len(plan),
            dag_id,
            psp,
            deadline.isoformat(),
        )
        self.defer(
            trigger=ReconciliationRunsTrigger(
                dag_id=dag_id,
                psp=psp,
                cycles=cycles,
                deadline=deadline.isoformat(),
                verify_task_id=self.verify_task_id,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            # the trigger reports a timeout itself at the deadline (so the fallback still
            # runs); this is the backstop should the triggerer never answer
            timeout=timedelta(seconds=self.wait_timeout + max(60.0, 2 * self.poll_interval)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_recon_provider.reconciliation.errors import ReprocessError
        from airflow_recon_provider.reconciliation.reprocess import CycleRun

        if not event or event.get("status") not in {"done", "timeout"}:
            message = (event or {}).get("message") or f"unexpected event {event!r}"
            raise ReprocessError(f"waiting for the reconciliation runs failed: {message}")
        psp = event["psp"]
        plan = [CycleRun.from_dict(psp, cycle) for cycle in event["cycles"]]
        if event["status"] == "timeout":
            self.log.warning("the wait for the reconciliation runs of PSP %s ended at its deadline", psp)
        return self._finish(context, psp, plan, event.get("runs") or {})

    # -- outcome ---------------------------------------------------------------------------
    def _finish(
        self,
        context: Context,
        psp: str,
        plan: list[CycleRun],
        runs: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        from airflow_recon_provider.reconciliation.errors import ReprocessError
        from airflow_recon_provider.reconciliation.reprocess import (
            CycleOutcome,
            cycle_outcome,
            reprocess_report,
        )
        from airflow_recon_provider.reconciliation.window import Window

        states = []
        for item in plan:
            run = runs.get(item.run_id) or {}
            outcome = cycle_outcome(run.get("state"), run.get("verify_task_states"))
            states.append({**item.as_dict(), "run_state": run.get("state"), "state": outcome.value})
            log = self.log.info if outcome == CycleOutcome.SUCCESS else self.log.warning
            log("PSP %s cycle %s: run %s %s", psp, item.cycle, item.run_id, outcome.value)
        context["ti"].xcom_push(key="cycle_states", value=states)

        by_run = {item.run_id: item for item in plan}
        cycles = []
        for state in states:
            fallback = None
            if state["state"] != CycleOutcome.SUCCESS and self.fallback_to_core:
                fallback = self._fallback(context, by_run[state["run_id"]])
            cycles.append({**state, "fallback": fallback})
        # the report's window is the span of the reprocessed cycles (whole hours)
        window = Window(plan[0].cycle.start, plan[-1].cycle.end)
        report = reprocess_report(psp, window, cycles)
        self.log.info(
            "PSP %s window %s: %d of %d cycle(s) reprocessed in Airflow, %d sent to billing-gateway-core",
            psp,
            window,
            report["succeeded_count"],
            len(cycles),
            report["fallback_count"],
        )
        if self.fail_when_unresolved and not report["all_resolved"]:
            context["ti"].xcom_push(key="return_value", value=report)
            unresolved = [
                f"{c['cycle_start']} ({c['state']}"
                + (f"; core: {c['fallback']['error']}" if c["fallback"] else "; no fallback")
                + ")"
                for c in cycles
                if c["state"] != CycleOutcome.SUCCESS and (c["fallback"] or {}).get("status") != "accepted"
            ]
            raise ReprocessError(
                f"PSP {psp}: {len(unresolved)} cycle(s) neither reprocessed nor accepted by "
                f"billing-gateway-core: {'; '.join(unresolved)}"
            )
        return report

    def _fallback(self, context: Context, item: CycleRun) -> dict[str, Any]:
        """Ask billing-gateway-core to reconcile one cycle; errors become the cycle's record."""
        from airflow_recon_provider.hooks.billing_core import BillingCoreHook
        from airflow_recon_provider.reconciliation.errors import (
            BillingCoreRequestError,
            BillingCoreUnavailableError,
            ConnectionMissingError,
        )
        from airflow_recon_provider.reconciliation.reprocess import core_idempotency_key

        key = core_idempotency_key(item.psp, item.cycle, self._key(context))
        hook = BillingCoreHook(
            self.billing_core_conn_id, timeout=self.core_timeout, max_attempts=self.core_max_attempts
        )
        try:
            job = hook.trigger_reconciliation(item.psp, item.cycle, idempotency_key=key)
        except (BillingCoreRequestError, BillingCoreUnavailableError, ConnectionMissingError) as exc:
            self.log.error("PSP %s cycle %s: billing core fallback failed: %s", item.psp, item.cycle, exc)
            return {
                "status": "error",
                "error": f"{type(exc).__name__}: {exc}",
                "http_status": getattr(exc, "status_code", None),
                "idempotency_key": key,
            }
        return {
            "status": "accepted",
            "http_status": job.http_status,
            "job_id": job.job_id,
            "core_status": job.status,
            "idempotency_key": key,
        }


__all__ = ["ReprocessReconciliationOperator"]
