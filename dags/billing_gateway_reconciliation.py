"""
### billing_gateway_reconciliation — the hourly reconciliation

Runbook *Billing Gateway — Falhas de Reconciliação*, Contexto: "Processo de
reconciliação roda a cada hora". Each run reconciles one hourly cycle, its data
interval `[data_interval_start, data_interval_end)`, for every PSP:

1. **scope_cycle** — the cycle (or the `cycle_start` param, to redo one cycle) and the
   PSPs (the `psp` param, else the configured PSPs, else those of `payment_intents`).
2. Per PSP, one mapped task each (runbook, Checar Jobs):
   - **fetch_psp_statements** — the PSP's statement of the cycle replaces its
     `psp_statement_lines` of the cycle (re-running a cycle never duplicates lines);
   - **match_transactions** — classifies the cycle's divergences and records the cycle
     in `payment_reconciliation_logs` (`success` with its divergent figures, or `failed`).

A PSP paused in `recon.controls` (runbook, Ações de Contenção: "pausar reconciliação
automática") is skipped by the scheduled runs. A run with `reprocess: true` (what the
remediation's reprocess step sets, runbook Mitigação 1) reconciles it anyway and says so in
its log. One PSP failing does not stop the others; the run then fails, and that PSP's cycle
is recorded as `failed`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task_group

from airflow_recon_provider.operators.reconciliation import (
    FetchPspStatementsOperator,
    MatchTransactionsOperator,
    ReconciliationScopeOperator,
)

with DAG(
    dag_id="billing_gateway_reconciliation",
    description="Hourly reconciliation of the billing gateway against each PSP's statement",
    # "@hourly" with data intervals: the run of [10:00, 11:00) starts at 11:00. A plain
    # schedule="@hourly" is a trigger timetable in Airflow 3, whose runs have no interval.
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={
        # the PSP hook already retries an unavailable PSP with a bounded backoff; a failed
        # cycle shows as lag and is reprocessed on purpose (billing_gateway_reprocess)
        "retries": 0,
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "psp": Param(
            None,
            type=["null", "string"],
            pattern=r"^[a-z0-9][a-z0-9_]{0,62}$",
            title="PSP",
            description="Reconcile only this PSP; empty reconciles every configured PSP.",
        ),
        "cycle_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            pattern=r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:00:00(\.0+)?([Zz]|[+-]\d{2}:\d{2})$",
            title="Cycle start",
            description=(
                "Reconcile this hourly cycle instead of the run's data interval: an ISO 8601 "
                "date-time on the hour, e.g. 2026-11-20T10:00:00Z."
            ),
        ),
        "reprocess": Param(
            False,
            type="boolean",
            title="Reprocess",
            description=(
                "This run reprocesses the cycle on purpose (runbook Mitigação 1): a PSP paused in "
                "recon.controls is reconciled anyway. Scheduled runs always skip paused PSPs."
            ),
        ),
    },
    tags=["billing-gateway", "reconciliation"],
    doc_md=__doc__,
) as dag:
    # the params as given to this run (validated against the form above when it was created);
    # read from the run's conf so a value can never carry over from another run of the process
    scope = ReconciliationScopeOperator(
        task_id="scope_cycle",
        psp="{{ (dag_run.conf or {}).get('psp') or '' }}",
        cycle_start="{{ (dag_run.conf or {}).get('cycle_start') or '' }}",
    )

    # one group instance per PSP: a PSP's match waits for its own fetch only
    @task_group(group_id="reconcile_psp", prefix_group_id=False)
    def reconcile_psp(psp: str, cycle_start: str, cycle_end: str) -> None:
        cycle = {
            "psp": psp,
            "cycle_start": cycle_start,
            "cycle_end": cycle_end,
            # a paused PSP is skipped unless the run reprocesses it on purpose
            "reprocess": "{{ (dag_run.conf or {}).get('reprocess', False) }}",
        }
        fetch = FetchPspStatementsOperator(
            task_id="fetch_psp_statements", map_index_template="{{ task.psp }}", **cycle
        )
        match = MatchTransactionsOperator(
            task_id="match_transactions", map_index_template="{{ task.psp }}", **cycle
        )
        fetch >> match

    reconcile_psp.expand_kwargs(scope.output)
