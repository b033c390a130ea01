"""BillingGatewayHook against a real PostgreSQL: report, summary, snapshot, lag."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pytest
from scenario import STRIPE_ADYEN, cycle_logs, intents, statement_lines, transactions

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
    # r3 twice in the gateway (a duplicate), a1 of adyen
    intents(db, [*STRIPE_ADYEN[:3], (4, "stripe", "r3"), (5, "adyen", "a1")])
    transactions(
        db,
        [
            (1, "capture", "captured", 1000, "brl", "2026-11-20T10:10Z"),
            (2, "capture", "captured", 500, "BRL", "2026-11-20T10:59:59Z"),
            (3, "capture", "captured", 700, "BRL", "2026-11-20T10:20Z"),
            (4, "capture", "captured", 900, "BRL", "2026-11-20T10:30Z"),
            (5, "capture", "captured", 100, "BRL", "2026-11-20T10:30Z"),
        ],
    )
    statement_lines(
        db,
        [
            ("stripe", "r1", "capture", "CAPTURED", 1000, "BRL", "2026-11-20T10:11Z", "s1"),
            ("stripe", "r2", "capture", "captured", 500, "BRL", "2026-11-20T11:00:01Z", "s1"),
            ("stripe", "r9", "refund", "refunded", 300, "BRL", "2026-11-20T10:40Z", "s1"),
        ],
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


# -- DESIGN 3a: figures per currency, converted with the rates in force at the window end --


def _add_currencies(db) -> None:
    """EUR rows that match, and a JPY gateway row missing from the statement."""
    intents(db, [(6, "stripe", "e1"), (7, "stripe", "j1"), (8, "stripe", "e2"), (9, "stripe", "e2")])
    transactions(
        db,
        [
            (6, "capture", "captured", 1000, "EUR", "2026-11-20T10:15Z"),
            (7, "capture", "captured", 500, "jpy", "2026-11-20T10:16Z"),
            (8, "refund", "refunded", 100, "EUR", "2026-11-20T10:17Z"),
            (9, "refund", "refunded", 7, "BHD", "2026-11-20T10:18Z"),
        ],
    )
    statement_lines(
        db,
        [
            ("stripe", "e1", "capture", "captured", 1000, "eur", "2026-11-20T10:15:30Z", "s1"),
            ("stripe", "e2", "refund", "refunded", 100, "EUR", "2026-11-20T10:17:30Z", "s1"),
        ],
    )
    # lag 0 at the window end: the only possible alert reasons are amount and fx_rate_missing
    cycle_logs(db, [("stripe", "2026-11-20T10:00Z", "2026-11-20T11:00Z", "success")])


def _rate(db, currency: str, rate: str, valid_from: str, source: str = "test") -> None:
    db.execute(
        "INSERT INTO recon.fx_rates (currency, rate, valid_from, source) VALUES (%s, %s, %s, %s)",
        (currency, rate, valid_from, source),
    )


def test_summary_converts_with_the_rates_in_force_and_a_missing_rate_alerts(db, db_url, airflow_conns):
    import asyncio
    from decimal import Decimal

    import psycopg

    from airflow_recon_provider.hooks.async_postgres import fetch_summary

    _load_small_scenario(db)
    _add_currencies(db)
    # EUR: the greatest valid_from <= window end (11:00:00, inclusive) is in force
    _rate(db, "EUR", "6.00", "2026-11-19T00:00Z", "old")
    _rate(db, "EUR", "6.10", "2026-11-20T10:59:59Z", "before the end")
    _rate(db, "EUR", "6.20", "2026-11-20T11:00:00Z", "at the end")
    _rate(db, "EUR", "9.99", "2026-11-20T11:00:01Z", "after the end")
    _rate(db, "BHD", "13.5", "2026-11-01T00:00Z")
    _rate(db, "USD", "5.43", "2026-11-01T00:00Z")  # no USD row in the window: never listed
    _rate(db, "JPY", "0.0355", "2026-11-20T11:00:01Z")  # yen: only a rate after the window
    config = ReconConfig.from_dict({"psps": ["stripe"]})
    hook = BillingGatewayHook(config=config)

    async def poll():
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await fetch_summary(conn, config, "stripe", W, W.end)

    summary = hook.summary("stripe", W)
    assert summary == asyncio.run(poll())  # the sensor's async path: the same figures
    doc = summary.as_dict()
    assert doc["reporting_currency"] == "BRL"
    assert doc["fx_rates"] == {
        "BHD": {"rate": "13.5", "valid_from": "2026-11-01T00:00:00+00:00", "source": "test"},
        "EUR": {"rate": "6.2", "valid_from": "2026-11-20T11:00:00+00:00", "source": "at the end"},
    }
    assert doc["unconverted_currencies"] == ["JPY"]
    # counts include every currency; amounts leave the yen out, never count it as zero
    assert doc["gateway_count"] == 4 + 4
    assert doc["divergent_count"] == 3 + 2  # + the missing yen row, the EUR/BHD duplicate
    assert doc["by_currency"]["JPY"] == {
        "exponent": 0,
        "gateway_count": 1,
        "gateway_amount_minor": 500,
        "divergent_count": 1,
        "divergent_amount_minor": 500,
        "by_kind": {"missing_in_statement": {"count": 1, "amount_minor": 500}},
    }
    # e2 is a duplicate in EUR (first copy, the key's currency) with an extra copy in BHD
    assert doc["by_currency"]["EUR"]["by_kind"] == {"duplicate_in_gateway": {"count": 1, "amount_minor": 0}}
    assert doc["by_currency"]["BHD"]["by_kind"] == {"duplicate_in_gateway": {"count": 0, "amount_minor": 7}}
    # BRL 3100; EUR 1100 * 6.2 = 6820; BHD 7 fils * 13.5 / 10 = 9.45 -> 9 centavos
    assert doc["gateway_amount_minor"] == 3100 + 6820 + 9
    assert doc["divergent_amount_minor"] == 900 + 300 + 1000 + 0 + 9
    assert doc["by_kind"]["duplicate_in_gateway"] == {"count": 2, "amount_minor": 900 + 0 + 9}
    assert doc["alert_reasons"] == ["fx_rate_missing"] and doc["alert"] is True
    assert summary.fx_rate_missing and summary.recovered is False

    # the yen's rate comes into force at the window end: converted, the alert clears
    _rate(db, "JPY", "0.0350", "2026-11-20T11:00:00Z")
    summary = hook.summary("stripe", W)
    assert summary == asyncio.run(poll())
    assert summary.fx_rates["JPY"].rate == Decimal("0.0350")
    assert summary.unconverted_currencies == [] and summary.alert_reasons == []
    assert summary.divergent_amount_minor == 900 + 300 + 1000 + 9 + 1750  # 500 yen * 0.035 = R$ 17,50
    assert summary.as_dict()["by_kind"]["missing_in_statement"] == {"count": 1, "amount_minor": 1750}

    # another reporting currency: recon.fx_rates is read as units of it per unit of each
    # currency, and reais have no row: left out, and their divergence alerts
    eur = BillingGatewayHook(config=ReconConfig.from_dict({"psps": ["stripe"], "reporting_currency": "EUR"}))
    summary = eur.summary("stripe", W)
    assert summary.reporting_currency == "EUR"
    assert summary.unconverted_currencies == ["BRL"]  # EUR itself needs no rate
    assert "fx_rate_missing" in summary.as_dict()["alert_reasons"] and not summary.recovered


def test_summary_in_the_reporting_currency_only_needs_no_rate(db, airflow_conns):
    _load_small_scenario(db)
    db.execute("DELETE FROM recon.fx_rates")
    summary = BillingGatewayHook(config=ReconConfig()).summary("stripe", W)
    doc = summary.as_dict()
    assert list(doc["by_currency"]) == ["BRL"]
    assert doc["fx_rates"] == {} and doc["unconverted_currencies"] == []
    assert "fx_rate_missing" not in doc["alert_reasons"]
    assert (doc["gateway_amount_minor"], doc["divergent_amount_minor"]) == (3100, 2200)
