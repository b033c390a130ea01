"""Hook on the PSP's remediation lease (``recon.remediation_leases``,
``recon.remediation_lease_events``) in the gateway database (connection
``billing_gateway_db``, always the primary).

One real remediation per PSP at a time (the rule: :mod:`airflow_recon_provider.reconciliation.
remediation_lease`). The scope step of a real run claims the lease (:meth:`RemediationLeaseHook.
claim`) and the run's last task gives it back (:meth:`RemediationLeaseHook.release`).

Why it holds under concurrency (two runs started in the same second, on two workers): a claim
is one transaction that first takes a transaction-scoped advisory lock on the PSP's lease, so
claims of one PSP are serialised; the second one reads the row the first wrote. The scope step
chooses its incident *inside* that transaction (the block of :meth:`claim`), so a refused run
always learns the incident of the run that holds the lease, and a scope that fails before the
end of the block leaves no lease behind.

Whether the holding run is still running is asked to Airflow through the Task SDK
(:func:`airflow_recon_provider.hooks.dag_runs.dag_run_state`): tasks have no metadata-database
access. The ``recon`` schema has fixed names (the provider owns it), so its SQL is plain text
with bound values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.hooks._rows import by_name
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.reconciliation import queries
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.incidents import check_incident_id, check_text
from airflow_recon_provider.reconciliation.remediation_lease import (
    Lease,
    LeaseError,
    LeaseOutcome,
    RemediationInProgressError,
    decide_lease,
    needs_holder_state,
)

if TYPE_CHECKING:
    import psycopg

#: (dag_id, run_id) -> the run's Airflow state, ``None`` when there is no such run
RunStateReader = Callable[[str, str], str | None]

_LEASE_COLUMNS = "psp, dag_id, run_id, incident_id, actor, acquired_at"
_EVENT_KEYS = (
    "id",
    "event",
    "dag_id",
    "run_id",
    "incident_id",
    "actor",
    "holder_dag_id",
    "holder_run_id",
    "holder_incident_id",
    "holder_state",
    "created_at",
)


def _lease(row: Mapping[str, Any] | None) -> Lease | None:
    """A row of ``SELECT {_LEASE_COLUMNS}`` by column name; none: nobody holds the lease."""
    if row is None:
        return None
    return Lease(
        psp=row["psp"],
        dag_id=row["dag_id"],
        run_id=row["run_id"],
        incident_id=row["incident_id"],
        actor=row["actor"],
        acquired_at=row["acquired_at"],
    )


def _check_run(dag_id: Any, run_id: Any) -> tuple[str, str]:
    dag_id = check_text(dag_id, what="dag_id", max_length=250)
    run_id = check_text(run_id, what="run_id", max_length=250)
    return dag_id, run_id


def _check_moment(at: datetime | None) -> datetime | None:
    if at is not None and (not isinstance(at, datetime) or at.tzinfo is None):
        raise LeaseError(f"the moment of a lease request must be a datetime with a time zone, got {at!r}")
    return at


@dataclass
class LeaseClaim:
    """A run's claim of a PSP's lease, while the scope step holds the PSP's lease lock.

    :param psp: the PSP.
    :param dag_id: the claiming run's DAG.
    :param run_id: the claiming run.
    :param actor: who started the run.
    :param outcome: ``acquired``, ``reentered`` or ``taken_over``.
    :param previous: the lease as it was (the run that held it before a take-over).
    :param previous_state: the Airflow state of that run when it was taken over (``None``:
        the run no longer exists, or there was no previous holder).
    :param incident_id: the incident the run records its steps on; set it inside the block of
        :meth:`RemediationLeaseHook.claim`, it is stored with the lease when the block ends.
    """

    psp: str
    dag_id: str
    run_id: str
    actor: str
    outcome: LeaseOutcome
    previous: Lease | None = None
    previous_state: str | None = None
    incident_id: str | None = None
    acquired_at: datetime | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        taken_from = None
        if self.outcome is LeaseOutcome.TAKEN_OVER and self.previous is not None:
            taken_from = {**self.previous.as_dict(), "state": self.previous_state or "absent"}
        return {
            "psp": self.psp,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "incident_id": self.incident_id,
            "outcome": self.outcome.value,
            "acquired_at": self.acquired_at.isoformat() if self.acquired_at else None,
            "taken_over_from": taken_from,
        }


def _task_sdk_run_state(dag_id: str, run_id: str) -> str | None:
    from airflow_recon_provider.hooks.dag_runs import dag_run_state

    return dag_run_state(dag_id, run_id)


class RemediationLeaseHook(ReconPostgresHook):
    """Claim, read and release the lease that lets one real remediation of a PSP run at a time.

    :param billing_gateway_conn_id: Airflow connection of the gateway database (the primary).
    :param lock_timeout: seconds a claim waits for another claim of the same PSP (which holds
        the PSP's lease lock only while its scope step chooses the incident) before failing.
    :param config: reconciliation configuration; ``ReconConfig.load()`` when omitted.
    """

    conn_name_attr = "billing_gateway_conn_id"
    default_conn_name = BILLING_GATEWAY_CONN_ID
    conn_type = "billing_gateway"
    hook_name = "Billing Gateway remediation lease (PostgreSQL)"

    def __init__(
        self,
        *args: Any,
        billing_gateway_conn_id: str = default_conn_name,
        lock_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id
        if not isinstance(lock_timeout, int | float) or lock_timeout <= 0:
            raise LeaseError(f"lock_timeout must be a positive number of seconds, got {lock_timeout!r}")
        self.lock_timeout = float(lock_timeout)

    # -- reading -------------------------------------------------------------------------------
    def current(self, psp: str) -> Lease | None:
        """The PSP's lease (``None`` when no run holds it)."""
        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            row = (
                by_name(conn)
                .execute(f"SELECT {_LEASE_COLUMNS} FROM recon.remediation_leases WHERE psp = %s", (psp,))
                .fetchone()
            )
        return _lease(row)

    def history(self, psp: str) -> list[dict[str, Any]]:
        """Every claim, refusal, take-over and release of the PSP's lease, oldest first."""
        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            rows = (
                by_name(conn)
                .execute(
                    f"SELECT {', '.join(_EVENT_KEYS)} FROM recon.remediation_lease_events"
                    " WHERE psp = %s ORDER BY id",
                    (psp,),
                )
                .fetchall()
            )
        return rows

    # -- claiming --------------------------------------------------------------------------------
    @contextmanager
    def claim(
        self,
        psp: str,
        *,
        dag_id: str,
        run_id: str,
        actor: str,
        incident_id: str | None = None,
        run_state: RunStateReader | None = None,
        at: datetime | None = None,
    ) -> Iterator[LeaseClaim]:
        """Take the PSP's lease for run ``run_id`` of ``dag_id``, or refuse the run.

        The block runs with the PSP's lease lock held (other claims of the PSP wait): choose
        the run's incident there and set it on the claim. When the block ends the lease is
        stored with that incident and the claim recorded; when it raises, nothing is kept.

        :param psp: a valid PSP name.
        :param dag_id: the claiming run's DAG.
        :param run_id: the claiming run.
        :param actor: who started the run.
        :param incident_id: the run's incident when it is already known (the block may set it).
        :param run_state: ``(dag_id, run_id) -> state`` of the holding run; default: Airflow's,
            through the Task SDK (inside a task only).
        :param at: the moment of the claim (default: the database's ``now()``).
        :raises RemediationInProgressError: another run holds the lease and is still queued or
            running (the refusal is recorded, nothing else is written).
        :raises LeaseError: the holding run's state could not be read (the run is refused:
            never two runs at once), or bad input.
        """
        check_psp_name(psp)
        dag_id, run_id = _check_run(dag_id, run_id)
        actor = check_text(actor, what="actor", max_length=200)
        if incident_id is not None:
            check_incident_id(incident_id)
        at = _check_moment(at)
        read_state = run_state if run_state is not None else _task_sdk_run_state
        refusal: RemediationInProgressError | None = None
        with self.connect() as conn:
            with conn.transaction():
                self._lock(conn, psp)
                held = _lease(
                    by_name(conn)
                    .execute(
                        f"SELECT {_LEASE_COLUMNS} FROM recon.remediation_leases WHERE psp = %s FOR UPDATE",
                        (psp,),
                    )
                    .fetchone()
                )
                state = self._holder_state(held, read_state, dag_id=dag_id, run_id=run_id)
                outcome = decide_lease(held, dag_id=dag_id, run_id=run_id, holder_state=state)
                if outcome is LeaseOutcome.REFUSED:
                    assert held is not None and state is not None  # decide_lease's contract
                    self._event(conn, psp, outcome, dag_id, run_id, incident_id, actor, held, state, at)
                    refusal = RemediationInProgressError(psp, held, state, dag_id=dag_id, run_id=run_id)
                else:
                    claim = LeaseClaim(
                        psp=psp,
                        dag_id=dag_id,
                        run_id=run_id,
                        actor=actor,
                        outcome=outcome,
                        previous=held,
                        previous_state=state,
                        incident_id=incident_id
                        if incident_id is not None
                        else self._kept_incident(held, outcome),
                    )
                    yield claim
                    if claim.incident_id is not None:
                        check_incident_id(claim.incident_id)
                    claim.acquired_at = self._store(conn, claim, at)
                    self._event(conn, psp, outcome, dag_id, run_id, claim.incident_id, actor, held, state, at)
        if refusal is not None:
            self.log.warning("%s", refusal)
            raise refusal
        self.log.info(
            "Remediation lease of PSP %s %s by %s run %s (incident %s)%s",
            psp,
            claim.outcome.value.replace("_", " "),
            dag_id,
            run_id,
            claim.incident_id or "none",
            f", from {held.describe()}, {state or 'no longer in Airflow'}"
            if claim.outcome is LeaseOutcome.TAKEN_OVER and held is not None
            else "",
        )

    def acquire(
        self,
        psp: str,
        *,
        dag_id: str,
        run_id: str,
        actor: str,
        incident_id: str | None = None,
        run_state: RunStateReader | None = None,
        at: datetime | None = None,
    ) -> LeaseClaim:
        """:meth:`claim` with the incident already known, in one call (see there)."""
        with self.claim(
            psp,
            dag_id=dag_id,
            run_id=run_id,
            actor=actor,
            incident_id=incident_id,
            run_state=run_state,
            at=at,
        ) as claim:
            pass
        return claim

    # -- releasing -------------------------------------------------------------------------------
    def release(self, *, dag_id: str, run_id: str, actor: str, at: datetime | None = None) -> Lease | None:
        """Give back the lease run ``run_id`` of ``dag_id`` holds, if any (idempotent).

        :param dag_id: the ending run's DAG.
        :param run_id: the ending run.
        :param actor: who started the run (recorded with the release).
        :param at: the moment of the release (default: the database's ``now()``).
        :returns: the lease given back; ``None`` when the run held none (a dry run, a refused
            run, a lease already given back or taken over).
        """
        dag_id, run_id = _check_run(dag_id, run_id)
        actor = check_text(actor, what="actor", max_length=200)
        at = _check_moment(at)
        with self.connect() as conn, conn.transaction():
            row = (
                by_name(conn)
                .execute(
                    "SELECT psp FROM recon.remediation_leases WHERE dag_id = %s AND run_id = %s",
                    (dag_id, run_id),
                )
                .fetchone()
            )
            if row is None:
                return None
            self._lock(conn, row["psp"])
            released = _lease(
                by_name(conn)
                .execute(
                    "DELETE FROM recon.remediation_leases WHERE dag_id = %s AND run_id = %s"
                    f" RETURNING {_LEASE_COLUMNS}",
                    (dag_id, run_id),
                )
                .fetchone()
            )
            if released is None:  # taken over between the two statements
                return None
            self._event(
                conn, released.psp, LeaseOutcome.RELEASED, dag_id, run_id, released.incident_id, actor,
                None, None, at,
            )  # fmt: skip
        self.log.info("Remediation lease of PSP %s released by %s run %s", released.psp, dag_id, run_id)
        return released

    # -- plumbing --------------------------------------------------------------------------------
    def _lock(self, conn: psycopg.Connection, psp: str) -> None:
        import psycopg

        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(self.lock_timeout * 1000)}ms",))
        try:
            conn.execute(queries.advisory_xact_lock_query(), {"lock_key": f"recon.remediation_lease:{psp}"})
        except psycopg.errors.LockNotAvailable:
            raise LeaseError(
                f"another run has been deciding the remediation lease of PSP {psp} for more than "
                f"{self.lock_timeout:g} s; try again"
            ) from None
        conn.execute("SELECT set_config('lock_timeout', '0', true)")

    @staticmethod
    def _holder_state(
        held: Lease | None, read_state: RunStateReader, *, dag_id: str, run_id: str
    ) -> str | None:
        if not needs_holder_state(held, dag_id=dag_id, run_id=run_id):
            return None
        assert held is not None
        try:
            return read_state(held.dag_id, held.run_id)
        except Exception as exc:
            raise LeaseError(
                f"PSP {held.psp}'s remediation lease is held by {held.describe()} and the state of "
                f"that run could not be read from Airflow ({type(exc).__name__}: {exc}); "
                f"{dag_id} run {run_id} is refused rather than risk two remediations at once"
            ) from exc

    @staticmethod
    def _kept_incident(held: Lease | None, outcome: LeaseOutcome) -> str | None:
        # the scope of the holding run ran again: it keeps its incident unless it chooses another
        return held.incident_id if outcome is LeaseOutcome.REENTERED and held is not None else None

    @staticmethod
    def _store(conn: psycopg.Connection, claim: LeaseClaim, at: datetime | None) -> datetime:
        (acquired_at,) = conn.execute(
            "INSERT INTO recon.remediation_leases"
            " (psp, dag_id, run_id, incident_id, actor, acquired_at, updated_at)"
            " VALUES (%(psp)s, %(dag_id)s, %(run_id)s, %(incident)s, %(actor)s,"
            " COALESCE(%(at)s, now()), COALESCE(%(at)s, now()))"
            " ON CONFLICT (psp) DO UPDATE SET dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id,"
            " incident_id = EXCLUDED.incident_id, actor = EXCLUDED.actor, updated_at = EXCLUDED.updated_at,"
            # the run that already held it keeps its acquisition time
            " acquired_at = CASE WHEN recon.remediation_leases.dag_id = EXCLUDED.dag_id"
            " AND recon.remediation_leases.run_id = EXCLUDED.run_id"
            " THEN recon.remediation_leases.acquired_at ELSE EXCLUDED.acquired_at END"
            " RETURNING acquired_at",
            {
                "psp": claim.psp,
                "dag_id": claim.dag_id,
                "run_id": claim.run_id,
                "incident": claim.incident_id,
                "actor": claim.actor,
                "at": at,
            },
        ).fetchone()
        return acquired_at

    @staticmethod
    def _event(
        conn: psycopg.Connection,
        psp: str,
        outcome: LeaseOutcome,
        dag_id: str,
        run_id: str,
        incident_id: str | None,
        actor: str,
        holder: Lease | None,
        holder_state: str | None,
        at: datetime | None,
    ) -> None:
        other = holder if holder is not None and not holder.held_by(dag_id, run_id) else None
        conn.execute(
            "INSERT INTO recon.remediation_lease_events"
            " (psp, event, dag_id, run_id, incident_id, actor, holder_dag_id, holder_run_id,"
            " holder_incident_id, holder_state, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, COALESCE(%s, now()))",
            (
                psp,
                outcome.value,
                dag_id,
                run_id,
                incident_id,
                actor,
                other.dag_id if other else None,
                other.run_id if other else None,
                other.incident_id if other else None,
                (holder_state or "absent") if other else None,
                at,
            ),
        )


__all__ = ["LeaseClaim", "RemediationLeaseHook", "RunStateReader"]
