"""BillingGatewayHook's writes for the reconciliation DAG, against a real PostgreSQL:
statement lines replaced per cycle, cycle log rows, per-PSP pause."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
from airflow_recon_provider.reconciliation import ReconConfig, Window
from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.statements import PspStatement, StatementFormatError, StatementLine

CYCLE = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")


def statement(statement_id: str, *amounts: int, psp: str = "stripe") -> PspStatement:
    lines = tuple(
        StatementLine(
            f"r{i}", "capture", "captured", amount, "BRL", datetime(2026, 11, 20, 10, i, tzinfo=UTC)
        )
        for i, amount in enumerate(amounts)
    )
    return PspStatement(psp=psp, cycle=CYCLE, statement_id=statement_id, lines=lines)


def statement_lines(db, psp="stripe"):
    return db.execute(
        "SELECT provider_reference, amount_minor, statement_id, occurred_at FROM psp_statement_lines "
        "WHERE psp = %s ORDER BY occurred_at, provider_reference",
        (psp,),
    ).fetchall()


@pytest.fixture
def hook(airflow_conns):
    return BillingGatewayHook(config=ReconConfig())


def test_replace_is_idempotent_per_cycle_and_leaves_other_cycles(db, hook):
    db.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) VALUES"
        " ('stripe','old','capture','captured',1,'BRL','2026-11-20T09:59:59Z','prev'),"
        " ('stripe','r0','capture','captured',1,'BRL','2026-11-20T10:00:00Z','stale'),"
        " ('adyen','a0','capture','captured',1,'BRL','2026-11-20T10:30:00Z','adyen')"
    )
    assert hook.replace_statement_lines("stripe", CYCLE, statement("st-1", 100, 200)) == 2
    assert hook.replace_statement_lines("stripe", CYCLE, statement("st-1", 100, 200)) == 2
    rows = statement_lines(db)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("old", 1, "prev"),
        ("r0", 100, "st-1"),
        ("r1", 200, "st-1"),
    ]
    assert len(statement_lines(db, "adyen")) == 1


def test_a_failed_copy_leaves_the_previous_lines(db, hook):
    hook.replace_statement_lines("stripe", CYCLE, statement("st-1", 100, 200))
    before = statement_lines(db)
    overflowing = statement("st-2", 300, 2**70)  # bigint overflow mid-COPY, after the DELETE
    with pytest.raises(Exception, match=r"out of range|bigint"):
        hook.replace_statement_lines("stripe", CYCLE, overflowing)
    assert statement_lines(db) == before


def test_replace_refuses_lines_outside_the_cycle_or_of_another_psp(db, hook):
    other_cycle = Window.parse("2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")
    with pytest.raises(StatementFormatError, match="outside the cycle"):
        hook.replace_statement_lines("stripe", other_cycle, statement("st-1", 100))
    with pytest.raises(StatementFormatError, match="of PSP 'adyen'"):
        hook.replace_statement_lines("stripe", CYCLE, statement("st-1", 100, psp="adyen"))
    assert statement_lines(db) == []


def test_record_cycle_one_row_per_run(db, hook):
    from airflow_recon_provider.reconciliation.kinds import DivergenceKind
    from airflow_recon_provider.reconciliation.report import DivergenceSummary, KindTotal

    summary = DivergenceSummary.in_one_currency(
        psp="stripe",
        window=CYCLE,
        gateway_count=3,
        gateway_amount_minor=3000,
        by_kind={DivergenceKind.AMOUNT_MISMATCH: KindTotal(2, 150)},
    )
    hook.record_cycle("stripe", CYCLE, "running", None, "fetch started")
    hook.record_cycle("stripe", CYCLE, "success", summary, "matched")
    hook.record_cycle("stripe", CYCLE, "failed", None, "second run failed")  # no open row: a new one
    rows = db.execute(
        "SELECT status, divergent_amount_minor, divergent_count, notes, cycle_start, cycle_end "
        "FROM payment_reconciliation_logs ORDER BY id"
    ).fetchall()
    assert [r[:4] for r in rows] == [
        ("success", 150, 2, "fetch started\nmatched"),
        ("failed", 0, 0, "second run failed"),
    ]
    assert rows[0][4:] == (CYCLE.start, CYCLE.end)
    assert [c.status for c in hook.cycle_statuses("stripe", CYCLE)] == ["failed"]
    with pytest.raises(ReconError, match="not one of running, success, failed"):
        hook.record_cycle("stripe", CYCLE, "done")


def test_is_paused_reads_recon_controls(db, hook):
    assert hook.is_paused("stripe") == (False, None, None)
    db.execute(
        "INSERT INTO recon.controls (psp, state, reason, actor) VALUES "
        "('stripe', 'paused', 'INCIDENT-472 PSP statement broken', 'oncall@platform.io'),"
        "('adyen', 'active', '', 'oncall@platform.io')"
    )
    assert hook.is_paused("stripe") == (True, "INCIDENT-472 PSP statement broken", "oncall@platform.io")
    assert hook.is_paused("adyen") == (False, None, None)


def test_is_paused_without_recon_schema(db, hook):
    db.execute("DROP SCHEMA recon CASCADE")
    assert hook.is_paused("stripe") == (False, None, None)
