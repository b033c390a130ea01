"""
### billing_gateway_divergence_watch — detection that starts remediation by itself

Runbook *Billing Gateway — Falhas de Reconciliação*, **Detecção** and **Contexto**: the
alert `billing_gateway-reconciliation` fires when a PSP's divergent amount is above
R$ 5.000 or its reconciliation lags more than 2 cycles.

- **Event-driven (default)**: an `AssetWatcher` runs the `DivergenceTrigger` in the
  triggerer, polling every configured PSP; a breach creates an asset event that starts
  this DAG with the alert as payload.
- **Hourly fallback** (`RECON_WATCH_MODE=cron`, for sites that run no triggerer): the
  same check, polled once an hour.

Then, per alert: **open_incidents** opens the PSP's incident (one open incident per PSP:
a PSP already under an incident is left to its remediation) and
**start_remediation** triggers `billing_gateway_remediation` with
`{psp, window_start, window_end, incident_id}`; the run id is derived from the incident,
so a retry never starts a second remediation; **page_oncall** triggers the alert
`billing_gateway-reconciliation` in PagerDuty (connection `pagerduty_recon`, dedup key
`billing_gateway-reconciliation:<psp>:<incident_id>`: a re-fire while the incident is open is
the same PagerDuty incident). A PagerDuty outage is recorded on the incident's timeline and
never holds the remediation up.

**An incident opened by finance's report** (`billing_gateway_finance_report`, the dashboard's
*Reportar divergência*) does not silence the watch. While nothing but that report's dry run has
worked on it, a breach fires on *that* incident (no second incident) and starts its real
remediation `watch__<incident_id>`. The timeline records why (`detection.watch_alert`:
"Alerta billing_gateway-reconciliation … em que só o relato do financeiro trabalhou …"). The
watch stays quiet once it has fired on the incident, while any run holds the PSP's
remediation lease (one real remediation per PSP at a time), after a real run claimed the
lease for the incident, and after on-call's own run (dry or real) worked on it.
`open_incidents` decides again under the PSP's incident lock, so a stale alert starts
nothing (rule: `reconciliation/detection.watch_fires_on_open_incident`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_recon_provider.operators.pagerduty import PagerDutyAlertOperator
from airflow_recon_provider.operators.watch import (
    CollectDivergenceAlertsOperator,
    OpenIncidentsForAlertsOperator,
)
from airflow_recon_provider.triggers.divergence import DivergenceTrigger

POLL_SECONDS = float(os.environ.get("RECON_WATCH_POLL_SECONDS", "300"))

divergence_alerts = Asset(
    name="billing_gateway_divergence_alerts",
    uri="recon://billing-gateway/divergence-alerts",
    watchers=[
        AssetWatcher(
            name="billing_gateway_divergence_trigger",
            trigger=DivergenceTrigger(psps=[], poll_interval=POLL_SECONDS, once=False),
        )
    ],
)

with DAG(
    dag_id="billing_gateway_divergence_watch",
    description="Detects reconciliation divergence or lag and starts billing_gateway_remediation",
    schedule="@hourly" if os.environ.get("RECON_WATCH_MODE") == "cron" else [divergence_alerts],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # two watch runs at once could race to open the same PSP's incident
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["billing-gateway", "reconciliation", "detection"],
    doc_md=__doc__,
) as dag:
    alerts = CollectDivergenceAlertsOperator(task_id="collect_alerts")
    runs = OpenIncidentsForAlertsOperator(task_id="open_incidents", alerts=alerts.output)
    TriggerDagRunOperator.partial(
        task_id="start_remediation",
        trigger_dag_id="billing_gateway_remediation",
        wait_for_completion=False,
        skip_when_already_exists=True,
    ).expand_kwargs(runs.output)
    # Detecção 1: page on-call; the alert links to the remediation run started beside it
    runs >> PagerDutyAlertOperator(
        task_id="page_oncall",
        alerts=alerts.output,
        pagerduty_conn_id="{{ var.value.get('recon_pagerduty_conn_id', 'pagerduty_recon') }}",
    )
