"""
### billing_gateway_release_rollback — roll back or tag the worker's release, alone

Runbook *Mitigação 3, Rollback de Deploy* ("Se reconciliação quebrou após release, realizar
rollback do worker": `scripts/finops/rollback_and_tag.py rollback --service
billing-gateway-worker --env prod`) and *Encerramento* (`rollback_and_tag.py tag --service
billing-gateway-worker --env prod --notes "reconciliation incident"`). Fill the form: PSP and
window (whose reconciliation broke, for the incident), action (rollback | tag), incident
(optional), reason.

1. `scope` — *Validar Escopo*, exactly as in `billing_gateway_remediation` (a specific
   error per problem, nothing run). The run attaches to the incident of the form, else to
   the PSP's open incident. **It never opens an incident**: a release action changes no
   payment data and pauses no PSP; with no incident it records nothing on a timeline.
2. `choose_action` — runs the chosen step and skips the other.
3. `rollback_release` — the person asked for it, so it runs (no "after a release" check).
   `tag_release` — tags the release with the notes `reconciliation incident`.
   Both run the script in a pod (`kubernetes_billing`, namespace `billing-gateway`) unless
   the Airflow Variable `recon_release_mode` is `local` (development, demo:
   `scripts/finops/rollback_and_tag.py` records the action in `$RECON_RELEASE_RECORD`), and
   go on the incident's timeline.

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
    action_param,
    choose_action_step,
    release_lease_step,
    rollback_step,
    single_action_dag_args,
    single_action_params,
    single_action_scope,
    tag_release_step,
)

ACTIONS = {"rollback": "Roll back the worker", "tag": "Tag the release"}

with DAG(
    "billing_gateway_release_rollback",
    params=single_action_params(NEVER_OPENS, action=action_param(ACTIONS)),
    **single_action_dag_args(__doc__, "release"),
) as dag:
    scope, request = single_action_scope(NEVER_OPENS, lease=True)
    # the person asked for the rollback: no "did it break after a release" question
    rollback = rollback_step(request, after_release=True)
    scope >> choose_action_step({"rollback": rollback, "tag": tag_release_step(request)})
    # never beside a real remediation of the PSP: its lease, given back however the run ends
    release_lease_step()
