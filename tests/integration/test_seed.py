"""The deterministic seed generator against a real PostgreSQL.

The seed is what the demo, the CLI and the benchmarks rehearse the runbook on, so its
ground truth must be exactly what the classification SQL finds (DESIGN section 3),
and the same spec must give the same bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fx_support import insert_parity_rates
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from airflow_recon_provider.devtools.seed import (
    SeedResult,
    SeedSpec,
    SeedSpecError,
    generate_chunks,
    seed_database,
)
from airflow_recon_provider.reconciliation import (
    ALL_KINDS,
    Cycle,
    ReconConfig,
    UnknownPspError,
    Window,
)

#: small enough for a fast suite, large enough for every kind several times
SPEC = SeedSpec(seed=7, rows_per_psp=3000, hours=12)

#: every column of every table the seed writes
TABLES = {
    "payment_intents": ("id", "provider", "provider_reference", "created_at"),
    "payment_transactions": (
        "id",
        "intent_id",
        "transaction_type",
        "status",
        "amount_minor",
        "currency",
        "created_at",
        "processed_at",
    ),
    "psp_statement_lines": (
        "id",
        "psp",
        "provider_reference",
        "transaction_type",
        "status",
        "amount_minor",
        "currency",
        "occurred_at",
        "statement_id",
    ),
    "payment_reconciliation_logs": (
        "id",
        "psp",
        "cycle_start",
        "cycle_end",
        "status",
        "divergent_amount_minor",
        "divergent_count",
        "notes",
        "created_at",
    ),
    "ledger.transactions": (
        "id",
        "psp",
        "provider_reference",
        "status",
        "amount_minor",
        "currency",
        "occurred_at",
    ),
}


def checksums(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and md5 of every seeded table, rows in id order (session in UTC)."""
    out = {}
    for table, columns in TABLES.items():
        query = sql.SQL(
            "SELECT count(*), md5(COALESCE(string_agg(concat_ws('|', {cols}), E'\\n' ORDER BY id), '')) "
            "FROM {table}"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            table=sql.Identifier(*table.split(".")),
        )
        count, digest = conn.execute(query).fetchone()
        out[table] = (count, digest)
    return out


def gateway_hook(config: ReconConfig | None = None):
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

    return BillingGatewayHook(config=config or ReconConfig())


# -- determinism ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _parity_fx_rates(request):
    """The seed's ground truth adds its BRL, USD and EUR amounts (all with 2 decimals): with a
    rate of 1 BRL per unit for USD and EUR the converted summary must equal it exactly
    (DESIGN 3a: without a rate those currencies would be left out and fire fx_rate_missing)."""
    if "db" in request.fixturenames:
        insert_parity_rates(request.getfixturevalue("db"))


def test_same_spec_gives_identical_tables_and_another_seed_does_not(db):
    first = seed_database(db, db, SPEC)
    before = checksums(db)
    second = seed_database(db, db, SPEC)
    assert checksums(db) == before
    assert first.as_dict() == second.as_dict()
    assert before["payment_transactions"][0] == 3 * SPEC.rows_per_psp

    seed_database(db, db, SeedSpec(seed=8, rows_per_psp=3000, hours=12))
    after = checksums(db)
    for table in TABLES:
        assert after[table][1] != before[table][1], table


def test_bulk_load_gives_the_same_data_and_keeps_the_schema(db):
    schema_query = """
        SELECT indexdef FROM pg_indexes WHERE schemaname IN ('public', 'ledger')
        UNION ALL
        SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace IN ('public'::regnamespace, 'ledger'::regnamespace)
        ORDER BY 1"""
    schema_before = db.execute(schema_query).fetchall()
    seed_database(db, db, SPEC, bulk=False)
    plain = checksums(db)
    seed_database(db, db, SPEC, bulk=True)
    assert checksums(db) == plain
    assert db.execute(schema_query).fetchall() == schema_before
    # the sequences were moved past the explicit ids: a normal insert still works
    new_id = db.execute(
        "INSERT INTO payment_intents (provider, provider_reference) VALUES ('stripe', 'x') RETURNING id"
    ).fetchone()[0]
    assert new_id == plain["payment_intents"][0] + 1


