"""PtaxHook against the local PTAX stand-in (a real HTTP server on 127.0.0.1): the OData
request, the day's closing rate, bounded retries on 5xx, no retry on 4xx."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_recon_provider.devtools.stand_ins import DemoPtaxApi
from airflow_recon_provider.hooks.fx_source import PtaxHook
from airflow_recon_provider.reconciliation.errors import ConfigError, ConnectionMissingError
from airflow_recon_provider.reconciliation.fx import (
    FxSourceRequestError,
    FxSourceUnavailableError,
    PtaxFormatError,
    PtaxNotApplicableError,
)
from airflow_recon_provider.reconciliation.money import FxRate

pytestmark = pytest.mark.integration

FRIDAY, SATURDAY = date(2026, 12, 4), date(2026, 12, 5)


@pytest.fixture
def ptax(monkeypatch):
    api = DemoPtaxApi({("EUR", FRIDAY): Decimal("6.2875"), ("JPY", FRIDAY): Decimal("0.036104")}).start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_FX_RATES_SOURCE",
        json.dumps({"conn_type": "http", "host": api.base_url, "extra": {"backoff_seconds": 0}}),
    )
    yield api
    api.stop()


def test_the_days_closing_selling_rate(ptax):
    rate = PtaxHook().rate_of_day("eur", FRIDAY)
    assert rate == FxRate(
        "EUR",
        Decimal("6.2875"),
        datetime(2026, 12, 4, 16, 10, 2, 417000, tzinfo=UTC),
        "BCB PTAX Fechamento PTAX",
    )
    assert PtaxHook().rate_of_day("JPY", FRIDAY).rate == Decimal("0.036104")
    request = ptax.requests[0]
    assert (
        request["path"]
        == "/olinda/servico/PTAX/versao/v1/odata/CotacaoMoedaDia(moeda=@moeda,dataCotacao=@dataCotacao)"
    )
    assert request["query"] == {"@moeda": "'EUR'", "@dataCotacao": "'12-04-2026'", "$format": "json"}


def test_a_day_without_bulletin_is_none(ptax):
    assert PtaxHook().rate_of_day("EUR", SATURDAY) is None
    assert len(ptax.requests) == 1


def test_5xx_is_retried_a_bounded_number_of_times_then_a_clear_error(ptax):
    ptax.fail_status = 500
    waits: list[float] = []
    hook = PtaxHook(max_attempts=3, backoff_seconds=0.5)
    hook._sleep = waits.append
    with pytest.raises(FxSourceUnavailableError) as info:
        hook.rate_of_day("EUR", FRIDAY)
    message = str(info.value)
    assert message.startswith(
        f"FX rates service {ptax.base_url} (connection fx_rates_source) answered HTTP 500"
    )
    assert "the PTAX quotation of EUR on 2026-12-04" in message and "(gave up after 3 attempts)" in message
    assert len(ptax.requests) == 3
    assert len(waits) == 2  # extra backoff_seconds 0 (the connection) wins over 0.5


def test_a_short_outage_is_ridden_out(ptax):
    ptax.fail_status, ptax.fail_times = 503, 2
    assert PtaxHook(max_attempts=3).rate_of_day("EUR", FRIDAY).rate == Decimal("6.2875")
    assert [r["failed"] for r in ptax.requests] == [True, True, False]


def test_4xx_is_not_retried(ptax):
    ptax.fail_status = 404
    with pytest.raises(FxSourceRequestError, match=r"refused the PTAX quotation of EUR.*HTTP 404.*base URL"):
        PtaxHook().rate_of_day("EUR", FRIDAY)
    assert len(ptax.requests) == 1


def test_an_answer_that_is_not_a_quotation(ptax):
    ptax.rates[("EUR", FRIDAY)] = [
        {
            "cotacaoVenda": 6.2,
            "dataHoraCotacao": "2026-12-03 13:10:00",
            "tipoBoletim": "Fechamento PTAX",
            "cotacaoCompra": 6.1,
        }
    ]
    with pytest.raises(PtaxFormatError, match="bulletin 1 is of 2026-12-03, not of the day asked"):
        PtaxHook().rate_of_day("EUR", FRIDAY)


def test_no_request_for_another_reporting_currency_or_without_connection(ptax, monkeypatch):
    with pytest.raises(PtaxNotApplicableError, match="reporting currency is EUR"):
        PtaxHook().rate_of_day("USD", FRIDAY, reporting_currency="EUR")
    assert ptax.requests == []
    monkeypatch.delenv("AIRFLOW_CONN_FX_RATES_SOURCE")
    with pytest.raises(ConnectionMissingError, match="'fx_rates_source' is not defined; create it"):
        PtaxHook().rate_of_day("USD", FRIDAY)


def test_bad_retry_settings_are_refused(ptax, monkeypatch):
    with pytest.raises(ConfigError):
        PtaxHook(max_attempts=0)
    monkeypatch.setenv(
        "AIRFLOW_CONN_FX_RATES_SOURCE",
        json.dumps({"conn_type": "http", "host": ptax.base_url, "extra": {"max_attempts": "many"}}),
    )
    with pytest.raises(ConfigError, match="extra max_attempts must be an integer of at least 1"):
        PtaxHook().rate_of_day("EUR", FRIDAY)
