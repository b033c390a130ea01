"""A long window classified live by several connections at once (hooks/_key_parts.py).

Real PostgreSQL, the package's seed generator (every divergence kind, duplicates, edge rows):
the split report equals the one-connection report row for row and in order, the summary
figure for figure; the extra connections see the reader's snapshot, not later writes; a
reader that stops early or fails leaves no connection behind; short windows stay on one
connection; the setting is checked.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from airflow_recon_provider.devtools.seed import SeedSpec, seed_database
from airflow_recon_provider.hooks import _key_parts
from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
from airflow_recon_provider.reconciliation import ConfigError, ReconConfig, Window
from airflow_recon_provider.reconciliation.errors import DatabaseUnavailableError

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 18, tzinfo=UTC)
SPEC = SeedSpec(
    seed=11,
    psps=("stripe", "adyen"),
    rows_per_psp=2_400,
    divergence_rate={"stripe": 0.2, "adyen": 0.05},
    start=START,
    hours=48,
    with_ledger=False,
    with_reconciliation_logs=True,
)
WINDOW = Window(START, START + timedelta(hours=48))


@pytest.fixture
def seeded(db, airflow_conns):
    seed_database(db, db, SPEC)
    db.execute("ANALYZE")
    return db


def _hook(connections: int, *, per_connection: int = 100) -> BillingGatewayHook:
    hook = BillingGatewayHook(config=ReconConfig(live_connections=connections), use_cycle_store=False)
    hook.live_rows_per_connection = per_connection
    return hook


def _backends(db) -> int:
    """Connections to the test database other than ``db`` itself."""
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()[0]


def _backends_after_close(db) -> int:
    """:func:`_backends` once closed connections' backends have exited (a closed socket ends
    its backend a moment later; wait for that, up to 30 s)."""
    for _ in range(300):
        count = _backends(db)
        if count == 0:
            return 0
        time.sleep(0.1)
    return count


@pytest.mark.parametrize("psp", ["stripe", "adyen"])
@pytest.mark.parametrize("connections", [2, 3, 5])
def test_split_report_and_summary_equal_one_connection(seeded, psp, connections):
    one = list(_hook(1).iter_divergences(psp, WINDOW))
    split = list(_hook(connections).iter_divergences(psp, WINDOW))
    assert len(one) > 20
    assert split == one  # same rows, same order (kind, then key in byte order)
    assert len({r.kind for r in one}) >= 5

    whole = _hook(1).summary(psp, WINDOW).as_dict()
    assert _hook(connections).summary(psp, WINDOW).as_dict() == whole
    assert whole["divergent_count"] == len(one)


def test_the_connections_are_opened_and_closed_with_the_report(seeded):
    hook = _hook(3)
    rows = hook.iter_divergences("stripe", WINDOW)
    first = next(rows)
    assert first is not None
    assert _backends(seeded) == 3  # the reader's own and two more, all streaming
    rows.close()  # a reader that stops early (a closed pipe, a failed write)
    assert _backends_after_close(seeded) == 0


def test_the_parts_read_the_readers_snapshot(seeded):
    """A write committed after the reader took its snapshot is in no part."""
    expected = list(_hook(1).iter_divergences("stripe", WINDOW))
    rows = _hook(3).iter_divergences("stripe", WINDOW)
    got = [next(rows)]
    # a new divergent key (missing in the gateway) committed while the parts stream
    seeded.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) VALUES ('stripe', 'late-ref', 'capture', 'captured', 100,"
        " 'BRL', %s, 'late')",
        (START + timedelta(hours=10),),
    )
    got += list(rows)
    assert got == expected
    assert any(r.provider_reference == "late-ref" for r in _hook(3).iter_divergences("stripe", WINDOW))


def test_a_failing_part_fails_the_report_and_closes_every_connection(seeded):
    hook = _hook(3)
    rows = hook.iter_divergences("stripe", WINDOW)
    next(rows)
    # end one part's backend the way a server restart or an operator's pg_terminate_backend does
    victims = seeded.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " ORDER BY backend_start DESC LIMIT 1"
    ).fetchall()
    seeded.execute("SELECT pg_terminate_backend(%s)", (victims[0][0],))
    with pytest.raises(DatabaseUnavailableError, match="'billing_gateway_db' was lost"):
        # every row of the other parts may arrive first; the dead part fails the merge
        for _ in rows:
            pass
    assert _backends_after_close(seeded) == 0


def test_short_windows_and_small_tables_keep_one_connection(seeded):
    hook = _hook(4, per_connection=_key_parts.ROWS_PER_CONNECTION)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(seeded.info.dsn) as conn:
            while not stop.is_set():
                seen.append(_backends(conn) - 1)  # minus this watcher
                stop.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # 4,800 rows read: far below one connection's share
        list(hook.iter_divergences("stripe", WINDOW))
        # an hourly cycle's rows (100 per hour here) below even this test's small share
        list(
            _hook(4, per_connection=1_000).iter_divergences(
                "stripe", Window(START, START + timedelta(hours=1))
            )
        )
    finally:
        stop.set()
        watcher.join()
    assert seen and max(seen) <= 1


def test_connections_follow_the_planner_estimate():
    assert _key_parts.connections_for(0, 4) == 1
    assert _key_parts.connections_for(400_000, 4) == 1
    assert _key_parts.connections_for(1_000_001, 4) == 3
    assert _key_parts.connections_for(10_000_000, 4) == 4
    assert _key_parts.connections_for(10_000_000, 1) == 1


@pytest.mark.parametrize("value", [0, 17, -1, "2", 2.5, True, None])
def test_live_connections_must_be_a_whole_number_in_range(value):
    with pytest.raises(ConfigError, match="live_connections"):
        ReconConfig.from_dict({"live_connections": value})
    assert ReconConfig.from_dict({"live_connections": 4}).live_connections == 4
    assert ReconConfig().live_connections == 2


AWKWARD_REFERENCES = [
    'q"uote',
    "com,ma",
    "new\nline",
    "back\\slash",
    "tab\there",
    "pix_é_ção",
    "ctrl\x01char",
    "\\.",
    " spaced ",
    "emoji_\U0001f4b8",
]


def _awkward(db) -> None:
    """Every reference above divergent in a different way, over two days."""
    for n, ref in enumerate(AWKWARD_REFERENCES, start=1):
        at = START + timedelta(hours=3 * n)
        db.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference) VALUES (%s, 'stripe', %s)",
            (900_000 + n, ref),
        )
        db.execute(
            "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
            " created_at) VALUES (%s, 'capture', %s, %s, 'BRL', %s)",
            (900_000 + n, 'capt"ured' if n % 2 else "captured", 1000 + n, at),
        )
        if n % 3:
            db.execute(
                "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
                " amount_minor, currency, occurred_at, statement_id) VALUES ('stripe', %s, 'capture',"
                " 'captured', %s, %s, %s, 's')",
                (ref, 1000 + n * (n % 2), "BRL" if n % 4 else "USD", at),
            )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("connections", [1, 3])
def test_written_report_is_byte_for_byte_what_the_renderer_writes(seeded, fmt, connections):
    """``write_report``: the server's COPY lines (one connection) and the merged parts'
    rendered lines are exactly ``render_rows``' bytes, awkward references included."""
    from airflow_recon_provider.reconciliation.report import render_rows

    _awkward(seeded)
    seeded.execute("ANALYZE")
    hook = _hook(connections)
    text = io.StringIO(newline="")
    expected_rows = render_rows(hook.iter_divergences("stripe", WINDOW), text, fmt)
    out = io.BytesIO()
    assert hook.write_report("stripe", WINDOW, fmt, out) == expected_rows
    assert out.getvalue() == text.getvalue().encode("utf-8")
    written = out.getvalue().decode("utf-8")
    if fmt == "jsonl":
        refs = {json.loads(line)["provider_reference"] for line in written.splitlines()}
    else:
        refs = {row["provider_reference"] for row in csv.DictReader(io.StringIO(written, newline=""))}
    assert set(AWKWARD_REFERENCES) <= refs


