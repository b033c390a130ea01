"""Values never become SQL and names only through sql.Identifier (DESIGN section 2).

Injection strings as PSP values and as divergence kinds raise the specific errors and
leave the data as it was; a site whose tables and columns have other names (renamed
here with ALTER TABLE ... RENAME) gets the same answers through BillingGatewayHook.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from scenario import STRIPE_ADYEN, cycle_logs, intents, statement_lines, transactions

from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
from airflow_recon_provider.reconciliation import (
    ALL_KINDS,
    DivergenceKind,
    DivergenceKindError,
    DivergenceRow,
    MappingError,
    ReconConfig,
    TableMapping,
    UnknownPspError,
    Window,
    parse_kinds,
)
from airflow_recon_provider.reconciliation.queries import (
    ClassificationParams,
    divergence_by_kind_query,
    divergence_report_query,
    gateway_totals_query,
)

pytestmark = pytest.mark.integration

W = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")

PSP_INJECTIONS = [
    "stripe'; DROP TABLE payment_transactions; --",
    "stripe' OR '1'='1",
    'stripe"; TRUNCATE psp_statement_lines; --',
    "stripe; DELETE FROM payment_intents",
    "stripe\n",
    "x') UNION SELECT 1,2,3 --",
    "Stripe",
    "",
]

KIND_INJECTIONS = [
    "status_mismatch'; DROP TABLE payment_transactions; --",
    "status_mismatch' OR '1'='1",
    "status_mismatch,x'); DELETE FROM psp_statement_lines; --",
    'amount_mismatch"',
]

TABLES = ("payment_intents", "payment_transactions", "psp_statement_lines", "payment_reconciliation_logs")


def _load(db) -> None:
    intents(db, [*STRIPE_ADYEN[:3], (4, "stripe", "r3"), (5, "adyen", "a1"), (6, "stripe", "r5")])
    db.execute("SELECT setval(pg_get_serial_sequence('payment_intents', 'id'), 100)")
    transactions(
        db,
        [
            (1, "capture", "captured", 1000, "brl", "2026-11-20T10:10Z", "2026-11-20T10:11Z"),
            (2, "capture", "captured", 500, "BRL", "2026-11-20T10:59:59Z", None),
            (3, "capture", "captured", 700, "BRL", "2026-11-20T10:20Z", None),
            (4, "capture", "captured", 900, "BRL", "2026-11-20T10:30Z", None),
            (5, "capture", "captured", 100, "BRL", "2026-11-20T10:30Z", None),
            (6, "settlement", "settled", 9007199254740993, "BRL", "2026-11-20T10:45Z", None),
            (6, "refund", "refunded", 250, "USD", "2026-11-20T10:46Z", None),
        ],
        extra=("processed_at",),
    )
    statement_lines(
        db,
        [
            ("stripe", "r1", "capture", "CAPTURED", 1000, "BRL", "2026-11-20T10:11Z", "s1"),
            ("stripe", "r2", "capture", "captured", 500, "BRL", "2026-11-20T11:00:01Z", "s1"),
            ("stripe", "r9", "refund", "refunded", 300, "BRL", "2026-11-20T10:40Z", "s1"),
            ("stripe", "r5", "settlement", "settled", 9007199254740990, "BRL", "2026-11-20T10:45Z", "s1"),
            ("stripe", "r5", "refund", "refunded", 250, "BRL", "2026-11-20T10:46Z", "s1"),
        ],
    )
    cycle_logs(
        db,
        [
            ("stripe", "2026-11-20T07:00Z", "2026-11-20T08:00Z", "success", "2026-11-20T08:01Z"),
            ("stripe", "2026-11-20T08:00Z", "2026-11-20T09:00Z", "failed", "2026-11-20T09:01Z"),
            ("stripe", "2026-11-20T10:00Z", "2026-11-20T11:00Z", "running", "2026-11-20T11:00Z"),
        ],
        extra=("created_at",),
    )
    # the provider's own table keeps its names on every site (schema recon)
    db.execute(
        "INSERT INTO recon.fx_rates (currency, rate, valid_from, source) VALUES ('USD', 5.4321, %s, 'test')",
        (W.start,),
    )


def _fingerprint(db, tables=TABLES) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent digest of every table's contents."""
    out = {}
    for table in tables:
        count, digest = db.execute(
            f"SELECT count(*), md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        ).fetchone()
        out[table] = (count, digest)
    return out


# -- through the hook: specific errors, nothing changed --------------------------------


@pytest.mark.parametrize("configured", [False, True])
def test_injected_psp_is_unknown_and_changes_nothing(db, airflow_conns, configured):
    _load(db)
    # a hostile provider name stored in the data must not make it a "known" PSP
    db.execute(
        "INSERT INTO payment_intents (provider, provider_reference) VALUES (%s, 'evil')", (PSP_INJECTIONS[0],)
    )
    before = _fingerprint(db)
    config = ReconConfig.from_dict({"psps": ["stripe", "adyen"]}) if configured else ReconConfig()
    hook = BillingGatewayHook(config=config)
    for bad in PSP_INJECTIONS:
        with pytest.raises(UnknownPspError) as info:
            list(hook.iter_divergences(bad, W))
        assert repr(bad) in str(info.value)
        with pytest.raises(UnknownPspError):
            hook.summary(bad, W)
        with pytest.raises(UnknownPspError):
            hook.resolve_psp(bad)
        with pytest.raises(UnknownPspError):
            hook.gateway_status_counts(bad, W)
    assert _fingerprint(db) == before
    # and the hook still works for a real PSP afterwards
    assert hook.summary("stripe", W).gateway_count == 6


def test_injected_kinds_raise_and_change_nothing(db, airflow_conns):
    _load(db)
    before = _fingerprint(db)
    hook = BillingGatewayHook(config=ReconConfig())
    for bad in KIND_INJECTIONS:
        with pytest.raises(DivergenceKindError) as info:
            parse_kinds(bad)
        assert "unknown divergence kind" in str(info.value)
        # kinds that bypass parse_kinds are still validated before any SQL is sent
        with pytest.raises(DivergenceKindError):
            list(hook.iter_divergences("stripe", W, kinds=(bad,)))
        with pytest.raises(DivergenceKindError):
            hook.summary("stripe", W, kinds=(DivergenceKind.STATUS_MISMATCH, bad))
    assert _fingerprint(db) == before


def test_kind_subset_through_the_hook(db, airflow_conns):
    _load(db)
    hook = BillingGatewayHook(config=ReconConfig())
    everything = list(hook.iter_divergences("stripe", W))
    subset = (DivergenceKind.STATUS_MISMATCH, DivergenceKind.DUPLICATE_IN_GATEWAY)
    rows = list(hook.iter_divergences("stripe", W, kinds=subset))
    assert rows == [r for r in everything if r.kind in subset]
    assert [r.kind for r in rows] == [DivergenceKind.DUPLICATE_IN_GATEWAY, DivergenceKind.STATUS_MISMATCH]
    summary = hook.summary("stripe", W, kinds=subset)
    assert set(summary.by_kind) == set(subset)


# -- the queries themselves: values are bound, never spliced ---------------------------


@pytest.mark.parametrize("bad", [p for p in PSP_INJECTIONS if p])
def test_bound_psp_value_is_only_data(db, bad):
    """Even bypassing the name check, a PSP value is compared as data, not executed."""
    _load(db)
    # the hostile string is a real provider here: the query must find exactly its rows
    intent = db.execute(
        "INSERT INTO payment_intents (provider, provider_reference) VALUES (%s, 'evil') RETURNING id", (bad,)
    ).fetchone()[0]
    db.execute(
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (%s, 'capture', 'captured', 42, 'BRL', '2026-11-20T10:05Z')",
        (intent,),
    )
    before = _fingerprint(db)
    m = TableMapping()
    params = ClassificationParams(psp=bad, window=W, grace=timedelta(hours=1), status_mapping={}).as_params()
    rows = [DivergenceRow.from_db(r) for r in db.execute(divergence_report_query(m), params)]
    assert [(r.kind, r.provider_reference, r.divergent_amount_minor) for r in rows] == [
        (DivergenceKind.MISSING_IN_STATEMENT, "evil", 42)
    ]
    assert db.execute(gateway_totals_query(m), params).fetchall() == [("BRL", 1, 42)]
    assert db.execute(divergence_by_kind_query(m), params).fetchall() == [
        ("BRL", "missing_in_statement", 1, 42)
    ]
    assert _fingerprint(db) == before


def test_bound_kinds_and_status_mapping_are_only_data(db):
    _load(db)
    before = _fingerprint(db)
    m = TableMapping()
    params = ClassificationParams(
        psp="stripe",
        window=W,
        grace=timedelta(hours=1),
        status_mapping={"CAPTURED'); DROP TABLE payment_transactions; --": "x", "CAPTURED": "captured"},
    ).as_params()
    rows = [DivergenceRow.from_db(r) for r in db.execute(divergence_report_query(m), params)]
    assert "r1" not in {r.provider_reference for r in rows}  # the mapping applied, as data
    # a raw kinds array that bypasses parse_kinds matches nothing and executes nothing
    params["kinds"] = KIND_INJECTIONS
    assert db.execute(divergence_report_query(m), params).fetchall() == []
    assert db.execute(divergence_by_kind_query(m), params).fetchall() == []
    assert _fingerprint(db) == before


def test_injected_names_never_reach_the_database(db, airflow_conns):
    _load(db)
    before = _fingerprint(db)
    for section, key in (
        ("payment_transactions", "table"),
        ("payment_intents", "provider"),
        ("psp_statement_lines", "psp"),
    ):
        with pytest.raises(MappingError, match="DROP TABLE"):
            BillingGatewayHook(
                config=ReconConfig.from_dict(
                    {"mapping": {section: {key: "payment_intents; DROP TABLE payment_transactions"}}}
                )
            )
    assert _fingerprint(db) == before


# -- a site with other names -----------------------------------------------------------

CUSTOM = {
    "payment_intents": {
        "table": "billing.PaymentIntents",
        "provider": "acquirer",
        "provider_reference": "ref",
    },
    "payment_transactions": {
        "table": "billing.tx_rows",
        "intent_id": "intent",
        "transaction_type": "kind",
        "amount_minor": "AmountCents",
        "created_at": "booked_at",
        "processed_at": "done_at",
    },
    "psp_statement_lines": {
        "table": "stmt_lines",
        "psp": "psp_code",
        "provider_reference": "psp_ref",
        "occurred_at": "seen_at",
        "currency": "ccy",
    },
    "payment_reconciliation_logs": {
        "table": "billing.recon_cycles",
        "status": "state",
        "cycle_end": "ends_at",
    },
}

RENAMES = """
CREATE SCHEMA billing;
ALTER TABLE payment_intents SET SCHEMA billing;
ALTER TABLE billing.payment_intents RENAME TO "PaymentIntents";
ALTER TABLE billing."PaymentIntents" RENAME COLUMN provider TO acquirer;
ALTER TABLE billing."PaymentIntents" RENAME COLUMN provider_reference TO ref;
ALTER TABLE payment_transactions SET SCHEMA billing;
ALTER TABLE billing.payment_transactions RENAME TO tx_rows;
ALTER TABLE billing.tx_rows RENAME COLUMN intent_id TO intent;
ALTER TABLE billing.tx_rows RENAME COLUMN transaction_type TO kind;
ALTER TABLE billing.tx_rows RENAME COLUMN amount_minor TO "AmountCents";
ALTER TABLE billing.tx_rows RENAME COLUMN created_at TO booked_at;
ALTER TABLE billing.tx_rows RENAME COLUMN processed_at TO done_at;
ALTER TABLE psp_statement_lines RENAME TO stmt_lines;
ALTER TABLE stmt_lines RENAME COLUMN psp TO psp_code;
ALTER TABLE stmt_lines RENAME COLUMN provider_reference TO psp_ref;
ALTER TABLE stmt_lines RENAME COLUMN occurred_at TO seen_at;
ALTER TABLE stmt_lines RENAME COLUMN currency TO ccy;
ALTER TABLE payment_reconciliation_logs SET SCHEMA billing;
ALTER TABLE billing.payment_reconciliation_logs RENAME TO recon_cycles;
ALTER TABLE billing.recon_cycles RENAME COLUMN status TO state;
ALTER TABLE billing.recon_cycles RENAME COLUMN cycle_end TO ends_at;
"""


def _everything(hook: BillingGatewayHook, tmp_path, tag: str) -> dict:
    snapshot = tmp_path / f"{tag}.csv"
    n = hook.snapshot_to_csv("stripe", W, snapshot)
    with snapshot.open() as fh:
        snap_rows = list(csv.reader(fh))
    reference = datetime(2026, 11, 20, 12, tzinfo=UTC)
    return {
        "known": hook.known_psps(),
        "resolved": hook.resolve_psp("stripe"),
        "report": list(hook.iter_divergences("stripe", W)),
        "report_adyen": list(hook.iter_divergences("adyen", W)),
        "subset": list(hook.iter_divergences("stripe", W, kinds=(DivergenceKind.AMOUNT_MISMATCH,))),
        "summary": hook.summary("stripe", W).as_dict(),
        "status_counts": hook.gateway_status_counts("stripe", W),
        "lag": hook.lag_cycles("stripe", reference),
        "cycles": [
            (c.cycle_start, c.status)
            for c in hook.cycle_statuses(
                "stripe", Window.parse("2026-11-20T06:00:00Z", "2026-11-20T12:00:00Z")
            )
        ],
        "snapshot_rows": n,
        "snapshot": snap_rows[1:],
    }


def test_custom_mapping_end_to_end(db, airflow_conns, tmp_path):
    _load(db)
    config_default = ReconConfig.from_dict({"psps": [{"name": "stripe", "status_mapping": {}}, "adyen"]})
    expected = _everything(BillingGatewayHook(config=config_default), tmp_path, "default")

    # the figures of the scenario, so the comparison below is not between two empty answers
    assert expected["known"] == ["adyen", "stripe"]
    assert [(r.kind, r.provider_reference, r.transaction_type) for r in expected["report"]] == [
        (DivergenceKind.DUPLICATE_IN_GATEWAY, "r3", "capture"),
        (DivergenceKind.MISSING_IN_GATEWAY, "r9", "refund"),
        (DivergenceKind.CURRENCY_MISMATCH, "r5", "refund"),
        (DivergenceKind.AMOUNT_MISMATCH, "r5", "settlement"),
        (DivergenceKind.STATUS_MISMATCH, "r1", "capture"),
    ]
    assert expected["subset"] == [expected["report"][3]]
    assert expected["subset"][0].divergent_amount_minor == 3
    assert [(r.kind, r.provider_reference) for r in expected["report_adyen"]] == [
        (DivergenceKind.MISSING_IN_STATEMENT, "a1")
    ]
    assert expected["summary"]["gateway_count"] == 6
    # the USD refund in its own currency, converted at 5.4321: 250 * 5.4321 = 1358.025 -> 1358
    assert expected["summary"]["by_currency"]["USD"]["gateway_amount_minor"] == 250
    assert expected["summary"]["by_currency"]["USD"]["by_kind"] == {
        "currency_mismatch": {"count": 1, "amount_minor": 250}
    }
    assert expected["summary"]["by_currency"]["BRL"]["gateway_amount_minor"] == (
        9_007_199_254_740_993 + 1000 + 500 + 700 + 900
    )
    assert (
        expected["summary"]["gateway_amount_minor"] == 9_007_199_254_740_993 + 1000 + 500 + 700 + 900 + 1358
    )
    assert expected["summary"]["divergent_amount_minor"] == 900 + 300 + 1358 + 3 + 1000
    assert expected["summary"]["fx_rates"]["USD"]["rate"] == "5.4321"
    assert expected["report"][2].currency == "USD" and expected["report"][2].statement_currency == "BRL"
    assert expected["lag"] == 4
    assert expected["snapshot_rows"] == 6
    assert len(expected["cycles"]) == 3

    db.execute(RENAMES)
    tables = {r[0] for r in db.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables")}
    assert {
        'billing."PaymentIntents"',
        "billing.tx_rows",
        "public.stmt_lines",
        "billing.recon_cycles",
    } <= tables
    assert "public.payment_transactions" not in tables

    # the runbook names are gone: a hook with the default mapping cannot find the tables
    with pytest.raises(psycopg.errors.UndefinedTable):
        list(BillingGatewayHook(config=config_default).iter_divergences("stripe", W))

    config_custom = ReconConfig.from_dict(
        {"psps": [{"name": "stripe", "status_mapping": {}}, "adyen"], "mapping": CUSTOM}
    )
    before = _fingerprint(
        db, ('billing."PaymentIntents"', "billing.tx_rows", "stmt_lines", "billing.recon_cycles")
    )
    got = _everything(BillingGatewayHook(config=config_custom), tmp_path, "custom")
    assert got == expected
    assert (
        _fingerprint(
            db, ('billing."PaymentIntents"', "billing.tx_rows", "stmt_lines", "billing.recon_cycles")
        )
        == before
    )

    # without a configured PSP list, PSPs come from the renamed provider column
    hook = BillingGatewayHook(config=ReconConfig.from_dict({"mapping": CUSTOM}))
    assert hook.known_psps() == ["adyen", "stripe"]
    assert hook.resolve_psp("adyen").name == "adyen"
    with pytest.raises(UnknownPspError, match="adyen, stripe"):
        hook.resolve_psp("paypal")
    assert hook.summary("stripe", W, kinds=ALL_KINDS).divergent_count == 5
