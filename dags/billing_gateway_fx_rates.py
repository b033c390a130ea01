"""
### billing_gateway_fx_rates — the day's FX rates into `recon.fx_rates`

Amounts in other currencies are converted to the reporting currency (BRL) with the rate in
force at a window's end (DESIGN 3a). Each daily run fetches, per currency, the Banco
Central do Brasil **PTAX** quotation of its day through the HTTP connection
`fx_rates_source` (host = the service base URL,
`https://olinda.bcb.gov.br/olinda/servico/PTAX/versao/v1/odata`):

1. **scope_fx_day** — the day (the run's data interval, a Brasília calendar day; or the
   `day` param) and the currencies (the `currencies` param, else the Variable
   `recon_fx_currencies`, a JSON list or `USD,EUR,GBP`, else USD, EUR, GBP, JPY, CHF, CAD,
   AUD).
2. **load_ptax_rate**, one mapped task per currency — the closing bulletin (*Fechamento
   PTAX*) of the day, its selling rate (`cotacaoVenda`), in force from the bulletin's time,
   stored unless that `(currency, valid_from)` is stored already: re-running a day neither
   fails nor duplicates. A day without a bulletin (weekend, holiday) loads nothing and
   succeeds.

The service is retried a bounded number of times when it answers 5xx/429, times out or
refuses the connection; then the currency's task fails (the others still load). PTAX quotes
reais per unit: with another reporting currency the run fails at once, saying so (load
rates with `airflow-recon fx-rates load` instead).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from airflow_recon_provider.operators.fx_rates import FxRatesScopeOperator, LoadPtaxRateOperator

with DAG(
    dag_id="billing_gateway_fx_rates",
    description="Daily PTAX FX rates (BRL per unit) into recon.fx_rates",
    # one run per Brasília calendar day, after it ends: the run of [D 00:00, D+1 00:00)
    # America/Sao_Paulo starts at D+1 00:00, long after the day's closing bulletin (~13:10)
    schedule=CronDataIntervalTimetable("@daily", timezone="America/Sao_Paulo"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={
        # the rates hook already retries an unavailable service with a bounded backoff; a day
        # that failed is fetched again by re-running its run (or with the `day` param)
        "retries": 0,
        "execution_timeout": timedelta(minutes=15),
    },
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            title="Day",
            description="Fetch this PTAX day (YYYY-MM-DD) instead of the run's data interval.",
        ),
        "currencies": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": "^[A-Za-z]{3}$"},
            title="Currencies",
            description=(
                "ISO 4217 codes to fetch; empty uses the Variable recon_fx_currencies, "
                "else USD, EUR, GBP, JPY, CHF, CAD, AUD."
            ),
        ),
    },
    tags=["billing-gateway", "fx-rates"],
    doc_md=__doc__,
) as dag:
    scope = FxRatesScopeOperator(
        task_id="scope_fx_day",
        day="{{ (dag_run.conf or {}).get('day') or '' }}",
        currencies="{{ ((dag_run.conf or {}).get('currencies') or []) | join(',') }}",
    )
    LoadPtaxRateOperator.partial(
        task_id="load_ptax_rate", map_index_template="{{ task.currency }}"
    ).expand_kwargs(scope.output)