def test_generated_text_uses_fixed_offsets_for_the_intended_instants(db):
    text = "".join(chunk.transactions for chunk in generate_chunks(SPEC))
    for suffix in ("-03:00", "+05:30", "+00:00", "+05:45"):
        assert suffix in text
    seed_database(db, db, SPEC)
    # a healthy PSP has exactly the planned rows in each hour: an offset read wrongly would
    # move rows by hours (the divergent PSP gains and loses a row here and there)
    per_hour = db.execute(
        """SELECT i.provider, date_trunc('hour', t.created_at), count(*)
           FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
           GROUP BY 1, 2"""
    ).fetchall()
    assert len(per_hour) == len(SPEC.psps) * SPEC.hours
    for psp, hour, count in per_hour:
        index = int((hour - SPEC.start) / timedelta(hours=1))
        assert 0 <= index < SPEC.hours
        if psp != "stripe":
            assert count == SPEC.rows_in_hour(index)
    lo, hi, processed_ok = db.execute(
        "SELECT min(created_at), max(created_at), bool_and(processed_at >= created_at) "
        "FROM payment_transactions"
    ).fetchone()
    assert SPEC.start <= lo and hi < SPEC.end and processed_ok
    # statement lines of a healthy PSP follow the gateway by seconds
    lag = db.execute(
        """SELECT max(l.occurred_at - t.created_at), min(l.occurred_at - t.created_at)
           FROM psp_statement_lines l
           JOIN payment_intents i ON i.provider_reference = l.provider_reference AND i.provider = l.psp
           JOIN payment_transactions t ON t.intent_id = i.id AND t.transaction_type = l.transaction_type
           WHERE l.psp = 'adyen'"""
    ).fetchone()
    assert timedelta(0) < lag[1] and lag[0] < timedelta(minutes=2)


# -- ground truth --------------------------------------------------------------------------


def test_expected_figures_are_what_the_classification_finds(db, airflow_conns):
    result = seed_database(db, db, SPEC)
    hook = gateway_hook()
    divergent = result.expected["stripe"]
    assert list(divergent) == [kind.value for kind in ALL_KINDS]  # all seven, in rank order
    counts = [figures["count"] for figures in divergent.values()]
    assert min(counts) >= 1 and max(counts) - min(counts) <= 1  # roughly equal shares
    assert sum(counts) == round(0.05 * SPEC.rows_per_psp)

    for psp in SPEC.psps:
        summary = hook.summary(psp, result.window)
        doc = summary.as_dict()
        assert doc["by_kind"] == result.expected[psp], psp
        assert summary.gateway_count == result.gateway_rows[psp] == SPEC.rows_per_psp
        assert summary.divergent_count == result.divergent_count(psp)
        assert summary.divergent_amount_minor == result.divergent_amount_minor(psp)
        assert isinstance(summary.divergent_amount_minor, int)
        assert isinstance(summary.gateway_amount_minor, int)
        assert summary.lag_cycles == 0  # one successful cycle per hour up to the end
    for psp in ("adyen", "pagseguro"):
        assert result.expected[psp] == {}
        assert hook.summary(psp, result.window).divergent_count == 0
    assert result.divergent_amount_minor("stripe") > 500_000  # enough to fire the runbook alert
    for figures in divergent.values():
        assert all(isinstance(value, int) for value in figures.values())
    assert json.loads(json.dumps(result.as_dict()))["expected"] == result.expected


