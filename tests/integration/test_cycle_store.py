"""The stored per-cycle classification answers exactly like the live full-window query.

Cycles are classified and stored as ``match_transactions`` does each hour, then rows are
changed (status, amount, inserts, deletes, a timestamp moved across a cycle edge, rows in
the grace period, duplicates in other cycles, an intent moved to another PSP); after every
change the report and the summary through the store must equal the live one-shot
classification of the same window, row for row. Real PostgreSQL, no mocks.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
from airflow_recon_provider.reconciliation import (
    ALL_KINDS,
    DivergenceKind,
    DivergenceRow,
    Window,
    cycle_store,
)
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.queries import (
    ClassificationParams,
    divergence_by_kind_query,
    divergence_report_query,
    gateway_totals_query,
)

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 20, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
CONFIG = ReconConfig.from_dict(
    {"psps": [{"name": "stripe", "status_mapping": {"CAPTURED": "captured"}}, {"name": "adyen"}]}
)
TYPES = ("authorization", "capture")
SOME_KINDS = (
    DivergenceKind.STATUS_MISMATCH,
    DivergenceKind.DUPLICATE_IN_GATEWAY,
    DivergenceKind.MISSING_IN_GATEWAY,
)


def _live(db, psp: str, window: Window, kinds=ALL_KINDS) -> tuple[list[DivergenceRow], dict, dict]:
    """The live one-shot answers: report rows, gateway totals per currency and divergence
    per (currency, kind)."""
    params = ClassificationParams(
        psp=psp,
        window=window,
        grace=CONFIG.match_grace,
        status_mapping=CONFIG.psp(psp).status_mapping,
        kinds=kinds,
    ).as_params()
    rows = [DivergenceRow.from_db(r) for r in db.execute(divergence_report_query(CONFIG.mapping), params)]
    totals = {c: (int(n), int(a)) for c, n, a in db.execute(gateway_totals_query(CONFIG.mapping), params)}
    by_kind = {
        (c, k): (int(n), int(a))
        for c, k, n, a in db.execute(divergence_by_kind_query(CONFIG.mapping), params)
    }
    return rows, totals, by_kind


def _figures(summary) -> tuple[dict, dict]:
    """A summary's per-currency gateway totals and (currency, kind) figures, own minor units."""
    totals = {
        c: (f.gateway_count, f.gateway_amount_minor)
        for c, f in summary.by_currency.items()
        if f.gateway_count
    }
    by_kind = {
        (c, k.value): (t.count, t.amount_minor)
        for c, f in summary.by_currency.items()
        for k, t in f.by_kind.items()
    }
    return totals, by_kind


def _assert_same(db, hook: BillingGatewayHook, psp: str, window: Window) -> None:
    live_hook = BillingGatewayHook(config=CONFIG, use_cycle_store=False)
    for kinds in (ALL_KINDS, SOME_KINDS):
        rows, totals, by_kind = _live(db, psp, window, kinds)
        # row for row, with each row's key currency, statement currency and extra copies
        # in other currencies
        assert list(hook.iter_divergences(psp, window, kinds)) == rows
        summary = hook.summary(psp, window, kinds=kinds)
        assert _figures(summary) == (totals, by_kind)
        # and every figure of the summary (by_currency, rates, converted amounts, alert)
        assert summary == live_hook.summary(psp, window, kinds=kinds)
        assert summary.as_dict() == live_hook.summary(psp, window, kinds=kinds).as_dict()


def _clean(db, psp: str, window: Window) -> list[datetime]:
    params = {
        "psp": psp,
        "start": window.start,
        "end": window.end,
        "grace_seconds": 3600,
        "status_map": ClassificationParams(psp, window, HOUR, CONFIG.psp(psp).status_mapping).as_params()[
            "status_map"
        ],
        "fingerprint": cycle_store.mapping_fingerprint(CONFIG.mapping),
    }
    return [r[0] for r in db.execute(cycle_store.clean_cycles_query(), params)]


