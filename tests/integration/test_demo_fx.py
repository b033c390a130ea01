"""The demo's FX rates: seeded before the scenario's window (again = harmless), and the
stand-ins serve PTAX through the connection fx_rates_source."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_recon_provider.devtools.demo_fx import (
    DEMO_FX_RATES,
    business_days,
    demo_ptax_quotes,
    demo_rates_valid_from,
    seed_demo_fx_rates,
)
from airflow_recon_provider.devtools.stand_ins import StandIns
from airflow_recon_provider.hooks.fx_rates import FxRatesHook
from airflow_recon_provider.hooks.fx_source import PtaxHook
from airflow_recon_provider.reconciliation.config import ReconConfig

pytestmark = pytest.mark.integration


def test_demo_rates_are_in_force_over_the_scenario_window(db, airflow_conns):
    window_start = datetime(2026, 12, 7, 0, tzinfo=UTC)
    valid_from = demo_rates_valid_from(window_start)
    assert valid_from == datetime(2026, 12, 6, tzinfo=UTC)
    seeded = seed_demo_fx_rates(db, valid_from=valid_from)
    assert {"USD", "EUR", "JPY"} <= set(seeded)
    seed_demo_fx_rates(db, valid_from=valid_from)  # a second demo run the same day
    assert db.execute("SELECT count(*) FROM recon.fx_rates").fetchone()[0] == len(DEMO_FX_RATES)
    in_force = FxRatesHook(config=ReconConfig()).rates_in_force(["USD", "EUR", "JPY"], window_start)
    assert {c: r.rate for c, r in in_force.items()} == {c: DEMO_FX_RATES[c] for c in ("USD", "EUR", "JPY")}


def test_stand_ins_serve_ptax_on_business_days(monkeypatch):
    friday = date(2026, 12, 4)
    assert business_days(date(2026, 12, 6), 2) == [date(2026, 12, 3), friday]
    stand_ins = StandIns.start([], fx_rates=demo_ptax_quotes([friday]))
    try:
        assert ("demo stand-in: FX rates (BCB PTAX)", stand_ins.fx.url) in stand_ins.describe()
        conns = stand_ins.connections(("stripe",))
        assert json.loads(conns["AIRFLOW_CONN_FX_RATES_SOURCE"]) == {
            "conn_type": "http",
            "host": stand_ins.fx.base_url,
        }
        monkeypatch.setenv("AIRFLOW_CONN_FX_RATES_SOURCE", conns["AIRFLOW_CONN_FX_RATES_SOURCE"])
        assert PtaxHook().rate_of_day("EUR", friday).rate == DEMO_FX_RATES["EUR"]
        assert PtaxHook().rate_of_day("EUR", date(2026, 12, 5)) is None  # Saturday
        assert isinstance(DEMO_FX_RATES["JPY"], Decimal)
    finally:
        stand_ins.stop()
