"""Hook of the data correction on the billing gateway database (``billing_gateway_db``).

Runbook, Mitigação 2 "Correção de Dados": "Ajustar registros inconsistentes atualizando
diretamente o banco (após aprovação do financeiro)" and "Registrar a correção no incidente
e em ``payment_reconciliation_logs.notes``".

Two steps, each one database transaction:

- :meth:`CorrectionsHook.dry_run` streams the divergence report with each key's gateway row
  (one statement, one snapshot), lets the :class:`CorrectionPolicy` decide, writes the
  dry-run CSV artifact and keeps the proposals in ``recon.correction_proposals`` under their
  deterministic correction key. Payment data is only read. The rates of ``recon.fx_rates``
  in force at the window's end are read in the same transaction, for the converted total
  finance sees next to each currency's own figures (DESIGN 3a).
- :meth:`CorrectionsHook.apply`, after finance approved that key, corrects the rows in one
  transaction: per-PSP advisory locks, ``SELECT ... FOR UPDATE`` of the target rows, the
  update only where a row is still in its "before" state, one ``recon.corrections`` row
  and one notes line per corrected transaction, an incident event. Any error rolls all of
  it back; a retry finds the audit rows of a committed attempt and applies nothing twice.

Writes always go to the primary (this connection), never to a replica.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.hooks._rows import by_name
from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
from airflow_recon_provider.hooks.gateway_reader import rates_in_force_on
from airflow_recon_provider.reconciliation import correction_queries as cq
from airflow_recon_provider.reconciliation import queries
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.corrections import (
    DEFAULT_SAMPLE_SIZE,
    INCIDENT_STEP,
    ApplyAction,
    ApplyResult,
    Conflict,
    CorrectionPolicy,
    CurrentRow,
    DryRun,
    DryRunBuilder,
    DryRunCsvWriter,
    GatewayRow,
    ManualItem,
    ProposedCorrection,
    check_row_cap,
    classify_for_apply,
    correction_note,
    currency_code,
    per_currency_text,
    totals_by_currency,
)
from airflow_recon_provider.reconciliation.errors import (
    ApprovalRefusedError,
    CorrectionConflictError,
    CorrectionIncidentError,
    CorrectionLockedError,
    CorrectionSetMismatchError,
    CorrectionSetNotFoundError,
    ReconError,
    SelfApprovalError,
)
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.report import DivergenceRow
from airflow_recon_provider.reconciliation.window import Window, floor_cycle

if TYPE_CHECKING:
    import psycopg

#: proposals sent to the server per COPY batch during a dry run
_COPY_BATCH = 5000


def _lock_key(psp: str) -> str:
    return f"recon.corrections:{psp}"


#: the lock ``BillingGatewayHook.replace_statement_lines`` holds while it swaps a PSP's
#: statement lines: a correction never interleaves with a statement load of its PSP
def _statements_lock_key(psp: str) -> str:
    return f"recon.statements:{psp}"


def _same_person(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _proposal(r: Mapping[str, Any]) -> ProposedCorrection:
    """A stored proposal row of ``correction_queries.load_proposals_query``, by column name."""
    return ProposedCorrection(
        transaction_id=int(r["transaction_id"]),
        provider_reference=r["provider_reference"],
        transaction_type=r["transaction_type"],
        kind=DivergenceKind(r["kind"]),
        before_status=r["before_status"],
        before_processed_at=r["before_processed_at"],
        after_status=r["after_status"],
        amount_minor=int(r["amount_minor"]),
        currency=r["currency"] or "",
    )


def _stored_set(
    conn: psycopg.Connection, correction_key: str, *, psp: str | None, row_cap: int | None, outcome: str
) -> list[dict[str, Any]]:
    """The rows of :func:`cq.proposal_set_query` of a stored dry run — one per (PSP, incident)
    — once the set exists, belongs to ``psp`` (when given) and is within ``row_cap``, counted
    before any proposal is loaded. ``outcome`` ends each error ("nothing was applied")."""
    # one row per (psp, incident_id) with the proposals' ``count``
    sets = by_name(conn).execute(cq.proposal_set_query(), {"key": correction_key}).fetchall()
    if not sets:
        raise CorrectionSetNotFoundError(
            f"no dry run is stored under correction key {correction_key!r}: {outcome}; run the dry run again"
        )
    owners = sorted({r["psp"] for r in sets})
    if psp is not None and owners != [psp]:
        raise CorrectionSetNotFoundError(
            f"correction set {correction_key} belongs to PSP {', '.join(owners)}, not {psp}: {outcome}"
        )
    if row_cap is not None:
        check_row_cap(sum(int(r["count"]) for r in sets), row_cap)
    return sets


def _check_incident(conn: psycopg.Connection, incident_id: str | None, psp: str, *, doing: str) -> None:
    """The incident a correction names exists, is the PSP's and is not closed."""
    if not incident_id:
        return
    row = by_name(conn).execute(cq.incident_of_query(), {"incident_id": incident_id}).fetchone()
    if row is None:
        raise CorrectionIncidentError(
            f"incident {incident_id} does not exist: nothing was {doing}; name an open incident of "
            f"PSP {psp} or none"
        )
    owner, state = row["psp"], row["state"]
    if owner != psp:
        raise CorrectionIncidentError(
            f"incident {incident_id} is of PSP {owner}, not {psp}: nothing was {doing}"
        )
    if state == "closed":
        raise CorrectionIncidentError(f"incident {incident_id} is closed: nothing was {doing}")