def test_hourly_cycles_match_ground_truth_and_reconciliation_logs(db, airflow_conns):
    result = seed_database(db, db, SPEC)
    hook = gateway_hook()
    logs = {
        (psp, start): (int(amount), int(count))
        for psp, start, amount, count in db.execute(
            "SELECT psp, cycle_start, divergent_amount_minor, divergent_count "
            "FROM payment_reconciliation_logs WHERE status = 'success'"
        )
    }
    assert len(logs) == len(SPEC.psps) * SPEC.hours == result.reconciliation_log_rows
    for psp in ("stripe", "adyen"):
        for cycle in SPEC.window.cycles():
            expected = result.expected_by_cycle[psp].get(cycle.start.isoformat(), {})
            summary = hook.summary(psp, cycle.window)
            assert summary.as_dict()["by_kind"] == expected, (psp, str(cycle))
            assert logs[(psp, cycle.start)] == (summary.divergent_amount_minor, summary.divergent_count)
    # divergence stays away from the first and last hour of the range
    first, last = SPEC.window.cycles()[0], SPEC.window.cycles()[-1]
    assert first.start.isoformat() not in result.expected_by_cycle["stripe"]
    assert last.start.isoformat() not in result.expected_by_cycle["stripe"]


def test_edge_rows_match_within_the_grace_period(db, airflow_conns):
    seed_database(db, db, SPEC)
    edges = db.execute(
        """SELECT i.provider, i.provider_reference, t.transaction_type, t.created_at, l.occurred_at
           FROM payment_transactions t
           JOIN payment_intents i ON i.id = t.intent_id
           JOIN psp_statement_lines l
             ON l.psp = i.provider AND l.provider_reference = i.provider_reference
            AND l.transaction_type = t.transaction_type
           WHERE extract(minute FROM t.created_at) = 59 AND extract(second FROM t.created_at) >= 59
             AND date_trunc('hour', l.occurred_at) = date_trunc('hour', t.created_at) + interval '1 hour'
           ORDER BY t.created_at"""
    ).fetchall()
    assert len(edges) >= len(SPEC.psps) * SPEC.hours  # at least one per PSP and hour
    hook = gateway_hook()
    no_grace = gateway_hook(ReconConfig(match_grace=timedelta(0)))
    for psp, ref, ttype, created, occurred in [e for e in edges if e[0] == "stripe"][:4]:
        gateway_cycle, statement_cycle = Cycle.containing(created), Cycle.containing(occurred)
        assert statement_cycle.start == gateway_cycle.end
        for cycle in (gateway_cycle, statement_cycle):
            reported = {
                (r.provider_reference, r.transaction_type) for r in hook.iter_divergences(psp, cycle.window)
            }
            assert (ref, ttype) not in reported
        # without the grace period each side alone would look like a missing row
        kinds = {
            r.kind.value
            for r in no_grace.iter_divergences(psp, gateway_cycle.window)
            if (r.provider_reference, r.transaction_type) == (ref, ttype)
        }
        assert kinds == {"missing_in_statement"}


def test_ledger_mirrors_the_gateway_except_for_the_divergent_psp(db, airflow_conns):
    from airflow_recon_provider.hooks.payments_ledger import PaymentsLedgerHook

    result = seed_database(db, db, SPEC)
    gateway, ledger = gateway_hook(), PaymentsLedgerHook(config=ReconConfig())
    for psp in ("adyen", "pagseguro"):
        comparison = ledger.compare_with_gateway(psp, result.window, gateway)
        assert comparison.matches, comparison.as_dict()
        assert {line.status for line in comparison.lines} >= {"authorized", "captured", "settled", "refunded"}
        assert result.ledger_rows[psp] == result.gateway_rows[psp]
    comparison = ledger.compare_with_gateway("stripe", result.window, gateway)
    # per status and currency (ledger.transactions.currency): amounts only within a currency
    assert all(len(line.currency) == 3 for line in comparison.lines), comparison.as_dict()
    assert len({line.currency for line in comparison.lines}) > 1  # the seed has several
    differing = [line for line in comparison.lines if not line.matches]
    assert {line.status for line in differing} == {"captured", "settled"}

    def rows_short(status: str) -> int:  # counts, not amounts, add up across currencies
        return sum(line.gateway_count - line.ledger_count for line in differing if line.status == status)

    assert rows_short("captured") == 2 and rows_short("settled") == -1
    assert result.ledger_differences == {"stripe": 2, "adyen": 0, "pagseguro": 0}


