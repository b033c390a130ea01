"""Which cycle a run of ``billing_gateway_reconciliation`` reconciles.

Runbook, Contexto: "Processo de reconciliação roda a cada hora". A scheduled run
reconciles its data interval ``[data_interval_start, data_interval_end)``; a run
asked for a specific hourly cycle (the ``cycle_start`` param, used when cycles are
reprocessed) reconciles ``[cycle_start, cycle_start + 1h)``; a run without a data
interval reconciles the last complete hourly cycle before it was started.
"""

from __future__ import annotations

from datetime import datetime

from airflow_recon_provider.reconciliation.errors import WindowError
from airflow_recon_provider.reconciliation.window import CYCLE, Cycle, Window, floor_cycle, parse_timestamp

#: ``payment_reconciliation_logs.status`` of a cycle (DESIGN section 4)
CYCLE_STATUSES: tuple[str, ...] = ("running", "success", "failed")


def parse_cycle_start(value: str | datetime) -> Cycle:
    """An hourly cycle from its ISO start, refusing a start that is not on the hour (UTC)."""
    start = parse_timestamp(value, name="cycle_start")
    if floor_cycle(start) != start:
        raise WindowError(
            f"cycle_start {start.isoformat()} is not the start of an hourly cycle; "
            f"give a time on the hour such as {floor_cycle(start).isoformat()}"
        )
    return Cycle(start)


def resolve_cycle(
    *,
    cycle_start: str | datetime | None = None,
    cycle_end: str | datetime | None = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
    run_after: datetime | None = None,
) -> Window:
    """The window a reconciliation task works on.

    :param cycle_start: explicit start (ISO or datetime); must be on the hour.
    :param cycle_end: explicit end; defaults to one cycle after ``cycle_start``.
    :param data_interval_start: the run's data interval start.
    :param data_interval_end: the run's data interval end.
    :param run_after: when the run was due; used when the run has no data interval.
    """
    if cycle_start is not None:
        start = parse_cycle_start(cycle_start)
        if cycle_end is None:
            return start.window
        return Window(start.start, parse_timestamp(cycle_end, name="cycle_end"))
    if cycle_end is not None:
        raise WindowError("cycle_end was given without cycle_start")
    if data_interval_start is not None and data_interval_end is not None:
        if data_interval_end > data_interval_start:
            return Window(data_interval_start, data_interval_end)
    if run_after is None:
        raise WindowError(
            "this run has neither a data interval nor a cycle_start; "
            "give cycle_start (e.g. 2026-11-20T10:00Z)"
        )
    if run_after.tzinfo is None:
        raise WindowError(f"run_after {run_after.isoformat()} has no timezone")
    # no interval (e.g. a manual run without a logical date): the last complete cycle
    return Cycle(floor_cycle(run_after) - CYCLE).window


__all__ = ["CYCLE_STATUSES", "parse_cycle_start", "resolve_cycle"]
