"""Operators of the daily FX rates (DAG ``billing_gateway_fx_rates``, DESIGN 3a).

- :class:`FxRatesScopeOperator` decides the run's PTAX day and currencies and hands one
  ``{"currency", "day"}`` per currency to the mapped loads.
- :class:`LoadPtaxRateOperator` fetches one currency's PTAX quotation of the day
  (connection ``fx_rates_source``) and stores it in ``recon.fx_rates`` (connection
  ``billing_gateway_db``), idempotently: a re-run of the day stores nothing twice. A day
  without a bulletin (weekend, holiday) loads nothing and succeeds.

Currencies: the run's ``currencies`` (conf/Param), else the Airflow Variable
``recon_fx_currencies`` (a JSON list or ``"USD,EUR,GBP"``), else
:data:`~airflow_recon_provider.reconciliation.fx.DEFAULT_DAILY_CURRENCIES`. Hooks are
imported inside ``execute`` so that the DAG file parses fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, FX_RATES_SOURCE_CONN_ID
from airflow_recon_provider.operators._context import blank

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Airflow Variable with the currencies the daily DAG fetches
CURRENCIES_VARIABLE = "recon_fx_currencies"


def _fail_without_retry(exc: Exception) -> Exception:
    """Bad input or a refused request: retrying the task cannot help."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


class FxRatesScopeOperator(BaseOperator):
    """The PTAX day and the currencies of a daily FX rates run.

    Returns one ``{"currency", "day"}`` per currency, for ``expand_kwargs`` of the loads.

    :param day: the day to fetch, ``YYYY-MM-DD``; empty means the run's data interval's day
        (Brasília calendar).
    :param currencies: currencies to fetch (a list, or ``"USD,EUR"``); empty means the
        Variable ``recon_fx_currencies``, else the defaults.
    """

    template_fields: Sequence[str] = ("day", "currencies")
    ui_color = "#e6f4ea"

    def __init__(self, *, day: Any = None, currencies: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.day = day
        self.currencies = currencies

    def _currencies(self, reporting_currency: str) -> tuple[str, ...]:
        from airflow_recon_provider.reconciliation.fx import DEFAULT_DAILY_CURRENCIES, parse_currency_list

        value: Any = self.currencies
        origin = "the run's currencies"
        if blank(value) or value == []:
            from airflow.sdk import Variable

            value = Variable.get(CURRENCIES_VARIABLE, default=None)
            origin = f"Variable {CURRENCIES_VARIABLE}"
            if blank(value):
                value, origin = list(DEFAULT_DAILY_CURRENCIES), "the default currencies"
        codes = parse_currency_list(value, reporting_currency=reporting_currency)
        self.log.info("Currencies from %s: %s", origin, ", ".join(codes))
        return codes

    def execute(self, context: Context) -> list[dict[str, str]]:
        from datetime import UTC, datetime

        from airflow_recon_provider.reconciliation.config import ReconConfig
        from airflow_recon_provider.reconciliation.errors import ReconError
        from airflow_recon_provider.reconciliation.fx import (
            check_ptax_reporting_currency,
            parse_day,
            quotation_day,
        )

        try:
            config = ReconConfig.load()
            check_ptax_reporting_currency(config.reporting_currency)
            if blank(self.day):
                dag_run = context.get("dag_run")
                fallback = getattr(dag_run, "run_after", None) or datetime.now(UTC)
                day = quotation_day(
                    context.get("data_interval_start"), context.get("data_interval_end"), fallback=fallback
                )
            else:
                day = parse_day(self.day)
            codes = self._currencies(config.reporting_currency)
        except ReconError as exc:
            raise _fail_without_retry(exc) from exc
        self.log.info("PTAX day %s", day.isoformat())
        return [{"currency": code, "day": day.isoformat()} for code in codes]


class LoadPtaxRateOperator(BaseOperator):
    """Fetch the PTAX rate of one currency and day and store it in ``recon.fx_rates``.

    Returns ``{"currency", "day", "loaded"}`` with ``rate``, ``valid_from``, ``source`` and
    ``outcome`` (``inserted``, ``unchanged``, ``conflicting`` or ``no_bulletin``).

    :param currency: ISO 4217 code (not the reporting currency).
    :param day: the PTAX day, ``YYYY-MM-DD``.
    :param fx_rates_conn_id: connection of the rates service.
    :param billing_gateway_conn_id: connection of the database holding ``recon.fx_rates``.
    """

    template_fields: Sequence[str] = ("currency", "day")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        currency: str,
        day: str,
        fx_rates_conn_id: str = FX_RATES_SOURCE_CONN_ID,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.currency = currency
        self.day = day
        self.fx_rates_conn_id = fx_rates_conn_id
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.fx_rates import FxRatesHook
        from airflow_recon_provider.hooks.fx_source import PtaxHook
        from airflow_recon_provider.reconciliation.config import ReconConfig
        from airflow_recon_provider.reconciliation.errors import ReconError
        from airflow_recon_provider.reconciliation.fx import parse_day

        config = ReconConfig.load()
        try:
            day = parse_day(self.day)
            rate = PtaxHook(self.fx_rates_conn_id).rate_of_day(
                self.currency, day, reporting_currency=config.reporting_currency
            )
        except ReconError as exc:  # bad input, a refused request, an answer that is no quotation
            raise _fail_without_retry(exc) from exc
        # an unavailable source (DependencyUnavailableError) was retried by the hook and
        # propagates: a task retry may still help later
        result: dict[str, Any] = {"currency": str(self.currency).upper(), "day": day.isoformat()}
        if rate is None:
            self.log.info(
                "No PTAX bulletin for %s on %s (weekend, holiday or not published yet): nothing loaded",
                result["currency"],
                result["day"],
            )
            return {**result, "loaded": 0, "outcome": "no_bulletin"}
        done = FxRatesHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=config).upsert_daily(
            [rate]
        )
        outcome = "inserted" if done.inserted else "unchanged" if done.unchanged else "conflicting"
        self.log.info(
            "%s %s: rate %s valid from %s (%s) %s",
            result["currency"],
            result["day"],
            rate.as_dict()["rate"],
            rate.as_dict()["valid_from"],
            rate.source,
            {
                "inserted": "stored",
                "unchanged": "already stored",
                "conflicting": "NOT stored: another rate is stored for that time",
            }[outcome],
        )
        return {**result, **rate.as_dict(), "loaded": len(done.inserted), "outcome": outcome}
