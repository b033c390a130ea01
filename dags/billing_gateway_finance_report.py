"""
### billing_gateway_finance_report — Detecção 2: finance reports a ledger vs statement difference

Runbook *Billing Gateway — Falhas de Reconciliação*, **Detecção** 2: "Chamados do financeiro
relatando diferenças entre ledger interno e extratos PSP". Finance fills this form (or the
dashboard's *Reportar divergência*, which triggers this DAG as the logged-in user): the PSP,
the period (UTC), its ticket (`FIN-88`) and what it saw.

1. **record_report** — every field is checked first (unknown PSP, end not after start,
   window over the maximum, ticket not `FIN-<número>`, description empty, too long or with
   control characters: one clear error per field, nothing written). The report goes on the
   PSP's incident: the open one (attached; no second incident), else a new one with reason
   `finance report FIN-88`. The timeline keeps the ticket, the description, who reported and
   when.
2. **start_dry_run** — triggers `billing_gateway_remediation` with
   `{psp, window_start, window_end, incident_id, dry_run: true}` at once and does not wait:
   the investigation (snapshot, divergence by kind and currency, cycles, ledger) and the
   correction's dry run (a CSV), nothing changed. Its run id is derived from this run, so a
   retry never starts a second one. When its investigation is done, its findings — gateway
   vs statement per status and currency, the ledger beside the gateway per status and
   currency — are on the incident, and the dashboard's incident page shows them to finance.
3. **notify_oncall** — on-call is told in the incidents channel (connection
   `slack_incidents`); the message is on the timeline.
4. **page_oncall** — and in PagerDuty at low urgency (connection `pagerduty_recon`): a
   trigger with severity `info` and the incident's dedup key
   `billing_gateway-reconciliation:<psp>:<incident_id>`, added to the incident's alert when
   one is open. PagerDuty down or not configured: recorded on the timeline, never blocking.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, XComArg

from airflow_recon_provider.finance_report import finance_report_params
from airflow_recon_provider.names import REMEDIATION_DAG_ID
from airflow_recon_provider.operators.finance_report import (
    DRY_RUN_CONF_KEY,
    DRY_RUN_ID_KEY,
    NotifyFinanceReportOperator,
    RecordFinanceReportOperator,
)
from airflow_recon_provider.operators.pagerduty import PagerDutyFinanceReportOperator

with DAG(
    dag_id="billing_gateway_finance_report",
    description="Finance reports a ledger vs PSP statement difference: incident, dry run, on-call",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    params=finance_report_params(),
    default_args={"retries": 0},
    tags=["billing-gateway", "reconciliation", "detection", "finance"],
    doc_md=__doc__,
) as dag:
    report = RecordFinanceReportOperator(
        task_id="record_report",
        psp="{{ params.psp }}",
        window_start="{{ params.get('window_start') or '' }}",
        window_end="{{ params.get('window_end') or '' }}",
        finance_ticket="{{ params.get('finance_ticket') or '' }}",
        description="{{ params.get('description') or '' }}",
    )
    report >> TriggerDagRunOperator(
        task_id="start_dry_run",
        trigger_dag_id=REMEDIATION_DAG_ID,
        trigger_run_id=XComArg(report, key=DRY_RUN_ID_KEY),
        conf=XComArg(report, key=DRY_RUN_CONF_KEY),
        wait_for_completion=False,
        skip_when_already_exists=True,
    )
    NotifyFinanceReportOperator(
        task_id="notify_oncall",
        report=report.output,
        # Slack may be briefly down: the message is recorded as failed and sent again
        retries=2,
        retry_delay=timedelta(minutes=1),
    )
    # low urgency; PagerDuty down never holds the report up (the step records it and succeeds)
    PagerDutyFinanceReportOperator(task_id="page_oncall", report=report.output)