class CorrectionsHook(BillingGatewayHook):
    """Propose, dry-run and apply finance-approved corrections of gateway transactions.

    :param billing_gateway_conn_id: Airflow connection of the gateway database (primary).
    :param config: reconciliation configuration (mapping, PSPs and their status mappings).
    """

    hook_name = "Billing Gateway DB — data corrections"

    # -- propose -------------------------------------------------------------------------
    def _iter_candidates(
        self, conn: psycopg.Connection, psp: str, window: Window, kinds: tuple[DivergenceKind, ...]
    ) -> Iterator[tuple[DivergenceRow, GatewayRow | None]]:
        psp_cfg = self.resolve_psp(psp)
        params = self._params(psp_cfg, window, kinds)
        self._tune_for_classification(conn, window)
        with conn.cursor(name="recon_correction_candidates") as cur:
            cur.itersize = self.fetch_size
            cur.execute(cq.candidates_query(self.config.mapping), params)
            for record in cur:
                row = DivergenceRow.from_db(record[:14])
                tid, status, processed_at, amount, currency, created_at = record[14:]
                target = (
                    None
                    if tid is None
                    else GatewayRow(
                        int(tid), status, processed_at, int(amount), currency_code(currency), created_at
                    )
                )
                yield row, target

    def propose(
        self,
        psp: str,
        window: Window,
        kinds: tuple[DivergenceKind, ...] = ALL_KINDS,
        *,
        policy: CorrectionPolicy | None = None,
    ) -> Iterator[ProposedCorrection | ManualItem]:
        """Each divergent key of the report as a proposed correction, or as a manual item
        saying why it is not corrected automatically; streamed, nothing is written."""
        policy = policy or CorrectionPolicy.default()
        with self.connect() as conn, conn.transaction():
            for row, target in self._iter_candidates(conn, psp, window, kinds):
                yield policy.assess(row, target)

    def dry_run(
        self,
        psp: str,
        window: Window,
        kinds: tuple[DivergenceKind, ...] = ALL_KINDS,
        *,
        policy: CorrectionPolicy | None = None,
        scope: str,
        run_id: str,
        requested_by: str,
        incident_id: str | None = None,
        artifact_dir: str | os.PathLike[str],
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        row_cap: int | None = None,
    ) -> DryRun:
        """Propose, write the CSV artifact and keep the proposals under their key.

        The CSV is ``<artifact_dir>/correction_<key>.csv`` in a local folder of the calling
        task, written next to its place and renamed into it, so a reader never sees half of
        it; :class:`TransactionCorrectionOperator` then publishes it to the artifact store
        (:func:`airflow_recon_provider.operators._artifacts.publish_artifact`) and hands on its link,
        never this path. Memory follows the sample size and the COPY batch, not the number
        of rows.

        :param scope: what the correction key is scoped to (the incident, else the run).
        :param requested_by: who asks for the correction (the run's user); stored with the
            proposals, so the apply checks its requester against it and never lets that
            person approve.
        :param incident_id: the incident the correction is for: it must exist, belong to
            ``psp`` and not be closed (:class:`CorrectionIncidentError`, nothing written).
        :param row_cap: recorded in the result (``row_cap_exceeded``); the dry run itself is
            never refused, so finance can see what a too-large set contains.
        """
        check_psp_name(psp)
        self.resolve_psp(psp)
        if not requested_by or not requested_by.strip():
            raise ApprovalRefusedError("a correction needs its requester: nothing was proposed")
        policy = policy or CorrectionPolicy.default()
        builder = DryRunBuilder(
            psp=psp, window=window, scope=scope, sample_size=sample_size, row_cap=row_cap, policy=policy
        )
        target_dir = Path(artifact_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=".correction_", suffix=".csv.part")
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
                writer = DryRunCsvWriter(out)
                with self.connect() as conn, conn.transaction():
                    _check_incident(conn, incident_id, psp, doing="proposed")
                    conn.execute(cq.create_dry_run_temp_query())
                    batch: list[ProposedCorrection] = []
                    for row, target in self._iter_candidates(conn, psp, window, kinds):
                        item = policy.assess(row, target)
                        builder.add(item)
                        if isinstance(item, ProposedCorrection):
                            writer.write(item)
                            batch.append(item)
                            if len(batch) >= _COPY_BATCH:
                                self._copy_batch(conn, batch, builder.count - len(batch))
                                batch = []
                    if batch:
                        self._copy_batch(conn, batch, builder.count - len(batch))
                    key = builder.key.key
                    conn.execute(
                        cq.store_proposals_query(),
                        {"key": key, "psp": psp, "run_id": run_id, "incident_id": incident_id},
                    )
                    conn.execute(
                        cq.store_request_query(),
                        {
                            "key": key,
                            "run_id": run_id,
                            "requested_by": requested_by.strip(),
                            "psp": psp,
                            "incident_id": incident_id,
                        },
                    )
                    rates = rates_in_force_on(
                        conn, builder.currencies, window.end, reporting=self.config.reporting_currency
                    )
            artifact = target_dir / f"correction_{key}.csv"
            os.replace(tmp_name, artifact)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        dry = builder.finish(
            artifact=str(artifact), reporting_currency=self.config.reporting_currency, fx_rates=rates
        )
        self.log.info(
            "Dry run of PSP %s %s: %d correction(s) (%s), %d key(s) left to people; "
            "unconverted currencies: %s; correction set %s, artifact %s",
            psp,
            window,
            dry.proposal_count,
            per_currency_text(dry.by_currency),
            dry.manual_count,
            ", ".join(c or "?" for c in dry.unconverted_currencies) or "none",
            dry.correction_key,
            artifact,
        )
        return dry

    @staticmethod
    def _copy_batch(conn: psycopg.Connection, batch: Sequence[ProposedCorrection], first: int) -> None:
        with conn.cursor().copy(cq.copy_dry_run_query()) as copy:
            for offset, p in enumerate(batch):
                copy.write_row(
                    (
                        first + offset,
                        p.transaction_id,
                        p.provider_reference,
                        p.transaction_type,
                        p.kind.value,
                        p.amount_minor,
                        p.currency,
                        p.before_status,
                        p.before_processed_at,
                        p.after_status,
                    )
                )

    def load_proposals(
        self, correction_key: str, *, psp: str | None = None, row_cap: int | None = None
    ) -> list[ProposedCorrection]:
        """The proposals a dry run kept under ``correction_key``, in dry-run order.

        :param psp: when given, the set must belong to this PSP.
        :param row_cap: a set larger than this is a :class:`RowCapExceededError`, found by a
            count before any row is loaded.
        """
        with self.connect(autocommit=True) as conn:
            _stored_set(conn, correction_key, psp=psp, row_cap=row_cap, outcome="nothing was loaded")
            rows = by_name(conn).execute(cq.load_proposals_query(), {"key": correction_key}).fetchall()
        return [_proposal(r) for r in rows]

    # -- apply ---------------------------------------------------------------------------
    def apply(
        self,
        proposals: Sequence[ProposedCorrection] | None = None,
        *,
        psp: str,
        correction_key: str,
        requested_by: str,
        approved_by: str,
        run_id: str,
        incident_id: str | None = None,
        row_cap: int | None = None,
        abort_on_conflict: bool = False,
        lock_timeout: timedelta = timedelta(seconds=60),
    ) -> ApplyResult:
        """Apply an approved correction set, all or nothing, in one transaction.

        What is applied is always the dry run stored under ``correction_key`` — the rows
        finance saw —, read inside the transaction: ``proposals``, when given, must be exactly
        that set (:class:`CorrectionSetMismatchError` otherwise: a hand-made or altered list
        is never applied). Before any row is touched the set must belong to ``psp`` (a known
        PSP), ``requested_by`` must be a requester stored with its dry run and
        ``approved_by`` none of them, and ``incident_id`` must be the incident the dry run
        was made for, exist, belong to ``psp`` and not be closed.

        Under the PSP's correction and statement advisory locks, the target rows are locked
        (``FOR UPDATE``, id order); a row still equal to its "before" state (status and
        processed_at) gets ``status = after, processed_at = now()``, a ``recon.corrections``
        row and one line in the notes of the PSP's latest ``payment_reconciliation_logs``
        row covering the transaction's cycle. A cycle with no log row gets none from a
        correction (lag and recovery read those rows): its lines wait on the audit rows
        (``note_pending``) and go into the row :meth:`record_cycle` writes for that cycle
        (``ApplyResult.notes_pending_cycles`` names them). The incident gets one event. Rows
        this set corrected before are reported as ``already_applied``; rows changed since
        the dry run as conflicts (left as they are); rows that already have the new status
        as skipped.

        :param row_cap: more proposals than this is a :class:`RowCapExceededError` and
            nothing is applied.
        :param abort_on_conflict: a conflict is a :class:`CorrectionConflictError` and
            nothing is applied (default: apply the rest and report it).
        :param lock_timeout: wait at most this long for the PSP's lock or a row lock, then
            :class:`CorrectionLockedError` and nothing is applied.
        """
        import psycopg

        check_psp_name(psp)
        self.resolve_psp(psp)
        if not requested_by or not approved_by or not requested_by.strip() or not approved_by.strip():
            raise ApprovalRefusedError("a correction needs both a requester and an approver: nothing applied")
        if _same_person(requested_by, approved_by):
            raise SelfApprovalError(
                f"{approved_by} requested this correction and cannot approve it: nothing was applied"
            )
        if proposals is not None:
            ids = [p.transaction_id for p in proposals]
            if len(set(ids)) != len(ids):
                raise CorrectionSetMismatchError(
                    f"the list handed for correction set {correction_key} names a transaction twice: "
                    "nothing was applied"
                )

        mapping = self.config.mapping
        try:
            with self.connect() as conn, conn.transaction():
                lock_ms = f"{max(int(lock_timeout.total_seconds() * 1000), 1)}ms"
                now = conn.execute(cq.lock_timeout_query(), {"lock_timeout": lock_ms}).fetchone()[1]
                for key in (_lock_key(psp), _statements_lock_key(psp)):
                    conn.execute(queries.advisory_xact_lock_query(), {"lock_key": key})
                stored = self._verified_set(
                    conn,
                    proposals,
                    psp=psp,
                    correction_key=correction_key,
                    requested_by=requested_by,
                    approved_by=approved_by,
                    incident_id=incident_id,
                    row_cap=row_cap,
                )
                ids = [p.transaction_id for p in stored]
                done = {
                    int(r[0])
                    for r in conn.execute(cq.already_applied_query(), {"key": correction_key, "ids": ids})
                }
                pending = [p for p in stored if p.transaction_id not in done]
                current = {
                    int(r[0]): CurrentRow(status=r[1], processed_at=r[2], created_at=r[3])
                    for r in conn.execute(
                        cq.lock_targets_query(mapping),
                        {"ids": [p.transaction_id for p in pending], "psp": psp},
                    )
                }
                to_apply: list[ProposedCorrection] = []
                skipped: list[int] = []
                conflicts: list[Conflict] = []
                for p in pending:
                    row = current.get(p.transaction_id)
                    action = classify_for_apply(p, row)
                    if action is ApplyAction.APPLY:
                        to_apply.append(p)
                    elif action is ApplyAction.SKIP:
                        skipped.append(p.transaction_id)
                    else:
                        found = (
                            None
                            if row is None
                            else {
                                "status": row.status,
                                "processed_at": None
                                if row.processed_at is None
                                else row.processed_at.astimezone(UTC).isoformat(),
                            }
                        )
                        conflicts.append(Conflict(p.transaction_id, p.before, found))
                if conflicts and abort_on_conflict:
                    raise CorrectionConflictError(
                        f"{len(conflicts)} transaction(s) of correction set {correction_key} changed "
                        f"since the dry run (first: {conflicts[0].transaction_id}): nothing was applied"
                    )
                incident_event = False
                waiting: tuple[datetime, ...] = ()
                if to_apply:
                    waiting = self._write_corrections(
                        conn,
                        to_apply,
                        current,
                        psp=psp,
                        correction_key=correction_key,
                        requested_by=requested_by,
                        approved_by=approved_by,
                        run_id=run_id,
                        incident_id=incident_id,
                        now=now,
                    )
                    if incident_id:
                        incident_event = self._incident_event(
                            conn,
                            incident_id=incident_id,
                            outcome="applied",
                            actor=approved_by,
                            run_id=run_id,
                            details={
                                "correction_key": correction_key,
                                "psp": psp,
                                "applied": len(to_apply),
                                "applied_by_currency": {
                                    code: {"count": t.count, "amount_minor": t.amount_minor}
                                    for code, t in totals_by_currency(to_apply).items()
                                },
                                "already_applied": len(done),
                                "conflicts": len(conflicts),
                                "skipped": len(skipped),
                                "requested_by": requested_by,
                                "approved_by": approved_by,
                                "notes_pending_cycles": [c.isoformat() for c in waiting],
                            },
                        )
        except psycopg.errors.LockNotAvailable:
            raise CorrectionLockedError(
                f"another correction or statement load of PSP {psp} held its lock for more than "
                f"{lock_timeout}: correction set {correction_key} was not applied; retry later"
            ) from None
        result = ApplyResult(
            correction_key=correction_key,
            applied=tuple(p.transaction_id for p in to_apply),
            already_applied=tuple(p.transaction_id for p in stored if p.transaction_id in done),
            conflicts=tuple(conflicts),
            skipped=tuple(skipped),
            applied_by_currency=totals_by_currency(to_apply),
            processed_at=now if to_apply else None,
            incident_event=incident_event,
            notes_pending_cycles=waiting,
        )
        self.log.info(
            "Correction set %s of PSP %s: %d applied, %d already applied, %d conflict(s), %d skipped; "
            "notes waiting for the log rows of cycle(s): %s",
            correction_key,
            psp,
            len(result.applied),
            len(result.already_applied),
            len(result.conflicts),
            len(result.skipped),
            ", ".join(c.isoformat() for c in waiting) or "none",
        )
        return result

    def _verified_set(
        self,
        conn: psycopg.Connection,
        proposals: Sequence[ProposedCorrection] | None,
        *,
        psp: str,
        correction_key: str,
        requested_by: str,
        approved_by: str,
        incident_id: str | None,
        row_cap: int | None,
    ) -> list[ProposedCorrection]:
        """The stored dry run of ``correction_key`` once every check of :meth:`apply` holds;
        any failure raises, so the transaction rolls back with nothing applied. The row cap
        is checked on the stored count, before any proposal is loaded."""
        sets = _stored_set(conn, correction_key, psp=psp, row_cap=None, outcome="nothing was applied")
        made_for = {r["incident_id"] for r in sets}
        if made_for != {incident_id}:
            named = ", ".join(sorted(i or "no incident" for i in made_for))
            raise CorrectionIncidentError(
                f"correction set {correction_key} was proposed for {named}, not for "
                f"{incident_id or 'no incident'}: nothing was applied"
            )
        check_row_cap(sum(int(r["count"]) for r in sets), row_cap)
        _check_incident(conn, incident_id, psp, doing="applied")
        requesters = [
            r["requested_by"] for r in by_name(conn).execute(cq.requesters_query(), {"key": correction_key})
        ]
        if not requesters:
            raise ApprovalRefusedError(
                f"correction set {correction_key} has no requester stored with its dry run: "
                "nothing was applied; run the dry run again"
            )
        if not any(_same_person(requested_by, r) for r in requesters):
            raise ApprovalRefusedError(
                f"correction set {correction_key} was requested by {', '.join(requesters)}, not by "
                f"{requested_by}: nothing was applied"
            )
        if any(_same_person(approved_by, r) for r in requesters):
            raise SelfApprovalError(
                f"{approved_by} requested correction set {correction_key} and cannot approve it: "
                "nothing was applied"
            )
        stored = [
            _proposal(r) for r in by_name(conn).execute(cq.load_proposals_query(), {"key": correction_key})
        ]
        if proposals is not None:
            given = {p.transaction_id: p for p in proposals}
            expected = {p.transaction_id: p for p in stored}
            if given != expected:
                differ = sorted(
                    tid for tid in given.keys() | expected.keys() if given.get(tid) != expected.get(tid)
                )
                raise CorrectionSetMismatchError(
                    f"the {len(given)} proposal(s) handed for correction set {correction_key} are not "
                    f"its stored dry run of {len(expected)} (first differing transaction: {differ[0]}): "
                    "nothing was applied; apply the stored set"
                )
        return stored

    def _write_corrections(
        self,
        conn: psycopg.Connection,
        to_apply: Sequence[ProposedCorrection],
        current: dict[int, CurrentRow],
        *,
        psp: str,
        correction_key: str,
        requested_by: str,
        approved_by: str,
        run_id: str,
        incident_id: str | None,
        now: datetime,
    ) -> tuple[datetime, ...]:
        """The update, the audit rows and the notes lines of the rows to correct; any
        mismatch between them raises, so the whole transaction rolls back. Returns the
        cycles whose notes wait for their log row."""
        mapping = self.config.mapping
        ids = [p.transaction_id for p in to_apply]
        state = {
            "ids": ids,
            "before_status": [p.before_status for p in to_apply],
            "before_processed_at": [p.before_processed_at for p in to_apply],
            "after_status": [p.after_status for p in to_apply],
        }
        updated = {int(r[0]) for r in conn.execute(cq.update_targets_query(mapping), state)}
        if updated != set(ids):
            raise ReconError(
                f"correction set {correction_key}: {len(updated)} of {len(ids)} locked row(s) updated; "
                "nothing was applied"
            )
        audit = {
            **state,
            "key": correction_key,
            "incident_id": incident_id,
            "psp": psp,
            "refs": [p.provider_reference for p in to_apply],
            "ttypes": [p.transaction_type for p in to_apply],
            "kinds": [p.kind.value for p in to_apply],
            "amounts": [p.amount_minor for p in to_apply],
            "currencies": [p.currency for p in to_apply],
            "requested_by": requested_by,
            "approved_by": approved_by,
            "run_id": run_id,
        }
        inserted = {int(r[0]) for r in conn.execute(cq.insert_audit_query(), audit)}
        if inserted != set(ids):
            raise ReconError(
                f"correction set {correction_key}: {len(inserted)} audit row(s) for {len(ids)} "
                "corrected row(s); nothing was applied"
            )
        # one notes line per correction, in the latest log row of the transaction's cycle:
        # the covering rows of every moment in one statement, then locked in id order
        ordered = sorted(to_apply, key=lambda p: (current[p.transaction_id].created_at, p.transaction_id))
        moments = sorted({current[p.transaction_id].created_at for p in ordered})
        covering = {
            moments[int(n) - 1]: int(log_id)
            for n, log_id in conn.execute(cq.covering_logs_query(mapping), {"psp": psp, "at": moments})
        }
        conn.execute(cq.lock_logs_query(mapping), {"ids": sorted(set(covering.values()))})
        notes: dict[int, list[str]] = {}
        parked: list[tuple[int, datetime, str]] = []
        for p in ordered:
            created_at = current[p.transaction_id].created_at
            line = correction_note(
                p,
                correction_key=correction_key,
                requested_by=requested_by,
                approved_by=approved_by,
                run_id=run_id,
                incident_id=incident_id,
                processed_at=now,
            )
            log_id = covering.get(created_at)
            if log_id is None:
                parked.append((p.transaction_id, floor_cycle(created_at), line))
            else:
                notes.setdefault(log_id, []).append(line)
        for log_id in sorted(notes):
            conn.execute(
                cq.append_log_notes_query(mapping), {"id": log_id, "notes": "\n".join(notes[log_id])}
            )
        if parked:
            conn.execute(
                cq.park_notes_query(),
                {
                    "key": correction_key,
                    "ids": [tid for tid, _, _ in parked],
                    "cycles": [cycle for _, cycle, _ in parked],
                    "notes": [line for _, _, line in parked],
                },
            )
        return tuple(sorted({cycle for _, cycle, _ in parked}))

    @staticmethod
    def _incident_event(
        conn: psycopg.Connection,
        *,
        incident_id: str,
        outcome: str,
        actor: str,
        run_id: str,
        details: dict[str, Any],
    ) -> bool:
        from airflow_recon_provider.i18n import language_scope
        from airflow_recon_provider.reconciliation.steps import correction_outcome

        with language_scope():  # people read the decision in words; the code stays in details
            text = correction_outcome(outcome)
        details = {"decision": outcome, **details}
        row = conn.execute(
            cq.incident_event_query(),
            {
                "incident_id": incident_id,
                "step": INCIDENT_STEP,
                "outcome": text,
                "actor": actor,
                "run_id": run_id,
                "details": json.dumps(details),
            },
        ).fetchone()
        return row is not None

    def record_decision(
        self,
        *,
        incident_id: str | None,
        outcome: str,
        actor: str,
        run_id: str,
        details: dict[str, Any],
    ) -> bool:
        """Add a decision that applied nothing (rejected, timed out, refused) to the incident's
        timeline; ``False`` when there is no such incident."""
        if not incident_id:
            return False
        with self.connect() as conn, conn.transaction():
            return self._incident_event(
                conn, incident_id=incident_id, outcome=outcome, actor=actor, run_id=run_id, details=details
            )


__all__ = ["CorrectionsHook"]