def _rates(db, **rates: str) -> None:
    """Rates in force for the windows of these tests (``recon.fx_rates``, DESIGN 3a)."""
    for currency, rate in rates.items():
        db.execute(
            "INSERT INTO recon.fx_rates (currency, rate, valid_from, source) VALUES (%s, %s, %s, 'test')",
            (currency, rate, BASE - timedelta(days=1)),
        )


class Data:
    """Writes rows the way the gateway and fetch_psp_statements do."""

    def __init__(self, db) -> None:
        self.db = db

    def gateway(self, psp, ref, ttype, at, *, status="captured", amount=1000, currency="BRL") -> int:
        intent = self.db.execute(
            "INSERT INTO payment_intents (provider, provider_reference) VALUES (%s, %s) RETURNING id",
            (psp, ref),
        ).fetchone()[0]
        return self.db.execute(
            "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (intent, ttype, status, amount, currency, at),
        ).fetchone()[0]

    def statement(self, psp, ref, ttype, at, *, status="captured", amount=1000, currency="BRL") -> int:
        return self.db.execute(
            "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
            " amount_minor, currency, occurred_at, statement_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 's') RETURNING id",
            (psp, ref, ttype, status, amount, currency, at),
        ).fetchone()[0]

    def pair(self, psp, ref, ttype, at, delay=timedelta(seconds=30), **kw) -> tuple[int, int]:
        return self.gateway(psp, ref, ttype, at, **kw), self.statement(psp, ref, ttype, at + delay, **kw)


@pytest.fixture(autouse=True, params=[1.0, cycle_store.MAX_LIVE_SHARE], ids=["store-always", "store-default"])
def live_share(request, monkeypatch) -> float:
    """The share of a window above which readers go one-shot live is a performance choice;
    the stored path must be exact at any share, so it is also forced on every window."""
    monkeypatch.setattr(cycle_store, "MAX_LIVE_SHARE", request.param)
    return request.param


@pytest.fixture
def hook(db, airflow_conns) -> BillingGatewayHook:
    from airflow_recon_provider.schema.migrations import enable_cycle_store

    assert enable_cycle_store(db, CONFIG.mapping)  # opt-in: migrate alone installs no trigger
    assert not enable_cycle_store(db, CONFIG.mapping)  # a second time: already there, cycles kept
    return BillingGatewayHook(config=CONFIG)


def _store_all(hook: BillingGatewayHook, psp: str, hours: range) -> None:
    for h in hours:
        assert hook.store_cycle(psp, Window(BASE + h * HOUR, BASE + (h + 1) * HOUR))


