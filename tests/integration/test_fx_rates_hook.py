"""FxRatesHook on a real PostgreSQL: a rates file loads whole or not at all, the daily
upsert is idempotent, and the rate in force at a moment is the latest valid_from <= it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from airflow_recon_provider.hooks.fx_rates import FxRatesHook
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError, DatabaseUnavailableError
from airflow_recon_provider.reconciliation.fx import (
    FxFileError,
    FxTableMissingError,
    RatesFile,
    parse_rates_csv,
)
from airflow_recon_provider.reconciliation.money import CurrencyError, FxRate

pytestmark = pytest.mark.integration

HEADER = "currency,rate,valid_from,source\n"


def rows(db):
    return db.execute(
        "SELECT currency, rate, valid_from, source FROM recon.fx_rates ORDER BY currency, valid_from"
    ).fetchall()


@pytest.fixture
def hook(airflow_conns):
    return FxRatesHook(config=ReconConfig())


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_load_stores_every_rate_exactly(db, hook):
    rates = parse_rates_csv(
        HEADER
        + "USD,5.4312,2026-12-04,BCB PTAX\n"
        + "EUR,6.28750000000000000001,2026-12-04T13:10:02-03:00,treasury\n"
        + "USD,5.4400,2026-12-05,BCB PTAX\n"
        + "JPY,0.036104,2026-12-04,BCB PTAX\n",
        name="rates.csv",
    )
    assert hook.load(rates) == {"EUR": 1, "JPY": 1, "USD": 2}
    assert rows(db) == [
        ("EUR", Decimal("6.28750000000000000001"), datetime(2026, 12, 4, 16, 10, 2, tzinfo=UTC), "treasury"),
        ("JPY", Decimal("0.036104"), at(4), "BCB PTAX"),
        ("USD", Decimal("5.4312"), at(4), "BCB PTAX"),
        ("USD", Decimal("5.4400"), at(5), "BCB PTAX"),
    ]


def test_a_key_already_in_the_table_refuses_the_whole_file_naming_line_and_row(db, hook):
    db.execute(
        "INSERT INTO recon.fx_rates (currency, rate, valid_from, source, loaded_at)"
        " VALUES ('EUR', 6.1, '2026-12-04T00:00Z', 'old file', '2026-12-05T08:00Z')"
    )
    before = rows(db)
    rates = parse_rates_csv(
        HEADER + "USD,5.43,2026-12-04,new\nJPY,0.0361,2026-12-04,new\nEUR,6.28,2026-12-03T21:00-03:00,new\n",
        name="december.csv",
    )
    with pytest.raises(FxFileError) as info:
        hook.load(rates)
    assert str(info.value) == (
        "december.csv line 4: EUR valid from 2026-12-04T00:00:00Z is already in recon.fx_rates "
        "(rate 6.1, source 'old file', loaded 2026-12-05T08:00:00Z); nothing was loaded"
    )
    assert info.value.line == 4
    assert rows(db) == before  # USD and JPY were not loaded either


def test_loading_the_same_file_twice_refuses_the_second_time(db, hook):
    rates = parse_rates_csv(HEADER + "USD,5.43,2026-12-04,a\nEUR,6.28,2026-12-04,a\n", name="r.csv")
    hook.load(rates)
    with pytest.raises(
        FxFileError, match=r"r.csv line 2: USD valid from .* already in recon.fx_rates .*\(1 more line"
    ):
        hook.load(rates)
    assert len(rows(db)) == 2


def test_a_failure_in_the_middle_of_the_copy_keeps_nothing(db, hook):
    good = FxRate("USD", Decimal("5.43"), at(4), "a")
    # a row the table's CHECK refuses (currency ^[A-Z]{3}$), after a good one
    bad = FxRate("usd", Decimal("1"), at(5), "b")
    with pytest.raises(psycopg.errors.CheckViolation):
        hook.load(RatesFile.of([good, bad]))
    assert rows(db) == []


def test_missing_schema_connection_and_database(db_url, airflow_conns, db, monkeypatch):
    db.execute("DROP TABLE recon.fx_rates")
    rates = RatesFile.of([FxRate("USD", Decimal("5.43"), at(4), "a")])
    with pytest.raises(FxTableMissingError, match="run `airflow-recon migrate` first"):
        FxRatesHook(config=ReconConfig()).load(rates)
    monkeypatch.delenv("AIRFLOW_CONN_BILLING_GATEWAY_DB")
    with pytest.raises(ConnectionMissingError, match="billing_gateway_db"):
        FxRatesHook(config=ReconConfig()).load(rates)
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", "postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailableError, match="unreachable"):
        FxRatesHook(config=ReconConfig()).load(rates)


def test_upsert_daily_is_idempotent_and_never_overwrites(db, hook):
    usd = FxRate("USD", Decimal("5.4312"), at(4, 16, 10), "BCB PTAX Fechamento PTAX")
    eur = FxRate("EUR", Decimal("6.2875"), at(4, 16, 10), "BCB PTAX Fechamento PTAX")
    first = hook.upsert_daily([usd, eur])
    assert (first.inserted, first.unchanged, first.conflicting) == ((usd, eur), (), ())
    again = hook.upsert_daily([usd, eur])
    assert (again.inserted, again.unchanged, again.conflicting) == ((), (usd, eur), ())
    revised = FxRate("USD", Decimal("5.4400"), at(4, 16, 10), "BCB PTAX Fechamento PTAX")
    third = hook.upsert_daily([revised])
    assert third.conflicting == ((revised, usd),)
    assert third.as_dict()["conflicting"][0]["stored"]["rate"] == "5.4312"
    assert rows(db) == [
        ("EUR", Decimal("6.2875"), at(4, 16, 10), "BCB PTAX Fechamento PTAX"),
        ("USD", Decimal("5.4312"), at(4, 16, 10), "BCB PTAX Fechamento PTAX"),
    ]
    assert hook.upsert_daily([]).inserted == ()


def test_rates_in_force_is_the_latest_valid_from_at_or_before_the_moment(db, hook):
    hook.load(
        parse_rates_csv(
            HEADER
            + "USD,5.40,2026-12-03T16:10Z,a\n"
            + "USD,5.43,2026-12-04T16:10Z,a\n"
            + "USD,5.50,2026-12-05T16:10Z,a\n"
            + "EUR,6.28,2026-12-04T16:10Z,a\n"
        )
    )
    found = hook.rates_in_force(["usd", "EUR", "JPY"], at(4, 16, 10))
    assert found == {
        "USD": FxRate("USD", Decimal("5.43"), at(4, 16, 10), "a"),  # valid_from == moment counts
        "EUR": FxRate("EUR", Decimal("6.28"), at(4, 16, 10), "a"),
    }
    assert hook.rates_in_force(["USD", "EUR"], at(4, 16, 9))["USD"].rate == Decimal("5.40")
    assert "EUR" not in hook.rates_in_force(["USD", "EUR"], at(4, 16, 9))
    assert hook.rates_in_force(["USD"], datetime(2026, 12, 31, 12, tzinfo=UTC))["USD"].rate == Decimal("5.50")
    assert hook.rates_in_force([], at(4)) == {}
    with pytest.raises(CurrencyError):
        hook.rates_in_force(["XAU"], at(4))
    with pytest.raises(ValueError, match="timezone-aware"):
        hook.rates_in_force(["USD"], datetime(2026, 12, 4))


@pytest.mark.timeout(60)
def test_two_loads_at_once_never_store_a_key_twice_nor_fail_half_way(db, airflow_conns):
    """Loads take the table's write lock: the second waits, then sees the first's rows and
    refuses its whole file, naming the line."""
    a = parse_rates_csv(HEADER + "USD,5.43,2026-12-04,a\nEUR,6.28,2026-12-04,a\n", name="a.csv")
    b = parse_rates_csv(HEADER + "JPY,0.0361,2026-12-04,b\nEUR,6.30,2026-12-04,b\n", name="b.csv")
    outcomes: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def run(name: str, rates: RatesFile) -> None:
        barrier.wait()
        try:
            outcomes[name] = FxRatesHook(config=ReconConfig()).load(rates)
        except FxFileError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(n, r)) for n, r in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    failed = [v for v in outcomes.values() if isinstance(v, FxFileError)]
    assert len(outcomes) == 2 and len(failed) == 1
    assert "line 3: EUR valid from 2026-12-04T00:00:00Z is already in recon.fx_rates" in str(failed[0])
    stored = rows(db)
    assert len(stored) == 2 and {r[0] for r in stored} in ({"USD", "EUR"}, {"JPY", "EUR"})