def test_minimal_size_has_every_kind_once(db, airflow_conns):
    spec = SeedSpec(seed=1, psps=("stripe",), rows_per_psp=1000, divergence_rate={"stripe": 0.001})
    result = seed_database(db, db, spec)
    assert result.expected["stripe"] == {
        kind.value: {"count": 1, "amount_minor": result.expected["stripe"][kind.value]["amount_minor"]}
        for kind in ALL_KINDS
    }
    summary = gateway_hook().summary("stripe", result.window)
    assert summary.as_dict()["by_kind"] == result.expected["stripe"]
    assert summary.gateway_count == result.gateway_rows["stripe"] == 1000


def test_status_mapping_writes_the_psp_vocabulary(db, airflow_conns):
    mapping = {"AUTHORISED": "authorized", "CAPTURED": "captured", "SETTLED": "settled", "REFUSED": "failed"}
    spec = SeedSpec(
        seed=3,
        psps=("adyen",),
        rows_per_psp=2000,
        divergence_rate={"adyen": 0.02},
        status_mapping={"adyen": mapping},
    )
    result = seed_database(db, db, spec)
    statuses = {r[0] for r in db.execute("SELECT DISTINCT status FROM psp_statement_lines")}
    assert {"AUTHORISED", "CAPTURED", "SETTLED", "refunded"} <= statuses
    mapped = gateway_hook(ReconConfig.from_dict({"psps": [{"name": "adyen", "status_mapping": mapping}]}))
    assert mapped.summary("adyen", result.window).as_dict()["by_kind"] == result.expected["adyen"]
    assert result.expected["adyen"]["status_mismatch"]["count"] >= 1
    # with the identity mapping, nearly every key looks like a status mismatch
    identity = gateway_hook().summary("adyen", result.window)
    assert identity.by_kind[next(k for k in ALL_KINDS if k.value == "status_mismatch")].count > 1000


def test_hook_connections_progress_and_append(db, airflow_conns):
    """The CLI's way: two hook connections (not autocommit), closed without a commit."""
    from airflow_recon_provider.hooks.payments_ledger import PaymentsLedgerHook

    calls: list[tuple[str, int, int]] = []
    spec = SeedSpec(psps=("stripe",), rows_per_psp=1500, hours=6)
    with (
        gateway_hook().connect() as gateway_conn,
        PaymentsLedgerHook(config=ReconConfig()).connect() as ledger_conn,
    ):
        result = seed_database(gateway_conn, ledger_conn, spec, progress=lambda *args: calls.append(args))
    assert ("stripe", 1500, 1500) in calls and calls[-1][0] == "reconciliation_logs"
    counts = db.execute(
        "SELECT (SELECT count(*) FROM payment_transactions), (SELECT count(*) FROM ledger.transactions)"
    ).fetchone()
    assert counts == (1500, result.ledger_rows["stripe"])

    more = seed_database(
        db, None, SeedSpec(psps=("adyen",), rows_per_psp=1000, hours=6, divergence_rate={}), truncate=False
    )
    assert db.execute("SELECT count(DISTINCT id), count(*) FROM payment_transactions").fetchone() == (
        2500,
        2500,
    )
    assert more.gateway_rows == {"adyen": 1000} and more.expected == {"adyen": {}}
    assert db.execute("SELECT count(*) FROM ledger.transactions").fetchone()[0] == (
        result.ledger_rows["stripe"] + more.ledger_rows["adyen"]
    )


