"""BillingGatewayHook against a real PostgreSQL: report, summary, snapshot, lag."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pytest

from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
from airflow_recon_provider.reconciliation import (
    ConnectionMissingError,
    DivergenceKind,
    ReconConfig,
    UnknownPspError,
    Window,
)

W = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")


def _load_small_scenario(db) -> None:
    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference) VALUES "
        "(1,'stripe','r1'),(2,'stripe','r2'),(3,'stripe','r3'),(4,'stripe','r3'),(5,'adyen','a1')"
    )
    db.execute(
        """INSERT INTO payment_transactions
           (intent_id, transaction_type, status, amount_minor, currency, created_at) VALUES
           (1,'capture','captured',1000,'brl','2026-11-20T10:10Z'),
           (2,'capture','captured',500,'BRL','2026-11-20T10:59:59Z'),
           (3,'capture','captured',700,'BRL','2026-11-20T10:20Z'),
           (4,'capture','captured',900,'BRL','2026-11-20T10:30Z'),
           (5,'capture','captured',100,'BRL','2026-11-20T10:30Z')"""
    )
    db.execute(
        """INSERT INTO psp_statement_lines
           (psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at,
            statement_id) VALUES
           ('stripe','r1','capture','CAPTURED',1000,'BRL','2026-11-20T10:11Z','s1'),
           ('stripe','r2','capture','captured',500,'BRL','2026-11-20T11:00:01Z','s1'),
           ('stripe','r9','refund','refunded',300,'BRL','2026-11-20T10:40Z','s1')"""
    )


def test_report_streams_divergent_keys_with_status_mapping(db, airflow_conns):
    _load_small_scenario(db)
    config = ReconConfig.from_dict({"psps": [{"name": "stripe", "status_mapping": {"CAPTURED": "captured"}}]})
    rows = list(BillingGatewayHook(config=config).iter_divergences("stripe", W))
    assert [(r.kind, r.provider_reference) for r in rows] == [
        (DivergenceKind.DUPLICATE_IN_GATEWAY, "r3"),
        (DivergenceKind.MISSING_IN_GATEWAY, "r9"),
    ]
    dup = rows[0]
    assert dup.divergent_amount_minor == 900 and isinstance(dup.divergent_amount_minor, int)
    assert dup.gateway_amount_minor == 1600 and dup.gateway_count == 2
    assert json.loads(json.dumps(rows[1].as_dict()))["statement_amount_minor"] == 300


def test_summary_counts_every_gateway_row_and_lag(db, airflow_conns):
    _load_small_scenario(db)
    db.execute(
        "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status) VALUES "
        "('stripe','2026-11-20T06:00Z','2026-11-20T07:00Z','success'),"
        "('stripe','2026-11-20T07:00Z','2026-11-20T08:00Z','failed')"
    )
    summary = BillingGatewayHook(config=ReconConfig()).summary("stripe", W)
    assert summary.gateway_count == 4
    assert summary.gateway_amount_minor == 3100
    assert summary.divergent_count == 3  # r3 duplicate, r9 missing, r1 status (no mapping)
    assert summary.divergent_amount_minor == 900 + 300 + 1000
    assert summary.lag_cycles == 4  # 07:00 -> 11:00
    assert summary.alert and [r.value for r in summary.alert_reasons] == ["lag"]
    doc = summary.as_dict()
    assert doc["by_kind"]["status_mismatch"] == {"count": 1, "amount_minor": 1000}
    assert doc["divergence_pct"] == round(100 * 2200 / 3100, 4)


def test_snapshot_csv_has_runbook_columns(db, airflow_conns, tmp_path):
    _load_small_scenario(db)
    target = tmp_path / "snap" / "stripe.csv"
    rows = BillingGatewayHook(config=ReconConfig()).snapshot_to_csv("stripe", W, target)
    assert rows == 4
    with target.open() as fh:
        data = list(csv.DictReader(fh))
    assert list(data[0])[:5] == [
        "provider_reference",
        "transaction_type",
        "status",
        "amount_minor",
        "processed_at",
    ]
    assert [d["provider_reference"] for d in data] == ["r1", "r3", "r3", "r2"]
    assert not list(tmp_path.glob("snap/.*.part"))


def test_unknown_psp_and_missing_connection(db, airflow_conns, monkeypatch):
    _load_small_scenario(db)
    hook = BillingGatewayHook(config=ReconConfig())
    with pytest.raises(UnknownPspError, match=r"unknown PSP 'paypal'.*adyen, stripe"):
        hook.summary("paypal", W)
    with pytest.raises(UnknownPspError, match="not a valid PSP name"):
        hook.summary("stripe'; DROP TABLE payment_intents; --", W)
    assert db.execute("SELECT count(*) FROM payment_intents").fetchone()[0] == 5
    monkeypatch.delenv("AIRFLOW_CONN_BILLING_GATEWAY_DB")
    with pytest.raises(ConnectionMissingError, match="billing_gateway_db"):
        BillingGatewayHook(config=ReconConfig()).summary("stripe", W)


def test_lag_never_reconciled_is_none(db, airflow_conns):
    hook = BillingGatewayHook(config=ReconConfig())
    assert hook.lag_cycles("stripe", datetime(2026, 11, 20, 12, tzinfo=UTC)) is None
