"""One real remediation per PSP at a time: the rule of the PSP's remediation lease (pure, no
Airflow, no I/O).

Runbook *Billing Gateway — Falhas de Reconciliação*: two real runs of the runbook for one PSP
would reprocess every cycle twice, ask finance twice to approve the same corrections, tag the
release twice and attach two closing reports. So a real (not dry) run takes the PSP's lease at
its scope step (Investigação, Validar Escopo) and gives it back when it ends; the
``recon.remediation_leases`` row says which run holds it and for which incident. The
single-action DAGs that repeat a runbook step (reprocess, data correction, rollback/tag) take
the same lease. Dry runs change nothing: they never take it and are never refused.

The rule (:func:`decide_lease`), whatever the timing of the two requests:

- nobody holds the PSP's lease: the run takes it;
- the run itself holds it (its scope step ran again: a retry, a clear): it keeps it;
- another run holds it and that run is still ``queued`` or ``running`` in Airflow: refused,
  naming that run and its incident (:class:`RemediationInProgressError`);
- another run holds it but is no longer running (it ended without giving the lease back:
  failed, killed, marked success, deleted): the run takes it over.

The database side (atomicity, history) is :mod:`airflow_recon_provider.hooks.remediation_lease`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from airflow_recon_provider.reconciliation.errors import ReconError

#: Airflow DAG run states in which the run may still do runbook steps
ACTIVE_RUN_STATES = frozenset({"queued", "running"})
#: the states Airflow DAG runs can be in (``None``: no such run)
KNOWN_RUN_STATES = ACTIVE_RUN_STATES | {"success", "failed"}


class LeaseOutcome(StrEnum):
    """What a request for (or the end of) a PSP's lease did; the ``event`` of
    ``recon.remediation_lease_events``."""

    #: nobody held it: the run took it
    ACQUIRED = "acquired"
    #: the run already held it (its scope ran again) and keeps it
    REENTERED = "reentered"
    #: a run that is no longer running held it: the run took it over
    TAKEN_OVER = "taken_over"
    #: a running run holds it: the run was refused
    REFUSED = "refused"
    #: the run ended and gave it back
    RELEASED = "released"


@dataclass(frozen=True)
class Lease:
    """The run that holds a PSP's remediation lease (one row of ``recon.remediation_leases``).

    :param psp: the PSP.
    :param dag_id: the DAG of the holding run.
    :param run_id: the holding run.
    :param incident_id: the incident the holding run records its steps on (``None`` when it
        has none, e.g. a reprocess of a PSP without an open incident).
    :param actor: who started the holding run.
    :param acquired_at: when it took the lease.
    """

    psp: str
    dag_id: str
    run_id: str
    incident_id: str | None
    actor: str
    acquired_at: datetime

    def held_by(self, dag_id: str, run_id: str) -> bool:
        return self.dag_id == dag_id and self.run_id == run_id

    def describe(self) -> str:
        """``billing_gateway_remediation run manual__... (incident INCIDENT-7, started by
        oncall, holding since 2026-11-20 14:05:00 UTC)``."""
        incident = f"incident {self.incident_id}" if self.incident_id else "no incident"
        return (
            f"{self.dag_id} run {self.run_id} ({incident}, started by {self.actor}, holding since "
            f"{_utc(self.acquired_at)})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "incident_id": self.incident_id,
            "actor": self.actor,
            "acquired_at": self.acquired_at.isoformat(),
        }


class LeaseError(ReconError):
    """The PSP's remediation lease could not be decided (bad input, the holder's state could
    not be read); the run does not start its changing steps."""


class RemediationInProgressError(LeaseError):
    """Another real run of the runbook for the PSP is running: this one is refused at its
    scope step and changes nothing.

    :param psp: the PSP.
    :param holder: the running run's lease.
    :param holder_state: its Airflow state (``queued`` or ``running``).
    :param dag_id: the refused run's DAG.
    :param run_id: the refused run.
    """

    def __init__(self, psp: str, holder: Lease, holder_state: str, *, dag_id: str, run_id: str) -> None:
        self.psp = psp
        self.holder = holder
        self.holder_state = holder_state
        self.dag_id = dag_id
        self.run_id = run_id
        super().__init__(
            f"PSP {psp} already has a real remediation {holder_state}: {holder.describe()}. "
            f"{dag_id} run {run_id} was refused and changes nothing (one real remediation per PSP "
            "at a time; a dry run is never refused). Follow that run, or wait until it ends: its "
            "last task gives the PSP back, and a run that failed or was stopped is taken over by "
            "the next one."
        )


def decide_lease(held: Lease | None, *, dag_id: str, run_id: str, holder_state: str | None) -> LeaseOutcome:
    """Whether run ``run_id`` of ``dag_id`` may hold the PSP's lease (see the module).

    :param held: the PSP's lease as stored (``None``: nobody holds it).
    :param dag_id: the requesting run's DAG.
    :param run_id: the requesting run.
    :param holder_state: the Airflow state of the holding run (``queued``, ``running``,
        ``success``, ``failed``; ``None`` when that run does not exist). Not read when nobody
        or the run itself holds the lease.
    :returns: ``ACQUIRED``, ``REENTERED``, ``TAKEN_OVER`` or ``REFUSED``.
    :raises LeaseError: ``holder_state`` is not a DAG run state.
    """
    if held is None:
        return LeaseOutcome.ACQUIRED
    if held.held_by(dag_id, run_id):
        return LeaseOutcome.REENTERED
    if holder_state is not None and holder_state not in KNOWN_RUN_STATES:
        raise LeaseError(
            f"the run holding the lease of PSP {held.psp} ({held.dag_id} run {held.run_id}) is in "
            f"the unknown state {holder_state!r}; expected one of {', '.join(sorted(KNOWN_RUN_STATES))}"
        )
    if holder_state in ACTIVE_RUN_STATES:
        return LeaseOutcome.REFUSED
    return LeaseOutcome.TAKEN_OVER


def needs_holder_state(held: Lease | None, *, dag_id: str, run_id: str) -> bool:
    """Whether :func:`decide_lease` needs the holding run's state (another run holds it)."""
    return held is not None and not held.held_by(dag_id, run_id)


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise LeaseError(f"lease time {moment!r} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = [
    "ACTIVE_RUN_STATES",
    "KNOWN_RUN_STATES",
    "Lease",
    "LeaseError",
    "LeaseOutcome",
    "RemediationInProgressError",
    "decide_lease",
    "needs_holder_state",
]
