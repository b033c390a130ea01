"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Keep this importable without side effects: a broken provider info breaks all of Airflow.
"""

from __future__ import annotations

from typing import Any

from airflow_recon_provider import __version__

_POSTGRES_FIELD_BEHAVIOUR = {
    "hidden-fields": [],
    "relabeling": {"schema": "Database", "login": "User"},
    "placeholders": {
        "host": "billing-gateway-db.internal or 127.0.0.1",
        "port": "5432",
        "schema": "database name",
        "extra": '{"sslmode": "require"}',
    },
}

# connection psp_<name>: the PSP's statements (and health) API; the token goes out as a bearer
_PSP_FIELD_BEHAVIOUR = {
    "hidden-fields": ["schema", "login"],
    "relabeling": {"host": "PSP API base URL", "password": "API token"},
    "placeholders": {
        "host": "https://api.psp.example/v1",
        "port": "443 (optional)",
        "password": "bearer token (optional)",
        "extra": '{"X-Api-Version": "2026-01"} (sent as HTTP headers)',
    },
}


_CONFIG = {
    "recon": {
        "description": "Billing gateway reconciliation: where the runbook's artifacts (snapshot, "
        "dry-run CSV, PSP ticket, closing report, release record) are stored, where people "
        "open them, and the language people read.",
        "options": {
            "artifacts_base_url": {
                "description": (
                    "Base URL of the artifact store, read through Airflow's object storage: "
                    "s3://bucket/prefix (or another scheme an installed Airflow provider registers) "
                    "in production, where workers share no disk; file:///shared/dir on one host. "
                    "Each artifact goes to <base>/<dag_id>/<run_id>/<name>, written once. "
                    "Empty: $RECON_ARTIFACTS_DIR (a local directory) when set, else "
                    "file://$AIRFLOW_HOME/recon-artifacts."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "s3://finops-recon-artifacts/prod",
                "default": "",
            },
            "artifacts_conn_id": {
                "description": (
                    "Airflow connection of the artifact store (for s3://, an aws connection: key, "
                    "secret, and endpoint_url in its extra for an S3-compatible server). Empty for "
                    "file://."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "aws_recon_artifacts",
                "default": "",
            },
            "dashboard_base_url": {
                "description": (
                    "Where people open the reconciliation dashboard: XCom, the incident timeline, "
                    "approval texts and e-mails link each artifact as "
                    "<dashboard_base_url>/artifacts/<id>. Empty: [api] base_url followed by /recon."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "https://airflow.example.com/recon",
                "default": "",
            },
            "finance_approvers": {
                "description": (
                    "Who may approve a data correction (Mitigação 2): Airflow user names, comma "
                    "separated; the approval's only respondents (the run's requester never). Read "
                    "when the DAG files are parsed: the same value on the dag-processor and the "
                    "workers. Empty: $RECON_FINANCE_APPROVERS when set, else anyone but the "
                    "requester."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "finance,finance_lead",
                "default": "",
            },
            "psp_ticket_timeout": {
                "description": (
                    "Seconds on-call is asked for the PSP's ticket number (Comunicação 3) before "
                    "the question ends without one, from 60 to 604800. Empty: "
                    "$RECON_PSP_TICKET_TIMEOUT_MINUTES (minutes) when set, else 3600."
                ),
                "version_added": "0.1.0",
                "type": "float",
                "example": "7200",
                "default": "",
            },
            "recovery_poll_interval": {
                "description": (
                    "Seconds between two checks of the recovery criteria (Critérios de "
                    "Recuperação) while a remediation waits for its PSP to recover, from 1 to "
                    "3600. A value out of range fails the recovery task with this option named."
                ),
                "version_added": "0.1.0",
                "type": "float",
                "example": "60",
                "default": "300",
            },
            "language": {
                "description": (
                    "Language of what people read: the dashboard, the DAG forms, the approval, "
                    "e-mails, Slack, the incident timeline, the closing report and the PSP "
                    "ticket. pt-BR (Brazilian Portuguese, the runbook's language) or en "
                    "(English). Amounts, numbers and dates follow it (R$ 104.175,21 in pt-BR). "
                    "Logs and exceptions stay in English."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "en",
                "default": "pt-BR",
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-recon-provider",
        "name": "Billing Gateway Reconciliation",
        "description": (
            "Automates the billing gateway reconciliation runbook: divergence detection, "
            "investigation, containment, reprocessing, finance-approved corrections and "
            "communication."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Billing Gateway Reconciliation",
                "external-doc-url": "https://airflow.apache.org/docs/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Billing Gateway Reconciliation",
                "python-modules": [
                    "airflow_recon_provider.hooks.billing_gateway",
                    "airflow_recon_provider.hooks.payments_ledger",
                    "airflow_recon_provider.hooks.reconciliation_events",
                    "airflow_recon_provider.hooks.psp",
                    "airflow_recon_provider.hooks.billing_core",
                    "airflow_recon_provider.hooks.incidents",
                    # recon.notifications: the outbox of the messages to finance
                    "airflow_recon_provider.hooks.notifications",
                    "airflow_recon_provider.hooks.corrections",
                    # recon.artifacts: the artifacts written to the object store ([recon])
                    "airflow_recon_provider.hooks.artifacts",
                    # fx_rates: recon.fx_rates on billing_gateway_db; fx_source: the PTAX rates
                    # service on the plain `http` connection fx_rates_source
                    "airflow_recon_provider.hooks.fx_rates",
                    "airflow_recon_provider.hooks.fx_source",
                    # the alert in PagerDuty on the pagerduty provider's `pagerduty_events`
                    # connection pagerduty_recon (the type is the provider's, not registered here)
                    "airflow_recon_provider.hooks.pagerduty",
                    # Investigação 2 "coletar logs": Airflow's REST API on the plain `http`
                    # connection airflow_api (the api-server; JWT from POST /auth/token)
                    "airflow_recon_provider.hooks.airflow_api",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Billing Gateway Reconciliation",
                "python-modules": [
                    "airflow_recon_provider.operators.reconciliation",
                    "airflow_recon_provider.operators.corrections",
                    "airflow_recon_provider.operators.reprocess",
                    "airflow_recon_provider.operators.release",
                    "airflow_recon_provider.operators.psp_ticket",
                    # Comunicação 3: the PSP's ticket number asked in Required actions
                    "airflow_recon_provider.operators.psp_ticket_number",
                    "airflow_recon_provider.operators.incidents",
                    "airflow_recon_provider.operators.fx_rates",
                    "airflow_recon_provider.operators.pagerduty",
                    "airflow_recon_provider.operators.finance_review",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Billing Gateway Reconciliation",
                "python-modules": [
                    "airflow_recon_provider.sensors.divergence",
                    "airflow_recon_provider.sensors.recovery",
                    "airflow_recon_provider.sensors.psp_health",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "Billing Gateway Reconciliation",
                "python-modules": [
                    "airflow_recon_provider.triggers.divergence",
                    "airflow_recon_provider.triggers.recovery",
                    "airflow_recon_provider.triggers.psp_health",
                    "airflow_recon_provider.triggers.reprocess",
                ],
            }
        ],
        # [recon] of the Airflow configuration (AIRFLOW__RECON__<OPTION> works too)
        "config": _CONFIG,
        "notifications": ["airflow_recon_provider.notifications.finance.FinanceNotifier"],
        "plugins": [
            {
                "name": "reconciliation_dashboard",
                "plugin-class": (
                    "airflow_recon_provider.plugins.reconciliation_dashboard.ReconciliationDashboardPlugin"
                ),
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_recon_provider.hooks.billing_gateway.BillingGatewayHook",
                "hook-name": "Billing Gateway DB (PostgreSQL)",
                "connection-type": "billing_gateway",
                "ui-field-behaviour": _POSTGRES_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_recon_provider.hooks.payments_ledger.PaymentsLedgerHook",
                "hook-name": "Payments Ledger DB (PostgreSQL)",
                "connection-type": "payments_ledger",
                "ui-field-behaviour": _POSTGRES_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_recon_provider.hooks.psp.PspHook",
                "hook-name": "PSP API",
                "connection-type": "psp",
                "ui-field-behaviour": _PSP_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": (
                    "airflow_recon_provider.hooks.reconciliation_events.ReconciliationEventsHook"
                ),
                "hook-name": "Reconciliation Events (Kafka)",
                "connection-type": "reconciliation_kafka",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "password", "port", "host"],
                    "relabeling": {"extra": "Config Dict"},
                    "placeholders": {
                        "extra": '{"bootstrap.servers": "kafka-1:9092,kafka-2:9092", '
                        '"security.protocol": "SSL"}'
                    },
                },
            },
            {
                "hook-class-name": "airflow_recon_provider.hooks.billing_core.BillingCoreHook",
                "hook-name": "Billing Gateway Core",
                "connection-type": "billing_core",
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {
                        "host": "Core base URL",
                        "password": "API token (bearer)",
                        "schema": "Scheme (http/https)",
                    },
                    "placeholders": {"host": "http://billing-gateway-core:8000"},
                },
            },
        ],
    }
