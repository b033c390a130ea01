"""Hook on the per-PSP reconciliation controls (``recon.controls``, ``recon.control_events``)
in the gateway database (connection ``billing_gateway_db``, always the primary).

Runbook, Ações de Contenção: "Pausar reconciliação automática para PSP afetado";
Encerramento: "Retomar reconciliação automática". The reconciliation DAG reads the state
through :meth:`BillingGatewayHook.is_paused`; this hook writes it. The ``recon`` schema has
fixed names (the provider owns it), so its SQL is plain text with bound values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.hooks._rows import by_name
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.reconciliation import queries
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.controls import Control, ControlChange, ControlState
from airflow_recon_provider.reconciliation.incidents import check_incident_id, check_text

if TYPE_CHECKING:
    import psycopg

_CONTROL_COLUMNS = "psp, state, reason, actor, incident_id, changed_at"


def _control(psp: str, row: Mapping[str, Any] | None) -> Control:
    """A row of ``SELECT {_CONTROL_COLUMNS}`` by column name; none: the PSP never was paused."""
    if row is None:
        return Control(psp=psp, state=ControlState.ACTIVE)
    return Control(
        psp=psp,
        state=ControlState(row["state"]),
        reason=row["reason"] or "",
        actor=row["actor"] or "",
        incident_id=row["incident_id"],
        changed_at=row["changed_at"],
    )


class ReconciliationControlHook(ReconPostgresHook):
    """Pause and resume the automatic reconciliation of a PSP.

    :param billing_gateway_conn_id: Airflow connection of the gateway database.
    :param config: reconciliation configuration; ``ReconConfig.load()`` when omitted.
    """

    conn_name_attr = "billing_gateway_conn_id"
    default_conn_name = BILLING_GATEWAY_CONN_ID
    conn_type = "billing_gateway"
    hook_name = "Billing Gateway reconciliation controls (PostgreSQL)"

    def __init__(self, *args: Any, billing_gateway_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def get(self, psp: str) -> Control:
        """The PSP's control (``active`` when it never was paused)."""
        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            row = (
                by_name(conn)
                .execute(f"SELECT {_CONTROL_COLUMNS} FROM recon.controls WHERE psp = %s", (psp,))
                .fetchone()
            )
        return _control(psp, row)

    def history(self, psp: str) -> list[dict[str, Any]]:
        """Every change of the PSP's control, oldest first."""
        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            return (
                by_name(conn)
                .execute(
                    "SELECT id, state, reason, actor, incident_id, run_id, changed_at"
                    " FROM recon.control_events WHERE psp = %s ORDER BY id",
                    (psp,),
                )
                .fetchall()
            )

    def set_state(
        self,
        psp: str,
        state: ControlState | str,
        *,
        actor: str,
        reason: str,
        incident_id: str | None = None,
        run_id: str | None = None,
    ) -> ControlChange:
        """Put the PSP in ``state``; idempotent.

        In one transaction (writers of the same PSP queue on an advisory lock): when the PSP
        already is in ``state`` nothing is written and the change says so (``retry`` when the
        latest change to that state came from ``run_id`` itself, i.e. a retry of the same
        task); otherwise ``recon.controls`` gets who, why, incident and when, and
        ``recon.control_events`` one row.

        :param psp: a valid PSP name (whether it is known is the caller's check).
        :param state: ``paused`` or ``active``.
        :param actor: who asks (a user, or ``airflow:<dag_id>``).
        :param reason: why.
        :param incident_id: the incident the change belongs to.
        :param run_id: the Airflow run that asks.
        """
        check_psp_name(psp)
        target = ControlState(state)
        actor = check_text(actor, what="actor", max_length=200)
        reason = check_text(reason, what="reason")
        if incident_id is not None:
            check_incident_id(incident_id)
        with self.connect() as conn, conn.transaction():
            conn.execute(queries.advisory_xact_lock_query(), {"lock_key": f"recon.control:{psp}"})
            row = (
                by_name(conn)
                .execute(f"SELECT {_CONTROL_COLUMNS} FROM recon.controls WHERE psp = %s FOR UPDATE", (psp,))
                .fetchone()
            )
            current = _control(psp, row)
            if current.state is target:
                return ControlChange(
                    requested=target,
                    control=current,
                    previous=current,
                    changed=False,
                    retry=self._latest_change_by(conn, psp, target, run_id),
                )
            row = (
                by_name(conn)
                .execute(
                    "INSERT INTO recon.controls (psp, state, reason, actor, incident_id, changed_at)"
                    " VALUES (%(psp)s, %(state)s, %(reason)s, %(actor)s, %(incident)s, now())"
                    " ON CONFLICT (psp) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason,"
                    " actor = EXCLUDED.actor, incident_id = EXCLUDED.incident_id,"
                    " changed_at = EXCLUDED.changed_at"
                    f" RETURNING {_CONTROL_COLUMNS}",
                    {
                        "psp": psp,
                        "state": target.value,
                        "reason": reason,
                        "actor": actor,
                        "incident": incident_id,
                    },
                )
                .fetchone()
            )
            control = _control(psp, row)
            (event_id,) = conn.execute(
                "INSERT INTO recon.control_events"
                " (psp, state, reason, actor, incident_id, run_id, changed_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (psp, target.value, reason, actor, incident_id, run_id, control.changed_at),
            ).fetchone()
        self.log.info("Reconciliation of PSP %s %s by %s (%s)", psp, target.verb, actor, reason)
        return ControlChange(
            requested=target, control=control, previous=current, changed=True, event_id=int(event_id)
        )

    @staticmethod
    def _latest_change_by(
        conn: psycopg.Connection, psp: str, state: ControlState, run_id: str | None
    ) -> bool:
        if not run_id:
            return False
        row = (
            by_name(conn)
            .execute(
                "SELECT state, run_id FROM recon.control_events WHERE psp = %s ORDER BY id DESC LIMIT 1",
                (psp,),
            )
            .fetchone()
        )
        return row is not None and row["state"] == state.value and row["run_id"] == run_id


__all__ = ["ReconciliationControlHook"]
