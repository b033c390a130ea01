"""Hook on the billing gateway database (connection ``billing_gateway_db``).

Runbook, Investigação: the snapshot query (step 1), the divergence report and
summary, and the state of reconciliation cycles (``payment_reconciliation_logs``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.hooks.gateway_reader import GatewayReader
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.reconciliation import correction_queries as cq
from airflow_recon_provider.reconciliation import cycle_store, queries
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
from airflow_recon_provider.reconciliation.report import (
    DivergenceRow,
    DivergenceSummary,
)
from airflow_recon_provider.reconciliation.schedule import CYCLE_STATUSES
from airflow_recon_provider.reconciliation.statements import PspStatement, StatementFormatError
from airflow_recon_provider.reconciliation.window import Window, cycles_between

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class CycleStatus:
    """The latest ``payment_reconciliation_logs`` row of one cycle."""

    cycle_start: datetime
    cycle_end: datetime
    status: str
    divergent_amount_minor: int
    divergent_count: int
    recorded_at: datetime


class BillingGatewayHook(GatewayReader, ReconPostgresHook):
    """Read the billing gateway's transactions, statement lines and reconciliation logs.

    :param billing_gateway_conn_id: Airflow connection of the gateway database.
    :param config: reconciliation configuration (mapping, PSPs, thresholds, grace).
    :param use_cycle_store: answer reports and summaries from the cycles stored by
        ``match_transactions`` where they are still exact (default); ``False`` classifies
        every window live.
    """

    conn_name_attr = "billing_gateway_conn_id"
    default_conn_name = BILLING_GATEWAY_CONN_ID
    conn_type = "billing_gateway"
    hook_name = "Billing Gateway DB (PostgreSQL)"

    def __init__(
        self,
        *args: Any,
        billing_gateway_conn_id: str = default_conn_name,
        use_cycle_store: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.use_cycle_store = use_cycle_store

    def store_cycle(self, psp: str, cycle: Window) -> bool:
        """Classify ``cycle`` of ``psp`` and store the result for later readers (what
        ``match_transactions`` does each hour). Returns ``False`` when the store is not
        enabled for this table mapping (opt-in: ``airflow-recon migrate --cycle-store``):
        nothing stored."""
        psp_cfg = self.resolve_psp(psp)
        params = self._params(psp_cfg, cycle, ALL_KINDS)
        fingerprint = cycle_store.mapping_fingerprint(self.config.mapping)
        params.update(
            fingerprint=fingerprint, grace_seconds=cycle_store.grace_seconds(self.config.match_grace)
        )
        lock_key = f"recon.cycle_store:{psp_cfg.name}:{cycle.start.isoformat()}"
        with self.connect() as conn, conn.transaction():
            if conn.execute(cycle_store.store_ready_query()).fetchone()[0] != fingerprint:
                state = conn.execute(cycle_store.store_state_query()).fetchone()
                if state is None:  # opt-in, not enabled: nothing to say every hour
                    self.log.debug("cycle store not enabled: PSP %s cycle %s not stored", psp_cfg.name, cycle)
                else:
                    self.log.warning(
                        "cycle store %s (re-enable with `airflow-recon migrate --cycle-store`): "
                        "PSP %s cycle %s not stored; reports classify live",
                        "disabled after a trigger failure"
                        if not state[1]
                        else "installed for another table mapping",
                        psp_cfg.name,
                        cycle,
                    )
                return False
            conn.execute(queries.advisory_xact_lock_query(), {"lock_key": lock_key})
            conn.execute(cycle_store.forget_cycle_children_query(), params)
            self._tune_for_classification(conn, cycle)
            # one statement: the classification, the stored rows and the snapshot they came
            # from are the same
            conn.execute(cycle_store.store_cycle_query(self.config.mapping), params)
        return True

    # -- investigation -------------------------------------------------------------------
    def snapshot_to_csv(self, psp: str, window: Window, path: str | os.PathLike[str]) -> int:
        """Write the runbook's snapshot query to ``path`` as CSV with COPY; return data rows.

        The file is written next to its destination and renamed into place, so a reader
        never sees half a snapshot.
        """
        psp_cfg = self.resolve_psp(psp)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        lines = 0
        try:
            with os.fdopen(fd, "wb") as out, self.connect() as conn, conn.transaction():
                params = {"psp": psp_cfg.name, "start": window.start, "end": window.end}
                with conn.cursor().copy(queries.snapshot_copy_query(self.config.mapping), params) as copy:
                    for chunk in copy:
                        data = bytes(chunk)
                        lines += data.count(b"\n")
                        out.write(data)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return max(lines - 1, 0)

    def gateway_status_counts(self, psp: str, window: Window) -> list[tuple[str, str, int, int]]:
        """Gateway rows by status and currency: ``(status, currency, count, amount_minor)``,
        each amount in its own currency's minor units."""
        psp_cfg = self.resolve_psp(psp)
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(
                queries.gateway_status_counts_query(self.config.mapping),
                {"psp": psp_cfg.name, "start": window.start, "end": window.end},
            )
            return [(status, currency, int(n), int(amount)) for status, currency, n, amount in rows]

    # -- reconciliation cycles -------------------------------------------------------------
    def lag_cycles(self, psp: str, reference: datetime | None = None) -> int | None:
        """Whole cycles since the end of the PSP's latest successful cycle (``None``: never)."""
        reference = reference or datetime.now(UTC)
        with self.connect(autocommit=True) as conn:
            last_end = conn.execute(
                queries.latest_success_query(self.config.mapping), {"psp": psp, "reference": reference}
            ).fetchone()[0]
        return cycles_between(last_end, reference)

    def cycle_statuses(self, psp: str, window: Window) -> list[CycleStatus]:
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(
                queries.cycle_statuses_query(self.config.mapping),
                {"psp": psp, "start": window.start, "end": window.end},
            )
            return [CycleStatus(r[0], r[1], r[2], int(r[3]), int(r[4]), r[5]) for r in rows]

    # -- the reconciliation DAG's writes (fetch_psp_statements / match_transactions) ------
    def replace_statement_lines(self, psp: str, cycle: Window, statement: PspStatement) -> int:
        """Make ``statement`` the PSP's statement lines of ``cycle``; return the lines written.

        Idempotent per cycle: in one transaction the PSP's lines whose ``occurred_at`` is in
        the cycle are deleted and the statement's lines are copied in, so re-running a
        cycle never duplicates lines and a failure leaves the previous lines in place.
        Writers of the same PSP are serialised by an advisory lock, so a reprocess and the
        hourly run of the same cycle cannot interleave their delete and copy.
        """

        check_psp_name(psp)
        if statement.psp != psp:
            raise StatementFormatError(
                f"statement {statement.statement_id!r} is of PSP {statement.psp!r}, not {psp!r}"
            )
        outside = next((line for line in statement.lines if not cycle.contains(line.occurred_at)), None)
        if outside is not None:
            raise StatementFormatError(
                f"PSP {psp} statement {statement.statement_id}: line {outside.provider_reference!r} "
                f"occurred at {outside.occurred_at.isoformat()}, outside the cycle {cycle}"
            )
        mapping = self.config.mapping
        window = {"psp": psp, "start": cycle.start, "end": cycle.end}
        with self.connect() as conn, conn.transaction():
            conn.execute(queries.advisory_xact_lock_query(), {"lock_key": f"recon.statements:{psp}"})
            deleted = conn.execute(queries.delete_statement_lines_query(mapping), window).rowcount
            with conn.cursor().copy(queries.copy_statement_lines_query(mapping)) as copy:
                for line in statement.lines:
                    copy.write_row(
                        (
                            psp,
                            line.provider_reference,
                            line.transaction_type,
                            line.status,
                            line.amount_minor,
                            line.currency,
                            line.occurred_at,
                            statement.statement_id,
                        )
                    )
        self.log.info(
            "PSP %s cycle %s: replaced %d statement line(s) with %d from statement %s",
            psp,
            cycle,
            deleted,
            len(statement.lines),
            statement.statement_id,
        )
        return len(statement.lines)

    def record_cycle(
        self,
        psp: str,
        cycle: Window,
        status: str,
        summary: DivergenceSummary | None = None,
        notes: str = "",
    ) -> None:
        """Record the state of a reconciliation cycle in ``payment_reconciliation_logs``.

        One row per run of a cycle: ``running`` opens it, ``success`` or ``failed`` closes
        the cycle's latest ``running`` row (or writes a new row when none is open). The
        divergent figures come from ``summary`` (zero without one); ``notes`` are appended
        to the row's notes, never replace them.

        :param status: ``running``, ``success`` or ``failed``.
        """

        check_psp_name(psp)
        if status not in CYCLE_STATUSES:
            raise ReconError(f"cycle status {status!r} is not one of {', '.join(CYCLE_STATUSES)}")
        mapping = self.config.mapping
        params: dict[str, Any] = {
            "psp": psp,
            "start": cycle.start,
            "end": cycle.end,
            "status": status,
            "amount": summary.divergent_amount_minor if summary is not None else 0,
            "count": summary.divergent_count if summary is not None else 0,
            "notes": notes or "",
        }
        lock_key = f"recon.cycle:{psp}:{cycle.start.isoformat()}:{cycle.end.isoformat()}"
        with self.connect() as conn, conn.transaction():
            conn.execute(queries.advisory_xact_lock_query(), {"lock_key": lock_key})
            open_row = conn.execute(queries.open_cycle_log_query(mapping), params).fetchone()
            if open_row is None:
                log_id = conn.execute(queries.insert_cycle_log_query(mapping), params).fetchone()[0]
            else:
                log_id = open_row[0]
                conn.execute(queries.update_cycle_log_query(mapping), {**params, "id": log_id})
            self._write_pending_correction_notes(conn, psp, cycle, log_id)

    def _write_pending_correction_notes(
        self, conn: psycopg.Connection, psp: str, cycle: Window, log_id: int
    ) -> None:
        """Notes lines of corrections applied while the cycle had no log row (they never
        write one: lag and recovery read those rows) go into the row recording it now."""
        kept, allowed = conn.execute(cq.notes_pending_query()).fetchone()
        if not kept:
            return
        if not allowed:
            self.log.warning(
                "PSP %s cycle %s: this role may not take waiting correction notes from "
                "recon.corrections (schema/least_privilege.sql grants it); they stay there",
                psp,
                cycle,
            )
            return
        (lines,) = conn.execute(
            cq.take_pending_notes_query(), {"psp": psp, "start": cycle.start, "end": cycle.end}
        ).fetchone()
        if lines:
            conn.execute(cq.append_log_notes_query(self.config.mapping), {"id": log_id, "notes": lines})
            self.log.info("PSP %s cycle %s: correction notes that waited for this row written", psp, cycle)

    def is_paused(self, psp: str) -> tuple[bool, str | None, str | None]:
        """Whether reconciliation of ``psp`` is paused in ``recon.controls``: ``(paused,
        reason, actor)``; reason and actor are ``None`` when it is not paused.

        Without the ``recon`` schema (``airflow-recon migrate`` never ran) nobody can have
        paused a PSP, so the answer is "not paused", with a warning.
        """

        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            if not conn.execute(queries.controls_table_exists_query()).fetchone()[0]:
                self.log.warning(
                    "recon.controls does not exist (run `airflow-recon migrate`): "
                    "per-PSP pause is not available, treating PSP %s as active",
                    psp,
                )
                return False, None, None
            row = conn.execute(queries.control_state_query(), {"psp": psp}).fetchone()
        if row is None or row[0] != "paused":
            return False, None, None
        return True, (row[1] or None), (row[2] or None)


def write_report_csv(rows: Iterator[DivergenceRow], path: str | os.PathLike[str]) -> int:
    """Stream divergent rows to a CSV file (used for artifacts)."""
    from airflow_recon_provider.reconciliation.report import write_csv

    with open(path, "w", newline="") as out:
        return write_csv(rows, out)


__all__ = ["BillingGatewayHook", "CycleStatus", "write_report_csv"]
