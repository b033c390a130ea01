"""
### billing_gateway_data_correction — runbook *Mitigação 2, Correção de Dados*, alone

Apply the finance-approved correction of a PSP's gateway transactions without walking the
whole remediation. Fill the form: PSP, window, divergence kinds, incident (optional), dry
run, reason.

1. `scope` — *Validar Escopo*, exactly as in `billing_gateway_remediation` (a specific
   error per problem, nothing written). The run attaches to the incident of the form, else
   to the PSP's open incident; **a correction that is not a dry run opens one when the PSP
   has none** — it changes payment data, so the request, finance's decision and the apply
   are kept on an incident's timeline (also when finance rejects). A dry run never opens
   one.
2. `correct_transactions` — `TransactionCorrectionOperator`, every safety kept:
   - **dry run** first, always: the proposed corrections as a CSV artifact and in
     `recon.correction_proposals`; with *Dry run* ticked (the default) the run stops here
     and nothing is asked or changed;
   - **finance approval** in *Required actions* (Approve / Reject), showing the dry run's
     counts, amounts and a sample; never by whoever triggered the run (refused, nothing
     applied); only the users of `[recon] finance_approvers` (or `$RECON_FINANCE_APPROVERS`)
     when set; no answer within 8 hours is a Reject;
   - a **row cap** on how many transactions one approval may correct;
   - **atomic, idempotent apply** of exactly the approved set (rows changed since the dry
     run are left alone), audited in `recon.corrections` (before, after, requested by,
     approved by, run, incident) and in `payment_reconciliation_logs.notes`.

Never beside a real remediation of the PSP: a real run takes the PSP's remediation lease at
`scope` and is refused there, naming the running run and its incident, while a real
`billing_gateway_remediation` (or another real reprocess, data correction or rollback/tag)
of the PSP runs; `release_lease`, its last task, gives the PSP back. A dry run is never
refused and takes nothing.

Same step definitions as the remediation DAG (`airflow_recon_provider.remediation`).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_recon_provider.remediation import (
    OPENS_UNLESS_DRY_RUN,
    correction_step,
    finance_approvers,
    release_lease_step,
    single_action_dag_args,
    single_action_params,
    single_action_scope,
)

#: like the remediation form's: a person unticks it on purpose
DRY_RUN = Param(
    True,
    type="boolean",
    title="Dry run",
    description=(
        "Propose corrections only (a CSV to review): nothing is asked or applied. Untick to ask "
        "finance to approve them, then apply them."
    ),
)

with DAG(
    "billing_gateway_data_correction",
    params=single_action_params(OPENS_UNLESS_DRY_RUN, divergence_kinds=True, dry_run=DRY_RUN),
    **single_action_dag_args(__doc__, "correction"),
) as dag:
    scope, request = single_action_scope(OPENS_UNLESS_DRY_RUN, lease=True)
    scope >> correction_step(request, approvers=finance_approvers())
    # never beside a real remediation of the PSP: its lease, given back however the run ends
    release_lease_step()
