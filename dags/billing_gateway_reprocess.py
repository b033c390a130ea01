"""
### billing_gateway_reprocess — runbook *Mitigação 1, Reprocessamento*, alone

Re-run every hourly reconciliation cycle of a PSP's window, without walking the whole
remediation ("re-run 14:00-17:00 for PSP acme"). Fill the form: PSP, window (start
inclusive, end exclusive), incident (optional), reason.

1. `scope` — *Validar Escopo*, exactly as in `billing_gateway_remediation`: unknown PSP,
   missing window, end not after start, window over the maximum: a specific error, nothing
   written or re-run. The run attaches to the incident of the form, else to the PSP's open
   incident. **It never opens an incident**: reprocessing changes no payment data (it
   re-runs what the hourly schedule runs), so a reprocess of a PSP without an incident
   records nothing on a timeline.
2. `reprocess` — one `billing_gateway_reconciliation` run per cycle of the window (these
   runs say `reprocess: true`, so a PSP paused in `recon.controls` is reconciled too),
   waited for deferred; cycles that still fail go to `POST /payments/reconciliation` on
   billing-gateway-core (`Idempotency-Key` per PSP and cycle). Its outcome, with the
   divergence at that moment, goes on the incident's timeline when there is one.

Never beside a real remediation of the PSP: a real run takes the PSP's remediation lease at
`scope` and is refused there, naming the running run and its incident, while a real
`billing_gateway_remediation` (or another real reprocess, data correction or rollback/tag)
of the PSP runs; `release_lease`, its last task, gives the PSP back.

Same step definitions as the remediation DAG (`airflow_recon_provider.remediation`).
"""

from __future__ import annotations

from airflow.sdk import DAG

from airflow_recon_provider.remediation import (
    NEVER_OPENS,
    release_lease_step,
    reprocess_step,
    single_action_dag_args,
    single_action_params,
    single_action_scope,
)

with DAG(
    "billing_gateway_reprocess",
    params=single_action_params(NEVER_OPENS),
    **single_action_dag_args(__doc__, "reprocess"),
) as dag:
    scope, request = single_action_scope(NEVER_OPENS, lease=True)
    scope >> reprocess_step(request)
    # never beside a real remediation of the PSP: its lease, given back however the run ends
    release_lease_step()
