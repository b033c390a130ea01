"""Reprocessing a PSP's cycles: the plan and its outcome (pure, no Airflow).

Runbook, Mitigação 1 (Reprocessamento): "Reexecutar DAG no Airflow com Trigger DAG para o
intervalo afetado. Se falha persistir, acionar reconciliação manual pelo serviço core."

Every hourly cycle of the window gets one run of the reconciliation DAG with conf
``{"psp", "cycle_start", "reprocess": true}`` (a PSP paused by the containment step is
reconciled by these runs; scheduled runs keep skipping it). Names are deterministic per
PSP, cycle and remediation run (the task instance that asked), so a retry finds the runs it
already triggered instead of triggering them again, and the billing core sees the same
``Idempotency-Key`` again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import WindowError
from airflow_recon_provider.reconciliation.window import Cycle, Window, parse_timestamp

#: DAG run states after which a run no longer changes (Airflow's ``DagRunState``)
FINISHED_RUN_STATES: frozenset[str] = frozenset({"success", "failed"})
#: most cycles one reprocess may trigger by default (three days of hourly cycles)
DEFAULT_MAX_CYCLES = 72


def remediation_key(*parts: object) -> str:
    """A short stable digest of what identifies the asking task (DAG, run, task, map index)."""
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cycle_stamp(cycle: Cycle) -> str:
    return cycle.start.strftime("%Y%m%dT%H%MZ")


def cycle_run_id(psp: str, cycle: Cycle, key: str) -> str:
    """Run id of the reconciliation run that reprocesses ``cycle`` for ``psp``.

    Only ``[A-Za-z0-9_-]``: valid under Airflow's default ``allowed_run_id_pattern`` and
    readable in the UI, e.g. ``reprocess__stripe__20261120T1000Z__3f2a9c1b07de``.
    """
    return f"reprocess__{check_psp_name(psp)}__{_cycle_stamp(cycle)}__{key}"


def core_idempotency_key(psp: str, cycle: Cycle, key: str) -> str:
    """``Idempotency-Key`` of the billing core fallback for one cycle of one remediation run."""
    return f"recon-reprocess:{check_psp_name(psp)}:{_cycle_stamp(cycle)}:{key}"


@dataclass(frozen=True)
class CycleRun:
    """One cycle to reprocess and the run that does it."""

    psp: str
    cycle: Cycle
    run_id: str

    @property
    def conf(self) -> dict[str, Any]:
        """The reconciliation DAG's conf: redo this PSP's cycle only, even when the PSP's
        automatic reconciliation is paused (``reprocess``: containment stops the schedule,
        not the runbook's reprocessing)."""
        return {"psp": self.psp, "cycle_start": self.cycle.start.isoformat(), "reprocess": True}

    def as_dict(self) -> dict[str, str]:
        return {
            "cycle_start": self.cycle.start.isoformat(),
            "cycle_end": self.cycle.end.isoformat(),
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, psp: str, data: Mapping[str, Any]) -> CycleRun:
        start = parse_timestamp(data["cycle_start"], name="cycle_start")
        return cls(psp=check_psp_name(psp), cycle=Cycle(start), run_id=str(data["run_id"]))


def plan_reprocess(
    psp: str, window: Window, *, key: str, max_cycles: int = DEFAULT_MAX_CYCLES
) -> list[CycleRun]:
    """One :class:`CycleRun` per hourly cycle overlapping ``window``, in order.

    :raises WindowError: the window covers more than ``max_cycles`` cycles (one run each).
    """
    check_psp_name(psp)
    cycles = window.cycles()
    if len(cycles) > max_cycles:
        raise WindowError(
            f"window {window} covers {len(cycles)} hourly cycles, more than the {max_cycles} one "
            "reprocess may trigger; split the window or raise max_cycles"
        )
    return [CycleRun(psp=psp, cycle=cycle, run_id=cycle_run_id(psp, cycle, key)) for cycle in cycles]


class CycleOutcome(StrEnum):
    """What reprocessing one cycle in Airflow came to."""

    #: the run succeeded and reconciled the PSP's cycle
    SUCCESS = "success"
    #: the run failed
    FAILED = "failed"
    #: the run succeeded without reconciling the PSP (its task was skipped: e.g. a site's
    #: own reconciliation DAG that skips a PSP paused in ``recon.controls`` and ignores the
    #: ``reprocess`` flag)
    SKIPPED = "skipped"
    #: the run had not finished when the wait ended
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


def cycle_outcome(run_state: str | None, verify_task_states: Iterable[str] | None) -> CycleOutcome:
    """The outcome of one cycle from its run's state.

    :param run_state: the reconciliation run's state (``success``, ``failed``, ``queued``,
        ``running``; ``None`` when unknown).
    :param verify_task_states: states of the run's task that proves the PSP was reconciled
        (``match_transactions``, one per PSP); ``None`` when not verified.
    """
    if run_state == "success":
        if verify_task_states is None:
            return CycleOutcome.SUCCESS
        states = list(verify_task_states)
        if states and all(state == "success" for state in states):
            return CycleOutcome.SUCCESS
        return CycleOutcome.SKIPPED
    if run_state == "failed":
        return CycleOutcome.FAILED
    return CycleOutcome.TIMEOUT


def reprocess_report(psp: str, window: Window, cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's result: per cycle ``cycle_start``, ``state`` and ``fallback`` (the core's
    answer or ``None``), plus

    - ``all_succeeded``: every cycle was reprocessed successfully in Airflow;
    - ``all_resolved``: every cycle either succeeded or was accepted by the billing core.
    """
    succeeded = [c for c in cycles if c["state"] == CycleOutcome.SUCCESS]
    accepted = [c for c in cycles if (c["fallback"] or {}).get("status") == "accepted"]
    return {
        "psp": psp,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "cycles": cycles,
        "all_succeeded": len(succeeded) == len(cycles),
        "all_resolved": len(succeeded) + len(accepted) == len(cycles),
        "succeeded_count": len(succeeded),
        "fallback_count": sum(1 for c in cycles if c["fallback"] is not None),
    }


__all__ = [
    "DEFAULT_MAX_CYCLES",
    "FINISHED_RUN_STATES",
    "CycleOutcome",
    "CycleRun",
    "core_idempotency_key",
    "cycle_outcome",
    "cycle_run_id",
    "plan_reprocess",
    "remediation_key",
    "reprocess_report",
]