def test_stored_cycles_follow_every_kind_of_change(db, hook) -> None:
    d = Data(db)
    ids = {}
    for h in range(6):
        for n in range(4):
            ids[(h, n)] = d.pair(
                "stripe", f"r{h}_{n}", "capture", BASE + h * HOUR + timedelta(minutes=10 * n + 5)
            )
    d.gateway("stripe", "lonely", "authorization", BASE + 2 * HOUR + timedelta(minutes=3))
    d.statement("stripe", "orphan", "capture", BASE + 3 * HOUR + timedelta(minutes=3), status="CAPTURED")
    # straddles the 12:00 edge (gateway 11:59:50, PSP 12:00:20) and a duplicate across cycles
    d.pair("stripe", "edge", "capture", BASE + 2 * HOUR - timedelta(seconds=10))
    d.pair("stripe", "dup", "capture", BASE + HOUR + timedelta(minutes=20))
    d.gateway("stripe", "dup", "capture", BASE + 4 * HOUR + timedelta(minutes=20))
    # same side, far apart: each cycle alone sees one row, the window sees a duplicate
    d.gateway("stripe", "dupg", "capture", BASE + timedelta(minutes=40))
    d.gateway("stripe", "dupg", "capture", BASE + 4 * HOUR + timedelta(minutes=40))
    d.statement("stripe", "dups", "capture", BASE + HOUR + timedelta(minutes=40))
    d.statement("stripe", "dups", "capture", BASE + 5 * HOUR + timedelta(minutes=40))
    d.pair("adyen", "r0_0", "capture", BASE + timedelta(minutes=5))
    # DESIGN 3a: duplicates whose copies are in several currencies, local to one cycle and
    # across cycles; a currency mismatch; yen and dinars have no rate (fx_rate_missing)
    d.gateway(
        "stripe", "mixg", "capture", BASE + 3 * HOUR + timedelta(minutes=12), amount=900, currency="EUR"
    )
    d.gateway("stripe", "mixg", "capture", BASE + 3 * HOUR + timedelta(minutes=2), amount=300, currency="brl")
    d.gateway("stripe", "mixg", "capture", BASE + 3 * HOUR + timedelta(minutes=22), amount=40, currency="JPY")
    d.statement(
        "stripe", "mixg", "capture", BASE + 3 * HOUR + timedelta(minutes=13), amount=900, currency="EUR"
    )
    d.gateway(
        "stripe", "mixs", "settlement", BASE + HOUR + timedelta(minutes=50), amount=5000, currency="JPY"
    )
    d.statement(
        "stripe", "mixs", "settlement", BASE + HOUR + timedelta(minutes=51), amount=1234, currency="BHD"
    )
    d.statement(
        "stripe", "mixs", "settlement", BASE + 4 * HOUR + timedelta(minutes=5), amount=77, currency="usd"
    )
    d.statement(
        "stripe", "mixs", "settlement", BASE + 4 * HOUR + timedelta(minutes=6), amount=1, currency="BHD"
    )
    d.pair("stripe", "mixc", "refund", BASE + 5 * HOUR + timedelta(minutes=30), currency="USD")
    db.execute("UPDATE psp_statement_lines SET currency = 'brl' WHERE provider_reference = 'mixc'")
    _rates(db, EUR="6.2512", USD="5.4321")

    window = Window(BASE, BASE + 6 * HOUR)
    _store_all(hook, "stripe", range(6))
    assert _clean(db, "stripe", window) == [BASE + h * HOUR for h in range(6)]
    _assert_same(db, hook, "stripe", window)
    rows = list(hook.iter_divergences("stripe", window))
    assert {r.provider_reference for r in rows} == {
        "lonely",
        "orphan",
        "dup",
        "dupg",
        "dups",
        "mixg",
        "mixs",
        "mixc",
    }
    # the local mixed duplicate is answered from the store, with its amounts per currency
    assert db.execute(
        "SELECT currency, divergent_amount_minor, other_amounts FROM recon.cycle_divergences"
        " WHERE provider_reference = 'mixg'"
    ).fetchall() == [("EUR", 0, {"BRL": 300, "JPY": 40})]
    assert db.execute(
        "SELECT currency, divergent_count, divergent_amount_minor FROM recon.cycle_kind_totals"
        " WHERE psp = 'stripe' AND cycle_start = %s AND kind = 'duplicate_in_gateway' ORDER BY currency",
        (BASE + 3 * HOUR,),
    ).fetchall() == [("BRL", 0, 300), ("EUR", 1, 0), ("JPY", 0, 40)]
    mixed = {r.provider_reference: r for r in rows}
    # the first copy written (smallest id) is the EUR one, though not the earliest
    assert (mixed["mixg"].currency, mixed["mixg"].divergent_amount_minor) == ("EUR", 0)
    assert mixed["mixg"].other_amounts == {"BRL": 300, "JPY": 40}
    assert (mixed["mixs"].currency, mixed["mixs"].other_amounts) == ("JPY", {"BHD": 1, "USD": 77})
    summary = hook.summary("stripe", window)
    assert summary.unconverted_currencies == ["BHD", "JPY"] and summary.fx_rate_missing

    gid, sid = ids[(1, 1)]
    mutations = [
        ("UPDATE payment_transactions SET status = 'failed' WHERE id = %s", (gid,)),
        ("UPDATE psp_statement_lines SET amount_minor = 1 WHERE id = %s", (ids[(2, 2)][1],)),
        ("DELETE FROM psp_statement_lines WHERE id = %s", (ids[(3, 0)][1],)),
        # moved across the 15:00 edge: into the next cycle, then into the grace after the window
        (
            "UPDATE payment_transactions SET created_at = %s WHERE id = %s",
            (BASE + 5 * HOUR + timedelta(minutes=1), ids[(4, 3)][0]),
        ),
        (
            "UPDATE psp_statement_lines SET occurred_at = %s WHERE id = %s",
            (BASE + 6 * HOUR + timedelta(minutes=5), ids[(5, 1)][1]),
        ),
        # a key local to 10:00 gets a duplicate in the grace before the window and one later in it
        (
            "UPDATE psp_statement_lines SET occurred_at = %s WHERE id = %s",
            (BASE - timedelta(minutes=30), ids[(0, 2)][1]),
        ),
        ("UPDATE psp_statement_lines SET occurred_at = occurred_at WHERE id = %s", (sid,)),
        # an intent moved to another PSP
        (
            "UPDATE payment_intents SET provider = 'adyen'"
            " WHERE id = (SELECT intent_id FROM payment_transactions WHERE id = %s)",
            (ids[(2, 0)][0],),
        ),
        # currencies change: a clean key becomes a currency mismatch, a duplicate's copies
        # move between currencies (the key's currency follows its first copy)
        ("UPDATE payment_transactions SET currency = 'eur' WHERE id = %s", (ids[(0, 1)][0],)),
        (
            "UPDATE payment_transactions SET currency = 'JPY' WHERE id = (SELECT min(t.id)"
            " FROM payment_transactions AS t JOIN payment_intents AS i ON i.id = t.intent_id"
            " WHERE i.provider_reference = 'mixg')",
            (),
        ),
        (
            "UPDATE psp_statement_lines SET currency = 'EUR'"
            " WHERE provider_reference = 'mixs' AND amount_minor = 1",
            (),
        ),
    ]
    for statement, args in mutations:
        db.execute(statement, args)
        _assert_same(db, hook, "stripe", window)
        _assert_same(db, hook, "adyen", window)
    # new rows of keys the store thought local: in another cycle and in the window's grace
    d.gateway("stripe", "r0_1", "capture", BASE + 3 * HOUR + timedelta(minutes=40))
    _assert_same(db, hook, "stripe", window)
    d.statement("stripe", "r5_0", "capture", BASE + 6 * HOUR + timedelta(minutes=40))
    _assert_same(db, hook, "stripe", window)

    # the changed cycles are dirty; recomputing them makes them clean again, still exact
    dirty = set(BASE + h * HOUR for h in range(6)) - set(_clean(db, "stripe", window))
    assert dirty
    _store_all(hook, "stripe", range(6))
    assert _clean(db, "stripe", window) == [BASE + h * HOUR for h in range(6)]
    _assert_same(db, hook, "stripe", window)


