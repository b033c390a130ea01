"""ReconciliationRunsTrigger: wait, in the triggerer, for the reconciliation runs that
reprocess a PSP's cycles (runbook, Mitigação 1 — Reprocessamento).

:class:`~airflow_recon_provider.operators.reprocess.ReprocessReconciliationOperator`
triggers one run per cycle and defers to this trigger, so no worker slot is held while
the runs queue and execute. The trigger polls the runs' states through the Task SDK
(no metadata-database access) and fires once:

- ``{"status": "done", ...}`` when every run finished (``success`` or ``failed``);
- ``{"status": "timeout", ...}`` at the deadline, with the states seen last, so the
  operator can still fall back to the billing core for the unfinished cycles;
- ``{"status": "error", "message": ...}`` after ``max_poll_errors`` consecutive polls
  that could not read the states (never an endless silent retry).

Airflow's ``DagStateTrigger`` (standard provider 1.21) waits for one run's state only
and has no deadline, hence this trigger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_recon_provider.reconciliation.reprocess import FINISHED_RUN_STATES
from airflow_recon_provider.triggers._offloop import DAG_RUNS, import_off_loop


class ReconciliationRunsTrigger(BaseTrigger):
    """Wait until every reconciliation run of a reprocess finished, or the deadline.

    :param dag_id: the reconciliation DAG.
    :param psp: the PSP being reprocessed (echoed in the event).
    :param cycles: ``[{"cycle_start", "cycle_end", "run_id"}]``, one per cycle (echoed in
        the event, so the resumed task needs no other state).
    :param deadline: ISO 8601 instant after which the trigger stops waiting.
    :param verify_task_id: task whose states prove the PSP was reconciled in a successful
        run (``match_transactions``); ``None`` trusts the run state alone.
    :param poll_interval: seconds between polls.
    :param max_poll_errors: consecutive failed polls before the trigger reports an error.
    """

    def __init__(
        self,
        *,
        dag_id: str,
        psp: str,
        cycles: list[dict[str, str]],
        deadline: str,
        verify_task_id: str | None = "match_transactions",
        poll_interval: float = 60.0,
        max_poll_errors: int = 5,
    ) -> None:
        super().__init__()
        self.dag_id = dag_id
        self.psp = psp
        self.cycles = [dict(cycle) for cycle in cycles]
        self.deadline = deadline
        self.verify_task_id = verify_task_id
        self.poll_interval = float(poll_interval)
        self.max_poll_errors = max(1, int(max_poll_errors))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dag_id": self.dag_id,
                "psp": self.psp,
                "cycles": self.cycles,
                "deadline": self.deadline,
                "verify_task_id": self.verify_task_id,
                "poll_interval": self.poll_interval,
                "max_poll_errors": self.max_poll_errors,
            },
        )

    @property
    def run_ids(self) -> list[str]:
        return [cycle["run_id"] for cycle in self.cycles]

    def _deadline(self) -> datetime:
        deadline = datetime.fromisoformat(self.deadline)
        return deadline if deadline.tzinfo else deadline.replace(tzinfo=UTC)

    async def poll(self) -> dict[str, dict[str, Any]]:
        """The runs' states now: ``{run_id: {"state", "verify_task_states"}}``.

        The Task SDK calls block on the supervisor, so they run in a thread, as in
        Airflow's own ``DagStateTrigger``.
        """
        dag_runs = await import_off_loop(DAG_RUNS)
        return await sync_to_async(dag_runs.read_run_states)(
            self.dag_id, self.run_ids, verify_task_id=self.verify_task_id
        )

    def _event(self, status: str, runs: dict[str, dict[str, Any]], **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "dag_id": self.dag_id,
                "psp": self.psp,
                "cycles": self.cycles,
                "runs": runs,
                **extra,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = self._deadline()
        runs: dict[str, dict[str, Any]] = {}
        errors = 0
        while True:
            try:
                runs = await self.poll()
                errors = 0
            except Exception as exc:
                errors += 1
                message = f"could not read the states of {self.dag_id} runs: {type(exc).__name__}: {exc}"
                if errors >= self.max_poll_errors:
                    self.log.error("%s (%d polls in a row); giving up", message, errors)
                    yield self._event("error", runs, message=f"{message} ({errors} polls in a row)")
                    return
                self.log.warning("%s (poll %d of at most %d)", message, errors, self.max_poll_errors)
            else:
                pending = [
                    run_id
                    for run_id in self.run_ids
                    if (runs.get(run_id) or {}).get("state") not in FINISHED_RUN_STATES
                ]
                if not pending:
                    self.log.info("all %d reconciliation run(s) of PSP %s finished", len(runs), self.psp)
                    yield self._event("done", runs)
                    return
                self.log.info(
                    "PSP %s: %d of %d reconciliation run(s) still running", self.psp, len(pending), len(runs)
                )
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                self.log.warning(
                    "deadline %s reached before every reconciliation run finished", self.deadline
                )
                yield self._event("timeout", runs)
                return
            await asyncio.sleep(min(self.poll_interval, remaining))


__all__ = ["ReconciliationRunsTrigger"]
