"""The dashboard's "Execuções recentes": the latest runs of the runbook's DAGs, with the PSP
and window they were asked for and their note — where the ``scope`` step writes the window
in UTC and America/Sao_Paulo, or why it refused the request (end before start, a window
over the maximum, ...). A refused request is seen here at once, not in a task log.

Read from Airflow's metadata database by the API server that mounts the dashboard (the
plugin runs inside it, like Airflow's own routes); tasks never read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_recon_provider.names import (
    DATA_CORRECTION_DAG_ID,
    RECONCILIATION_CONTROL_DAG_ID,
    RELEASE_ROLLBACK_DAG_ID,
    REMEDIATION_DAG_ID,
    REPROCESS_DAG_ID,
)
from airflow_recon_provider.reconciliation.i18n import _, pgettext

log = logging.getLogger(__name__)

#: the DAGs whose runs validate a PSP and window in a ``scope`` step
RUNBOOK_DAG_IDS: tuple[str, ...] = (
    REMEDIATION_DAG_ID,
    DATA_CORRECTION_DAG_ID,
    REPROCESS_DAG_ID,
    RECONCILIATION_CONTROL_DAG_ID,
    RELEASE_ROLLBACK_DAG_ID,
)
RECENT_RUNS_LIMIT = 10


@dataclass(frozen=True)
class RecentRun:
    """One run of a runbook DAG, as the dashboard lists it."""

    dag_id: str
    run_id: str
    state: str
    run_after: datetime | None
    triggered_by: str | None
    conf: Mapping[str, Any]
    note: str | None

    @property
    def state_words(self) -> str:
        if self.state == "queued":
            return pgettext("run state", "queued")
        if self.state == "running":
            return pgettext("run state", "running")
        if self.state == "success":
            return pgettext("run state", "succeeded")
        if self.state == "failed":
            return pgettext("run state", "failed")
        return self.state

    @property
    def psp(self) -> str:
        return str(self.conf.get("psp") or "")

    @property
    def dry_run(self) -> bool | None:
        value = self.conf.get("dry_run")
        return value if isinstance(value, bool) else None

    @property
    def refused(self) -> bool:
        from airflow_recon_provider.operators.investigation import is_refusal_note

        return is_refusal_note(self.note)

    @property
    def window_asked(self) -> str:
        """The window as it was typed (the note says how it was read)."""
        start = self.conf.get("window_start") or ""
        end = self.conf.get("window_end") or ""
        hours = self.conf.get("window_hours")
        if not start:
            return ""
        if end:
            return f"{start} → {end}"
        return f"{start} + {hours} h" if hours else str(start)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": self.state,
            "run_after": self.run_after.astimezone(UTC).isoformat() if self.run_after else None,
            "triggered_by": self.triggered_by,
            "conf": dict(self.conf),
            "note": self.note,
            "refused": self.refused,
        }


def _state(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def read_recent_runs(
    dag_ids: Sequence[str] = RUNBOOK_DAG_IDS, limit: int = RECENT_RUNS_LIMIT
) -> list[RecentRun]:
    """The latest ``limit`` runs of ``dag_ids``, newest first, from Airflow's metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id.in_(list(dag_ids)))
            .order_by(DagRun.run_after.desc(), DagRun.id.desc())
            .limit(limit)
        ).all()
        return [
            RecentRun(
                dag_id=r.dag_id,
                run_id=r.run_id,
                state=_state(r.state),
                run_after=r.run_after,
                triggered_by=getattr(r, "triggering_user_name", None),
                conf=dict(r.conf or {}),
                note=r.note,
            )
            for r in runs
        ]


@dataclass(frozen=True)
class RecentRuns:
    """What the section shows: the runs, or why they could not be read."""

    runs: tuple[RecentRun, ...] = ()
    problem: str | None = None


def load_recent_runs(reader: Callable[[], Sequence[RecentRun]] = read_recent_runs) -> RecentRuns:
    """The section's content; a failure is a sentence in the section, never a broken page."""
    try:
        return RecentRuns(tuple(reader()))
    except Exception as exc:
        log.exception("reading the recent runs failed")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RecentRuns(problem=_("the recent runs could not be read from Airflow: %(error)s", error=first))


__all__ = [
    "RECENT_RUNS_LIMIT",
    "RUNBOOK_DAG_IDS",
    "RecentRun",
    "RecentRuns",
    "load_recent_runs",
    "read_recent_runs",
]
