"""The package's contract names in one home (``DESIGN.md`` §2 and §5): DAG ids, connection
ids, the alert, finance's address and the incidents channel.

Code refers to these constants; each DAG file spells its own ``dag_id`` (the file is where
the DAG is defined, and the DAG processor reads it there) and ``tests/unit/test_names.py``
checks that every DAG file's id is one of :data:`DAG_IDS` and every id here has its file.
Nothing here imports anything: the reconciliation DAG (which a site may replace with its
own) and the domain core both import it at no cost.
"""

from __future__ import annotations

# -- DAG ids ---------------------------------------------------------------------------------
RECONCILIATION_DAG_ID = "billing_gateway_reconciliation"
REMEDIATION_DAG_ID = "billing_gateway_remediation"
WATCH_DAG_ID = "billing_gateway_divergence_watch"
INCIDENT_UPDATES_DAG_ID = "billing_gateway_incident_updates"
FINANCE_REPORT_DAG_ID = "billing_gateway_finance_report"
FX_RATES_DAG_ID = "billing_gateway_fx_rates"
#: the single-action DAGs: one runbook step alone, built from the remediation's task groups
REPROCESS_DAG_ID = "billing_gateway_reprocess"
DATA_CORRECTION_DAG_ID = "billing_gateway_data_correction"
RECONCILIATION_CONTROL_DAG_ID = "billing_gateway_reconciliation_control"
RELEASE_ROLLBACK_DAG_ID = "billing_gateway_release_rollback"
SINGLE_ACTION_DAG_IDS = (
    REPROCESS_DAG_ID,
    DATA_CORRECTION_DAG_ID,
    RECONCILIATION_CONTROL_DAG_ID,
    RELEASE_ROLLBACK_DAG_ID,
)
DAG_IDS = (
    RECONCILIATION_DAG_ID,
    REMEDIATION_DAG_ID,
    WATCH_DAG_ID,
    INCIDENT_UPDATES_DAG_ID,
    FINANCE_REPORT_DAG_ID,
    FX_RATES_DAG_ID,
    *SINGLE_ACTION_DAG_IDS,
)

# -- connection ids (the hooks' ``default_conn_name``) -----------------------------------------
BILLING_GATEWAY_CONN_ID = "billing_gateway_db"
PAYMENTS_LEDGER_CONN_ID = "payments_ledger_db"
BILLING_CORE_CONN_ID = "billing_gateway_core"
RECONCILIATION_KAFKA_CONN_ID = "reconciliation_kafka"
SLACK_CONN_ID = "slack_incidents"
SMTP_CONN_ID = "smtp_finance"
KUBERNETES_CONN_ID = "kubernetes_billing"
PAGERDUTY_CONN_ID = "pagerduty_recon"
FX_RATES_SOURCE_CONN_ID = "fx_rates_source"
AIRFLOW_API_CONN_ID = "airflow_api"
#: a PSP's HTTP connection is ``psp_<name>``
PSP_CONN_PREFIX = "psp_"

# -- people and channels ---------------------------------------------------------------------
#: finance's address (runbook, Comunicação 2); the Airflow Variable
#: ``recon_finance_recipients`` replaces it at run time where a template reads it
FINANCE_EMAIL = "finance@platform.io"
#: the incidents channel (runbook, Comunicação 1)
INCIDENTS_CHANNEL = "#billing-incidents"
#: the alert's name (runbook, Detecção 1) and PagerDuty's dedup key prefix
ALERT_NAME = "billing_gateway-reconciliation"

__all__ = [
    "AIRFLOW_API_CONN_ID",
    "ALERT_NAME",
    "BILLING_CORE_CONN_ID",
    "BILLING_GATEWAY_CONN_ID",
    "DAG_IDS",
    "DATA_CORRECTION_DAG_ID",
    "FINANCE_EMAIL",
    "FINANCE_REPORT_DAG_ID",
    "FX_RATES_DAG_ID",
    "FX_RATES_SOURCE_CONN_ID",
    "INCIDENTS_CHANNEL",
    "INCIDENT_UPDATES_DAG_ID",
    "KUBERNETES_CONN_ID",
    "PAGERDUTY_CONN_ID",
    "PAYMENTS_LEDGER_CONN_ID",
    "PSP_CONN_PREFIX",
    "RECONCILIATION_CONTROL_DAG_ID",
    "RECONCILIATION_DAG_ID",
    "RECONCILIATION_KAFKA_CONN_ID",
    "RELEASE_ROLLBACK_DAG_ID",
    "REMEDIATION_DAG_ID",
    "REPROCESS_DAG_ID",
    "SINGLE_ACTION_DAG_IDS",
    "SLACK_CONN_ID",
    "SMTP_CONN_ID",
    "WATCH_DAG_ID",
]