def test_unaligned_windows_and_cycles(db, hook) -> None:
    d = Data(db)
    rnd = random.Random(7)
    for n in range(60):
        at = BASE + timedelta(seconds=rnd.randrange(0, 6 * 3600))
        d.pair(
            "stripe",
            f"k{n % 40}",
            rnd.choice(TYPES),
            at,
            delay=timedelta(seconds=rnd.randrange(0, 1800)),
            currency=rnd.choice(["BRL", "BRL", "eur", "JPY"]),  # duplicates across currencies
        )
    _rates(db, EUR="6.25")
    _store_all(hook, "stripe", range(6))
    for start_min, end_min in ((20, 340), (0, 60), (59, 61), (60, 300), (-30, 400)):
        window = Window(BASE + timedelta(minutes=start_min), BASE + timedelta(minutes=end_min))
        _assert_same(db, hook, "stripe", window)


def test_random_changes_stay_exact(db, hook) -> None:
    """Random data with few references (duplicates, collisions, edge straddlers), random
    changes between stores, random windows: the store never disagrees with the live query."""
    d = Data(db)
    rnd = random.Random(20261127)

    def moment() -> datetime:
        if rnd.random() < 0.3:  # on or near an hour edge
            return BASE + rnd.randrange(-1, 8) * HOUR + timedelta(seconds=rnd.choice([-1, 0, 1, -30, 30]))
        return BASE + timedelta(seconds=rnd.randrange(-3600, 8 * 3600))

    def kw() -> dict:
        return {
            "status": rnd.choice(["captured", "CAPTURED", "failed"]),
            "amount": rnd.choice([100, 100, 100, 250]),
            "currency": rnd.choice(["BRL", "BRL", "brl", "USD", "eur", "JPY", "BHD"]),
        }

    _rates(db, USD="5.4321", JPY="0.0355")  # EUR and BHD: no rate

    refs = [f"x{n}" for n in range(25)]
    for _ in range(50):
        d.pair(
            rnd.choice(["stripe", "adyen"]),
            rnd.choice(refs),
            rnd.choice(TYPES),
            moment(),
            delay=timedelta(seconds=rnd.randrange(-120, 1200)),
            **kw(),
        )
    for psp in ("stripe", "adyen"):
        _store_all(hook, psp, range(-1, 8))
    used = 0
    for step in range(40):
        action = rnd.randrange(8)
        if action == 0:
            d.gateway(rnd.choice(["stripe", "adyen"]), rnd.choice(refs), rnd.choice(TYPES), moment(), **kw())
        elif action == 1:
            d.statement(
                rnd.choice(["stripe", "adyen"]), rnd.choice(refs), rnd.choice(TYPES), moment(), **kw()
            )
        elif action == 2:
            db.execute(
                "DELETE FROM psp_statement_lines WHERE id = (SELECT id FROM psp_statement_lines "
                "ORDER BY md5(id::text || %s) LIMIT 1)",
                (str(step),),
            )
        elif action == 3:
            db.execute(
                "UPDATE payment_transactions SET created_at = %s WHERE id = (SELECT id FROM "
                "payment_transactions ORDER BY md5(id::text || %s) LIMIT 1)",
                (moment(), str(step)),
            )
        elif action == 4:
            db.execute(
                "UPDATE psp_statement_lines SET occurred_at = %s, amount_minor = %s WHERE id = (SELECT id "
                "FROM psp_statement_lines ORDER BY md5(id::text || %s) LIMIT 1)",
                (moment(), rnd.choice([100, 250]), str(step)),
            )
        elif action == 5:
            db.execute(
                "UPDATE payment_intents SET provider_reference = %s WHERE id = (SELECT id FROM "
                "payment_intents ORDER BY md5(id::text || %s) LIMIT 1)",
                (rnd.choice(refs), str(step)),
            )
        elif action == 6:  # a row's currency changes (duplicates' copies in several currencies)
            db.execute(
                "UPDATE payment_transactions SET currency = %s WHERE id = (SELECT id FROM "
                "payment_transactions ORDER BY md5(id::text || %s) LIMIT 1)",
                (rnd.choice(["BRL", "usd", "EUR", "JPY"]), str(step)),
            )
        else:  # match_transactions runs again for a random cycle
            hour = BASE + rnd.randrange(-1, 8) * HOUR
            hook.store_cycle(rnd.choice(["stripe", "adyen"]), Window(hour, hour + HOUR))
        if rnd.random() < 0.5:  # and the hourly run of some cycle, as match_transactions would
            hour = BASE + rnd.randrange(-1, 8) * HOUR
            hook.store_cycle(rnd.choice(["stripe", "adyen"]), Window(hour, hour + HOUR))
        start = BASE + timedelta(minutes=rnd.choice([0, 0, 60, -60, 17, 120]))
        window = Window(start, start + timedelta(minutes=rnd.choice([60, 180, 360, 480, 95])))
        for psp in ("stripe", "adyen"):
            used += bool(_clean(db, psp, window))
            _assert_same(db, hook, psp, window)
    assert used >= 20  # the store answered most checks, not the live fallback