def test_without_ledger_and_logs_and_with_no_rows(db):
    result = seed_database(
        db, db, SeedSpec(psps=("stripe",), rows_per_psp=0, with_ledger=False, with_reconciliation_logs=False)
    )
    assert isinstance(result, SeedResult)
    assert result.gateway_rows == {"stripe": 0} and result.expected == {"stripe": {}}
    assert {table: count for table, (count, _) in checksums(db).items()} == dict.fromkeys(TABLES, 0)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rows_per_psp": -1}, SeedSpecError, r"rows_per_psp must be a non-negative integer, got -1"),
        ({"divergence_rate": {"stripe": 0.6}}, SeedSpecError, r"between 0 and 0.5, got 0.6"),
        ({"divergence_rate": {"stripe": -0.1}}, SeedSpecError, r"between 0 and 0.5, got -0.1"),
        ({"divergence_rate": {"paypal": 0.1}}, SeedSpecError, r"names PSP 'paypal', which is not in psps"),
        ({"psps": ("stripe", "Ad yen")}, UnknownPspError, r"'Ad yen' is not a valid PSP name"),
        ({"psps": ()}, SeedSpecError, r"at least one PSP"),
        ({"psps": ("stripe", "stripe")}, SeedSpecError, r"duplicates"),
        ({"hours": 2}, SeedSpecError, r"hours must be an integer of at least 3"),
        ({"start": datetime(2026, 11, 20)}, SeedSpecError, r"has no timezone"),
        ({"start": datetime(2026, 11, 20, 10, 30, tzinfo=UTC)}, SeedSpecError, r"must be on the hour"),
        ({"seed": "42"}, SeedSpecError, r"seed must be an integer"),
        (
            {"status_mapping": {"stripe": {"captured": "settled"}}},
            SeedSpecError,
            r"does not map back to gateway status 'captured'",
        ),
    ],
)
def test_bad_spec_is_refused_with_a_clear_message(kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        SeedSpec(**kwargs)
    assert isinstance(info.value, ValueError)


def test_spec_normalises_start_and_window():
    spec = SeedSpec(start=datetime(2026, 11, 20, 7, tzinfo=UTC).astimezone(), hours=3)
    assert spec.start == datetime(2026, 11, 20, 7, tzinfo=UTC) and spec.start.tzinfo is UTC
    assert spec.window == Window(spec.start, spec.start + timedelta(hours=3))
    assert spec.rates == {"stripe": 0.05, "adyen": 0.0, "pagseguro": 0.0}
    assert SeedSpec(start="2026-11-20T07:00:00-03:00").start == datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rows", "hours", "rate"),
    [(1000, 3, 0.5), (50, 3, 0.5), (7, 5, 0.3), (2500, 48, 0.01)],
)
def test_odd_sizes_keep_exact_ground_truth(db, airflow_conns, rows, hours, rate):
    spec = SeedSpec(
        seed=rows, psps=("stripe",), rows_per_psp=rows, hours=hours, divergence_rate={"stripe": rate}
    )
    result = seed_database(db, db, spec)
    summary = gateway_hook().summary("stripe", result.window)
    assert summary.as_dict()["by_kind"] == result.expected["stripe"]
    assert summary.gateway_count == result.gateway_rows["stripe"] == rows


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10**6),
    rows=st.integers(0, 2500),
    hours=st.integers(3, 30),
    rate=st.floats(0, 0.5),
)
def test_ground_truth_is_exact_for_any_spec(db, airflow_conns, seed, rows, hours, rate):
    # the seed truncates first, so one database serves every example
    spec = SeedSpec(
        seed=seed, psps=("stripe", "adyen"), rows_per_psp=rows, hours=hours, divergence_rate={"adyen": rate}
    )
    result = seed_database(db, db, spec)
    hook = gateway_hook(ReconConfig.from_dict({"psps": ["stripe", "adyen"]}))
    for psp in spec.psps:
        summary = hook.summary(psp, result.window)
        assert summary.as_dict()["by_kind"] == result.expected[psp]
        assert summary.gateway_count == result.gateway_rows[psp] == rows
    assert result.expected["stripe"] == {}
