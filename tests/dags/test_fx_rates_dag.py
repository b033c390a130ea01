"""``billing_gateway_fx_rates`` end to end with ``dag.test()``: DagBag-loaded DAG, real
PostgreSQL, the PTAX stand-in (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_recon_provider.devtools.stand_ins import DemoPtaxApi

pytestmark = [pytest.mark.dags, pytest.mark.integration]

FRIDAY, SATURDAY = date(2026, 12, 4), date(2026, 12, 5)
# the run of Brasília day 2026-12-04: data interval [2026-12-04 03:00Z, 2026-12-05 03:00Z)
FRIDAY_RUN = datetime(2026, 12, 5, 3, tzinfo=UTC)
RATES = {"USD": Decimal("5.4312"), "EUR": Decimal("6.2875"), "JPY": Decimal("0.036104")}
CLOSING = datetime(2026, 12, 4, 16, 10, 2, 417000, tzinfo=UTC)  # 13:10:02.417 in Brasília


@pytest.fixture
def fx_dag(dagbag):
    return dagbag.dags["billing_gateway_fx_rates"]


@pytest.fixture
def ptax(db, airflow_conns, monkeypatch):
    api = DemoPtaxApi({(c, FRIDAY): r for c, r in RATES.items()}).start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_FX_RATES_SOURCE",
        json.dumps(
            {"conn_type": "http", "host": api.base_url, "extra": {"max_attempts": 3, "backoff_seconds": 0}}
        ),
    )
    monkeypatch.setenv("AIRFLOW_VAR_RECON_FX_CURRENCIES", "USD,EUR,JPY")
    yield api
    api.stop()


def stored(db):
    return db.execute("SELECT currency, rate, valid_from, source FROM recon.fx_rates ORDER BY 1").fetchall()


def states(dag_run) -> dict[str, str]:
    return {
        ti.task_id + (f"[{ti.rendered_map_index}]" if ti.map_index >= 0 else ""): ti.state
        for ti in dag_run.get_task_instances()
    }


def test_dag_shape(fx_dag):
    assert set(fx_dag.task_ids) == {"scope_fx_day", "load_ptax_rate"}
    assert fx_dag.catchup is False
    assert fx_dag.timetable.expression == "0 0 * * *"
    assert str(getattr(fx_dag.timetable.timezone, "name", fx_dag.timetable.timezone)) == "America/Sao_Paulo"
    assert set(fx_dag.params.keys()) == {"day", "currencies"}
    assert fx_dag.get_task("load_ptax_rate").upstream_task_ids == {"scope_fx_day"}


@pytest.mark.timeout(240)
def test_the_days_rates_land_once_however_often_the_day_runs(fx_dag, ptax, db):
    first = fx_dag.test(logical_date=FRIDAY_RUN)
    assert first.state == "success", states(first)
    assert states(first) == {
        "scope_fx_day": "success",
        "load_ptax_rate[USD]": "success",
        "load_ptax_rate[EUR]": "success",
        "load_ptax_rate[JPY]": "success",
    }
    expected = [
        ("EUR", RATES["EUR"], CLOSING, "BCB PTAX Fechamento PTAX"),
        ("JPY", RATES["JPY"], CLOSING, "BCB PTAX Fechamento PTAX"),
        ("USD", RATES["USD"], CLOSING, "BCB PTAX Fechamento PTAX"),
    ]
    assert stored(db) == expected
    # the day of the data interval was asked, in the service's MM-DD-YYYY
    assert {r["query"]["@dataCotacao"] for r in ptax.requests} == {"'12-04-2026'"}

    second = fx_dag.test(logical_date=FRIDAY_RUN)
    assert second.state == "success", states(second)
    assert stored(db) == expected  # nothing twice, nothing changed
    assert len(ptax.requests) == 6


@pytest.mark.timeout(240)
def test_a_day_without_bulletin_loads_nothing_and_succeeds(fx_dag, ptax, db):
    run = fx_dag.test(logical_date=FRIDAY_RUN, run_conf={"day": SATURDAY.isoformat(), "currencies": ["EUR"]})
    assert run.state == "success", states(run)
    assert states(run) == {"scope_fx_day": "success", "load_ptax_rate[EUR]": "success"}
    assert [r["query"] for r in ptax.requests] == [
        {"@moeda": "'EUR'", "@dataCotacao": "'12-05-2026'", "$format": "json"}
    ]
    assert stored(db) == []


@pytest.mark.timeout(240)
def test_a_service_answering_500_is_retried_then_fails_clearly_and_loads_nothing(fx_dag, ptax, db, capfd):
    ptax.fail_status = 500
    run = fx_dag.test(logical_date=FRIDAY_RUN, run_conf={"currencies": ["USD", "EUR"]})
    assert run.state == "failed"
    assert states(run) == {
        "scope_fx_day": "success",
        "load_ptax_rate[USD]": "failed",
        "load_ptax_rate[EUR]": "failed",
    }
    # 3 attempts per currency (the connection's max_attempts), then the task fails
    assert len(ptax.requests) == 6
    assert stored(db) == []
    out = "".join(capfd.readouterr())  # the task's log (dag.test runs it in this process)
    assert (
        "FxSourceUnavailableError: FX rates service "
        + ptax.base_url
        + " (connection fx_rates_source) answered "
        "HTTP 500 Internal Server Error to the PTAX quotation of USD on 2026-12-04"
    ) in out
    assert out.count("(gave up after 3 attempts)") >= 2  # USD and EUR


@pytest.mark.timeout(240)
def test_one_currency_failing_does_not_stop_the_others(fx_dag, ptax, db):
    ptax.rates[("EUR", FRIDAY)] = [
        {
            "cotacaoVenda": -1,
            "cotacaoCompra": 1,
            "tipoBoletim": "Fechamento PTAX",
            "dataHoraCotacao": "2026-12-04 13:10:00",
        }
    ]
    run = fx_dag.test(logical_date=FRIDAY_RUN)
    assert run.state == "failed"
    assert states(run)["load_ptax_rate[EUR]"] == "failed"
    assert [r[0] for r in stored(db)] == ["JPY", "USD"]


@pytest.mark.timeout(240)
def test_another_reporting_currency_fails_at_once_without_a_request(fx_dag, ptax, db, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"reporting_currency": "USD"}))
    run = fx_dag.test(logical_date=FRIDAY_RUN)
    assert run.state == "failed"
    assert states(run)["scope_fx_day"] == "failed"
    assert ptax.requests == [] and stored(db) == []