def test_an_unknown_format_writes_nothing(seeded):
    out = io.BytesIO()
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        _hook(1).write_report("stripe", WINDOW, "xml", out)
    assert out.getvalue() == b""


def test_a_role_limited_to_one_connection_gets_the_same_report_on_one(seeded, db_url, caplog):
    """A role whose CONNECTION LIMIT refuses the extra connections: the reader classifies with
    the connections it has (its own), same rows, and says so in the log."""
    from psycopg.conninfo import conninfo_to_dict

    from airflow_recon_provider.hooks.gateway_reader import DirectGatewayReader

    role = f"recon_one_{seeded.info.backend_pid}"
    seeded.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
    seeded.execute(f'GRANT USAGE ON SCHEMA public, recon TO "{role}"')
    seeded.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public, recon TO "{role}"')
    try:
        kwargs = {**conninfo_to_dict(db_url), "user": role}
        reader = DirectGatewayReader(
            conn_id="billing_gateway_db",
            connect_kwargs=kwargs,
            config=ReconConfig(live_connections=4),
            use_cycle_store=False,
        )
        reader.live_rows_per_connection = 100
        caplog.set_level("WARNING", logger="airflow_recon_provider.hooks._key_parts")
        assert list(reader.iter_divergences("stripe", WINDOW)) == list(
            _hook(1).iter_divergences("stripe", WINDOW)
        )
        assert "classifying with 1 connection(s)" in caplog.text
        assert "too many connections for role" in caplog.text
    finally:
        _backends_after_close(seeded)
        seeded.execute(f'DROP OWNED BY "{role}"')
        seeded.execute(f'DROP ROLE "{role}"')
