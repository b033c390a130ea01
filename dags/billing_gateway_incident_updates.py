"""
### billing_gateway_incident_updates — finance hears every 30 minutes until normalization

Runbook *Billing Gateway — Falhas de Reconciliação*, Comunicação: "Atualizar incidente com
percentual de divergência e passos executados", "Enviar resumo para `finance@platform.io` a
cada 30 minutos até normalização", "Registrar número do ticket do PSP (se houver) no
incidente".

Every 30 minutes, **send_incident_updates** — for each incident in `recon.incidents`:

- not yet normalized (`open`, `mitigating`): the update — divergence % and amount now over
  the incident's window, the steps executed since the last update (`recon.incident_events`),
  the estimated resumption and the PSP ticket — by e-mail (connection `smtp_finance`, plain
  text and HTML) and in the incidents channel (connection `slack_incidents`);
- `recovered` or `closed`: one final "normalized" update, then nothing more about it.

Every message is logged in `recon.notifications`. When the mail server or Slack is down the
delivery is recorded as failed, the task fails (visible here), and the next run's update
carries everything since the last delivered one. A run that never happened shows on the
incident's timeline as a missed update. Recipients: Airflow Variable
`recon_finance_recipients` (comma separated), default `finance@platform.io`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, CronTriggerTimetable

from airflow_recon_provider.operators.incidents import SendIncidentUpdatesOperator

with DAG(
    dag_id="billing_gateway_incident_updates",
    description="Incident updates to finance (e-mail) and the incidents channel (Slack) every 30 minutes",
    # a trigger timetable: the run of 10:30 has logical date 10:30, the moment of its update
    schedule=CronTriggerTimetable("*/30 * * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    # one sender at a time: two runs must not both deliver the same update
    max_active_runs=1,
    default_args={
        # a failed delivery is retried by the next run's update, not by a task retry that
        # would send a stale copy a few minutes later
        "retries": 0,
        "execution_timeout": timedelta(minutes=10),
    },
    tags=["billing-gateway", "reconciliation", "communication"],
    doc_md=__doc__,
) as dag:
    SendIncidentUpdatesOperator(
        task_id="send_incident_updates",
        recipients="{{ var.value.get('recon_finance_recipients', 'finance@platform.io') }}",
        cadence_minutes=30,
    )
