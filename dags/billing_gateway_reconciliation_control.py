"""
### billing_gateway_reconciliation_control — pause or resume a PSP's reconciliation, alone

Runbook *Ações de Contenção* ("Pausar reconciliação automática para PSP afetado",
`/billing-gateway reconciliation pause <psp>`) and *Encerramento* ("Retomar reconciliação
automática", `/billing-gateway reconciliation resume <psp>`). Fill the form: PSP, window
(the affected period, for the incident's figures), action (pause | resume), incident
(optional), estimated resumption (a pause's; optional), reason.

1. `scope` — *Validar Escopo*, exactly as in `billing_gateway_remediation` (a specific
   error per problem, nothing written). The run attaches to the incident of the form, else
   to the PSP's open incident. **A pause with no incident opens one** (pausing a PSP
   freezes finance's reconciliation: it is an incident, updated every 30 minutes by
   `billing_gateway_incident_updates`); **a resume never opens one** (it ends a freeze).
2. `choose_action` — runs the chosen step and skips the other.
3. `pause_reconciliation` — `recon.controls` paused (who: the user who triggered the run;
   why; incident; when) and a `recon.control_events` row; the incidents channel is told
   (Slack, `slack_incidents`) and finance gets the containment notice (`smtp_finance`)
   with the estimated resumption, also kept on the incident.
   Scheduled `billing_gateway_reconciliation` runs skip the PSP from then on.
   `resume_reconciliation` — `recon.controls` active again, a `recon.control_events` row,
   the incidents channel told. Both are idempotent (pausing a paused PSP changes and sends
   nothing) and go on the incident's timeline.

Same step definitions as the remediation DAG (`airflow_recon_provider.remediation`).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_recon_provider.remediation import (
    OPENS_ON_PAUSE,
    action_param,
    choose_action_step,
    pause_step,
    resume_step,
    single_action_dag_args,
    single_action_params,
    single_action_scope,
)

ACTIONS = {"pause": "Pause reconciliation", "resume": "Resume reconciliation"}
#: runbook: "Informar time financeiro sobre congelamento temporário e estimativa de retomada"
ETA_RESUMPTION = Param(
    None,
    type=["null", "string"],
    format="date-time",
    title="Estimated resumption",
    description="Pause: when reconciliation should resume, told to finance and kept on the incident.",
)

with DAG(
    "billing_gateway_reconciliation_control",
    params=single_action_params(
        OPENS_ON_PAUSE, action=action_param(ACTIONS), fields={"eta_resumption": ETA_RESUMPTION}
    ),
    **single_action_dag_args(__doc__, "containment"),
) as dag:
    scope, request = single_action_scope(OPENS_ON_PAUSE)
    pause = pause_step(request, eta_resumption="{{ params.get('eta_resumption') or '' }}")
    # the form's reason, not the remediation's "recovery criteria met"
    resume = resume_step(request, reason=request.reason)
    scope >> choose_action_step({"pause": pause, "resume": resume})