def test_truncate_forgets_stored_cycles(db, hook) -> None:
    d = Data(db)
    d.pair("stripe", "a", "capture", BASE + timedelta(minutes=5))
    _store_all(hook, "stripe", range(1))
    window = Window(BASE, BASE + HOUR)
    assert _clean(db, "stripe", window) == [BASE]
    db.execute("TRUNCATE psp_statement_lines")
    assert _clean(db, "stripe", window) == []
    _assert_same(db, hook, "stripe", window)


def test_store_follows_a_custom_table_mapping(db, airflow_conns) -> None:
    """Triggers and queries use the site's names (schema, tables, columns) through
    sql.Identifier; re-installing for a new mapping forgets cycles stored for the old one."""
    from airflow_recon_provider.schema.migrations import install_cycle_store

    db.execute("CREATE SCHEMA gw")
    db.execute("ALTER TABLE payment_intents SET SCHEMA gw")
    db.execute('ALTER TABLE gw.payment_intents RENAME TO "Intents_X"')
    db.execute('ALTER TABLE gw."Intents_X" RENAME COLUMN provider TO psp_name')
    db.execute("ALTER TABLE payment_transactions RENAME TO tx")
    db.execute("ALTER TABLE tx RENAME COLUMN created_at TO created_on")
    db.execute("ALTER TABLE psp_statement_lines RENAME TO lines")
    db.execute("ALTER TABLE lines RENAME COLUMN occurred_at TO occurred_on")
    config = ReconConfig.from_dict(
        {
            "psps": ["stripe"],
            "mapping": {
                "payment_intents": {"table": "gw.Intents_X", "provider": "psp_name"},
                "payment_transactions": {"table": "tx", "created_at": "created_on"},
                "psp_statement_lines": {"table": "lines", "occurred_at": "occurred_on"},
            },
        }
    )
    install_cycle_store(db, config.mapping)
    hook = BillingGatewayHook(config=config)

    def gateway(ref: str, at: datetime, amount: int = 100) -> int:
        intent = db.execute(
            'INSERT INTO gw."Intents_X" (psp_name, provider_reference) VALUES (%s, %s) RETURNING id',
            ("stripe", ref),
        ).fetchone()[0]
        return db.execute(
            "INSERT INTO tx (intent_id, transaction_type, status, amount_minor, currency, created_on)"
            " VALUES (%s, 'capture', 'captured', %s, 'BRL', %s) RETURNING id",
            (intent, amount, at),
        ).fetchone()[0]

    def line(ref: str, at: datetime, amount: int = 100) -> None:
        db.execute(
            "INSERT INTO lines (psp, provider_reference, transaction_type, status, amount_minor, currency,"
            " occurred_on, statement_id) VALUES ('stripe', %s, 'capture', 'captured', %s, 'BRL', %s, 's')",
            (ref, amount, at),
        )

    for n in range(6):
        gateway(f"m{n}", BASE + n * timedelta(minutes=50))
        line(f"m{n}", BASE + n * timedelta(minutes=50) + timedelta(minutes=1), amount=100 + n % 2)
    window = Window(BASE, BASE + 5 * HOUR)
    for h in range(5):
        assert hook.store_cycle("stripe", Window(BASE + h * HOUR, BASE + (h + 1) * HOUR))

    def live() -> list[DivergenceRow]:
        params = ClassificationParams("stripe", window, config.match_grace, {}).as_params()
        return [DivergenceRow.from_db(r) for r in db.execute(divergence_report_query(config.mapping), params)]

    fingerprint = cycle_store.mapping_fingerprint(config.mapping)
    params = ClassificationParams("stripe", window, config.match_grace, {}).as_params()
    params.update(fingerprint=fingerprint, grace_seconds=3600)
    assert len(db.execute(cycle_store.clean_cycles_query(), params).fetchall()) == 5
    assert list(hook.iter_divergences("stripe", window)) == live()
    gid = gateway("m1", BASE + 3 * HOUR + timedelta(minutes=10))  # a far duplicate of a stored key
    assert list(hook.iter_divergences("stripe", window)) == live()
    db.execute("UPDATE tx SET amount_minor = 7 WHERE id = %s", (gid,))
    assert list(hook.iter_divergences("stripe", window)) == live()
    assert len(db.execute(cycle_store.clean_cycles_query(), params).fetchall()) == 4

    # a mapped table renamed behind the store's back: writes go on, the store turns itself
    # off (readers classify live) until it is installed again
    db.execute('ALTER TABLE gw."Intents_X" RENAME TO intents_y')
    gateway_sql = "INSERT INTO tx (intent_id, transaction_type, status, amount_minor, currency, created_on)"
    db.execute(
        gateway_sql + " VALUES (1, 'capture', 'captured', 5, 'BRL', %s)", (BASE + timedelta(minutes=3),)
    )
    assert db.execute(cycle_store.store_ready_query()).fetchone()[0] is None
    db.execute('ALTER TABLE gw.intents_y RENAME TO "Intents_X"')
    assert list(hook.iter_divergences("stripe", window)) == live()
    install_cycle_store(db, config.mapping)
    assert hook.store_cycle("stripe", Window(BASE, BASE + HOUR))
    assert list(hook.iter_divergences("stripe", window)) == live()


