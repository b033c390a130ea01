"""
### billing_gateway_remediation — the reconciliation runbook, from trigger to closure

Runbook *Billing Gateway — Falhas de Reconciliação*. Trigger it from the UI with the form
(PSP, affected window, divergence kinds, incident, dry run, whether the break followed a
release, reason), or let `billing_gateway_divergence_watch` start it with conf
`{psp, window_start, window_end, incident_id, dry_run: false}`.

1. **investigate** — *Investigação*
   - `scope` — *Validar Escopo*: the request is checked (unknown PSP, missing window, end
     before start, window over the maximum: a specific error, nothing written) and the run
     attaches to the incident of the form, else to the PSP's open incident, else opens one
     (a dry run never opens one).
   - `snapshot` — the runbook's snapshot query as a CSV artifact; divergence by kind;
     *Checar Jobs* (`fetch_psp_statements` / `match_transactions` per cycle); *Integridade de
     Dados* (ledger status counts side by side, `reconciliation.events` errors);
     *Dependências Externas* (the PSP's `/status`). Optional sources without a connection
     say "not configured".
2. **contain** — *Ações de Contenção*: `pause_reconciliation` pauses the PSP's automatic
   reconciliation in `recon.controls` (who, why, incident, when), tells the incidents
   channel and sends finance the containment notice.
3. **mitigate** — *Mitigação*: `mark_mitigating`; `reprocess` (*1. Reprocessamento*: every
   cycle of the window re-run in `billing_gateway_reconciliation`, which reconciles the
   paused PSP because these runs say `reprocess: true`; billing-gateway-core fallback);
   `correct_transactions` (*2. Correção de Dados*: dry run, finance approval in *Required
   actions* — never by whoever triggered the run — atomic apply, audit, notes);
   `rollback_release` (*3. Rollback de Deploy*, only when the break followed a release);
   `psp_ticket` (*4. Sincronização com PSP*: the divergent transactions as a CSV).
4. **recover** — *Critérios de Recuperação*: `recovery_criteria` waits (deferred) for
   divergence < R$ 500 and < 10 transactions and two successful cycles.
5. **close** — *Encerramento*: `mark_recovered`, `resume_reconciliation`, `tag_release`,
   `close_incident`, `closing_report` (lessons learned, attached to the incident),
   `schedule_finance_review` (*Encerramento* 4: the review with finance and on-call at the
   next business-day slot, 10:00 America/Sao_Paulo by default, the closing report linked,
   "revisão agendada para …" on the timeline), `final_communication` (*Comunicação*: the
   final update to finance, with the review's invitation as an `.ics`).

**communicate** — *Comunicação* 3, beside the main path: once `psp_ticket` produced the CSV
(with rows), `psp_ticket_number` asks on-call in *Required actions* for the number the PSP
gave the ticket and records it on the incident (updates, dashboard, closing report show it).
Recovery, closure and `release_lease` never wait for it; unanswered after 1 hour
(`[recon] psp_ticket_timeout`, or `$RECON_PSP_TICKET_TIMEOUT_MINUTES`) it ends without a
number, and the number can be given on the dashboard's incident page.

**One real remediation per PSP at a time**: the `scope` of a real run takes the PSP's lease
(`recon.remediation_leases`); a second real run of the PSP — or a real reprocess, data
correction or rollback/tag of it — is refused at `scope` while this one runs, with a message
naming this run and its incident. `release_lease`, the run's last task (a teardown: it runs
on success and on failure), gives the PSP back; a run that ended without it (killed, marked
failed) is taken over by the next real run. Dry runs neither take nor wait for it.

**Dry run** (the default of the form): investigation and the correction's dry run (a CSV to
review) only — nothing is paused, reprocessed, applied, rolled back or closed, and no
incident is opened; each skipped section says so in its `proceed` task.

Every step is on the incident's timeline (step, outcome, divergence % and amount, who, run).

**PagerDuty** (*Detecção* 1): the alert the watch triggered is acknowledged by
`mitigate.pagerduty_acknowledge` once the incident is mitigating and resolved by
`close.pagerduty_resolve` once it is recovered (connection `pagerduty_recon`); a PagerDuty
outage is recorded on the timeline and never fails or holds up the run.

The release steps run in a pod (`kubernetes_billing`) unless the Airflow Variable
`recon_release_mode` is `local` (development, demo). Approvers of corrections:
`[recon] finance_approvers`, else `$RECON_FINANCE_APPROVERS` (comma separated); default:
anyone but the requester.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG

from airflow_recon_provider.remediation import (
    close_group,
    communicate_group,
    contain_group,
    finance_approvers,
    investigate_group,
    mitigate_group,
    recover_group,
    release_lease_step,
    remediation_params,
)

with DAG(
    dag_id="billing_gateway_remediation",
    description="Reconciliation runbook: investigate, contain, mitigate, recover, close",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    params=remediation_params(),
    default_args={
        # a step that changes money or tells finance is not retried blindly: each step is
        # idempotent and the run can be cleared from the failed task on purpose
        "retries": 0,
    },
    tags=["billing-gateway", "reconciliation", "remediation"],
    doc_md=__doc__,
) as dag:
    mitigate = mitigate_group(approvers=finance_approvers())
    investigate_group() >> contain_group() >> mitigate >> recover_group() >> close_group()
    # a branch off the main path: nothing waits for on-call to type the PSP's ticket number
    communicate_group(mitigate.get_child_by_label("psp_ticket"))
    # one real remediation per PSP at a time: give the PSP back however the run ends
    release_lease_step()