def test_a_write_in_flight_while_a_cycle_is_stored_makes_it_dirty(db, db_url, hook) -> None:
    """A transaction that changes the cycle's rows and commits after the cycle was stored
    (invisible to the stored snapshot) invalidates it, whatever the commit order."""
    import psycopg

    d = Data(db)
    d.pair("stripe", "a", "capture", BASE + timedelta(minutes=5))
    window = Window(BASE, BASE + HOUR)
    with psycopg.connect(db_url) as other:
        other.execute(
            "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
            " amount_minor, currency, occurred_at, statement_id)"
            " VALUES ('stripe', 'a', 'capture', 'captured', 1000, 'BRL', %s, 's')",
            (BASE + timedelta(minutes=7),),
        )
        assert hook.store_cycle("stripe", window)  # the insert above is still uncommitted
        assert _clean(db, "stripe", window) == [BASE]
        other.commit()
    assert _clean(db, "stripe", window) == []
    _assert_same(db, hook, "stripe", window)
    assert [r.kind for r in hook.iter_divergences("stripe", window)] == [
        DivergenceKind.DUPLICATE_IN_STATEMENT
    ]


def test_the_hourly_flow_is_answered_from_the_store(db, hook, live_share) -> None:
    """Production order: each hour's rows are written, then match_transactions stores that
    hour; later hours are written after earlier cycles were stored, and late PSP lines and
    duplicates land in hours already stored. The store still answers the multi-hour window
    (only the changed hours' keys and the straddlers are classified live), exactly."""
    d = Data(db)
    for h in range(8):
        for n in range(6):
            d.pair("stripe", f"h{h}_{n}", "capture", BASE + h * HOUR + timedelta(minutes=9 * n + 2))
        d.gateway("stripe", f"lonely{h}", "authorization", BASE + h * HOUR + timedelta(minutes=41))
        if h:  # a key of the previous hour settles across the edge
            d.statement("stripe", f"h{h - 1}_5", "capture", BASE + h * HOUR + timedelta(seconds=20))
        _store_all(hook, "stripe", range(h, h + 1))
    window = Window(BASE, BASE + 8 * HOUR)

    def plan():
        params = hook._params(hook.resolve_psp("stripe"), window, ALL_KINDS)
        with hook.connect() as conn, conn.transaction():
            return hook._store_plan(conn, window, params)

    stored = plan()
    assert stored is not None and len(stored.clean) == 8  # every hour answered from the store
    _assert_same(db, hook, "stripe", window)

    # late: a PSP line for hour 2 (a duplicate of a key stored as local in hour 5) and a
    # gateway duplicate in hour 6 of a key local to hour 1; both hours become dirty
    d.statement("stripe", "h5_0", "capture", BASE + 2 * HOUR + timedelta(minutes=30))
    d.gateway("stripe", "h1_3", "capture", BASE + 6 * HOUR + timedelta(minutes=50))
    after = plan()
    expected = [BASE + h * HOUR for h in (0, 1, 3, 4, 5, 7)]
    if live_share == 1.0:  # store forced on: the six clean hours still answer
        assert after is not None and list(after.clean) == expected
    else:  # a quarter of the window is live: the store may step aside, never answer wrong
        assert after is None or list(after.clean) == expected
    _assert_same(db, hook, "stripe", window)
    _store_all(hook, "stripe", (2, 6))  # the next match_transactions runs store them again
    assert plan() is not None
    _assert_same(db, hook, "stripe", window)


def test_the_sensor_poll_reads_the_same_summary_from_the_store(db, db_url, hook) -> None:
    """The divergence trigger's async summary (hooks/async_postgres.fetch_summary) answers
    from the stored cycles and equals the live one-shot summary, before and after a change."""
    import asyncio

    import psycopg

    from airflow_recon_provider.hooks.async_postgres import fetch_summary

    d = Data(db)
    for h in range(4):
        for n in range(5):
            d.pair("stripe", f"s{h}_{n}", "capture", BASE + h * HOUR + timedelta(minutes=11 * n + 1))
        d.gateway("stripe", f"missing{h}", "capture", BASE + h * HOUR + timedelta(minutes=58), amount=700)
        d.statement("stripe", f"extra{h}", "capture", BASE + h * HOUR + timedelta(minutes=7), amount=300)
        # a duplicate whose extra copy is in another currency, local to the cycle
        d.gateway(
            "stripe", f"s{h}_0", "capture", BASE + h * HOUR + timedelta(minutes=3), amount=55, currency="EUR"
        )
    # and one across cycles, in yen (no rate until later)
    d.gateway(
        "stripe", "s0_1", "capture", BASE + 3 * HOUR + timedelta(minutes=40), amount=1200, currency="JPY"
    )
    _rates(db, EUR="6.2512")
    _store_all(hook, "stripe", range(4))
    window = Window(BASE, BASE + 4 * HOUR)
    live_hook = BillingGatewayHook(config=CONFIG, use_cycle_store=False)

    async def poll():
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await fetch_summary(conn, CONFIG, "stripe", window, window.end)

    def same() -> None:
        stored, live = asyncio.run(poll()), live_hook.summary("stripe", window, reference=window.end)
        assert stored == live

    same()
    stored = asyncio.run(poll())
    assert stored.by_currency["EUR"].by_kind[DivergenceKind.DUPLICATE_IN_GATEWAY].amount_minor == 4 * 55
    assert stored.by_currency["JPY"].divergent_amount_minor == 1200
    assert stored.unconverted_currencies == ["JPY"] and "fx_rate_missing" in stored.as_dict()["alert_reasons"]
    d.gateway("stripe", "s1_2", "capture", BASE + 2 * HOUR + timedelta(minutes=30))  # a late duplicate
    db.execute("UPDATE psp_statement_lines SET amount_minor = 999 WHERE provider_reference = 's3_0'")
    same()
    _rates(db, JPY="0.0355")  # a rate arrives: converted, the same on both paths
    same()
    assert asyncio.run(poll()).unconverted_currencies == []


def test_extra_copies_that_cancel_out_are_no_figure_on_either_path(db, hook) -> None:
    """Extra copies in EUR of +5 and -5 (two keys, two cycles): no EUR figure, stored or live;
    then one of those keys changes and is classified live while the other is stored."""
    d = Data(db)
    for h, amount in ((0, 5), (1, -5)):
        d.pair("stripe", f"c{h}", "capture", BASE + h * HOUR + timedelta(minutes=10))
        d.gateway(
            "stripe",
            f"c{h}",
            "capture",
            BASE + h * HOUR + timedelta(minutes=20),
            amount=amount,
            currency="EUR",
        )
    _store_all(hook, "stripe", range(2))
    window = Window(BASE, BASE + 2 * HOUR)
    _assert_same(db, hook, "stripe", window)
    eur = hook.summary("stripe", window).by_currency["EUR"]  # the copies: 2 gateway rows, 0 EUR
    assert (eur.gateway_count, eur.gateway_amount_minor, eur.by_kind) == (2, 0, {})
    db.execute("UPDATE psp_statement_lines SET status = 'failed' WHERE provider_reference = 'c1'")
    _assert_same(db, hook, "stripe", window)
    eur = hook.summary("stripe", window).by_currency["EUR"]  # the copies: 2 gateway rows, 0 EUR
    assert (eur.gateway_count, eur.gateway_amount_minor, eur.by_kind) == (2, 0, {})
