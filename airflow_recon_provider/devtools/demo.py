"""The demo: the whole reconciliation runbook on a laptop, with the package's real DAGs.

Everything lives under one data directory (default ``.recon-demo``): an embedded PostgreSQL
(the billing gateway and payments ledger databases, and Airflow's metadata database), the
Airflow home, artifacts. The scenario (:mod:`demo_scenario`) is seeded afresh on every run,
relative to the current hour; the server, the migrated databases and the installed
environment are reused, so a second run starts fast.

- ``headless`` (default; always when there is no terminal): the divergence watch detects
  the divergence, opens the incident and starts ``billing_gateway_remediation``, which runs
  investigation -> containment -> reprocessing -> finance-approved correction (answered by a
  labelled demo approver) -> recovery -> closure in this process; then a report.
- ``ui``: ``airflow standalone`` with the package's DAGs and dashboard plugin, on the same
  data; a person triggers the remediation from the form (:mod:`demo_ui`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from airflow_recon_provider.devtools.demo_scenario import (
    DEMO_PSPS,
    DIVERGENT_PSP,
    DemoScenario,
    window_label,
)
from airflow_recon_provider.devtools.demo_setup import (  # noqa: F401 - the demo's entry points
    AIRFLOW_DB,
    GATEWAY_DB,
    LEDGER_DB,
    DemoDatabases,
    make_console,
    postgres_still_running,
    prepare_scenario,
    set_environment,
    start_demo_databases,
    stop_demo_postgres,
)
from airflow_recon_provider.names import REMEDIATION_DAG_ID


def run_demo(
    *,
    data_dir: str,
    rows_per_psp: int = 1200,
    seed: int = 7,
    stop: bool = False,
    mode: str = "headless",
    port: int = 8080,
) -> int:
    console = make_console()
    root = Path(data_dir).resolve()
    if mode == "stop-postgres":
        return stop_demo_postgres(root, console)
    root.mkdir(parents=True, exist_ok=True)
    if mode == "ui":
        from airflow_recon_provider.devtools.demo_ui import run_ui

        return run_ui(root=root, console=console, rows_per_psp=rows_per_psp, seed=seed, port=port, stop=stop)
    started = time.monotonic()
    console.rule("[bold]airflow-recon-provider — the reconciliation runbook, end to end (headless demo)")
    dbs = start_demo_databases(root, console)
    try:
        outcome = run_headless(root, dbs, console, rows_per_psp=rows_per_psp, seed=seed)
    finally:
        if stop:
            dbs.server.stop()
            console.print("PostgreSQL stopped.")
    console.print(f"\nDemo finished in {time.monotonic() - started:.0f} s.")
    if not stop:
        console.print(postgres_still_running(root, dbs.server.port))
    console.print(
        "Next: [bold]./scripts/demo.sh --ui[/] opens the Airflow UI on the same data (trigger "
        "billing_gateway_remediation from its form, answer the approval in Required actions, "
        "and see the Reconciliação Financeira dashboard)."
    )
    return 0 if outcome else 1


def run_headless(root: Path, dbs: DemoDatabases, console: Console, *, rows_per_psp: int, seed: int) -> bool:
    from airflow_recon_provider.devtools.stand_ins import DemoPspApi, StandIns

    scenario = prepare_scenario(dbs, console, rows_per_psp=rows_per_psp, seed=seed)
    import psycopg

    with psycopg.connect(dbs.gateway_uri, autocommit=True) as gconn:
        statements = DemoPspApi.snapshot(gconn)
    from airflow_recon_provider.devtools.demo_airflow import HeadlessApiServer

    stand_ins = StandIns.start(statements)
    api = HeadlessApiServer(root / "airflow-home")
    try:
        for name, url in stand_ins.describe():
            console.print(f"[green]✓[/] {name} on {url}")
        # the demo prints its own progress; Airflow's task logs only show errors
        # one process, no scheduler: Airflow's metadata in a SQLite file of the demo's home
        # (migrated in ~5 s instead of ~20 s on PostgreSQL)
        set_environment(
            root,
            dbs,
            stand_ins.connections(DEMO_PSPS),
            {"AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR", **api.environment()},
            metadata_uri=f"sqlite:///{root / 'airflow-home' / 'headless.db'}",
        )
        before = _summaries(scenario)
        _print_before(console, scenario, before)
        result = _run_runbook(root, console, scenario, stand_ins, api)
        after = _summaries(scenario)
        _print_report(console, scenario, before, after, result, stand_ins)
        return result.remediation_state == "success"
    finally:
        api.stop()
        stand_ins.stop()


def _summaries(scenario: DemoScenario) -> dict[str, Any]:
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation import ReconConfig, Window

    gateway = BillingGatewayHook(config=ReconConfig.load())
    window = Window(scenario.window_start, scenario.window_end)
    return {psp: gateway.summary(psp, window) for psp in DEMO_PSPS}


def _money(amount: int, currency: str = "BRL") -> str:
    from airflow_recon_provider.reconciliation.money import format_money

    return format_money(amount, currency)


def _pct(summary: Any) -> str:
    from airflow_recon_provider.reconciliation.money import format_pct

    return format_pct(summary.divergence_pct)


def _per_currency(summary: Any) -> str:
    """Each currency's divergent keys and amount in that currency (never added up)."""
    return (
        "\n".join(
            f"{code}: {fig.divergent_count} key(s), {_money(fig.divergent_amount_minor, code)}"
            for code, fig in sorted(summary.by_currency.items())
            if fig.has_divergence
        )
        or "-"
    )


def _print_before(console: Console, scenario: DemoScenario, before: dict[str, Any]) -> None:
    console.rule("Detecção — what the alert billing_gateway-reconciliation sees")
    table = Table(
        "PSP",
        "transactions",
        "divergent keys",
        "by currency",
        "divergent amount (R$, converted)",
        "divergence",
        "lag (cycles)",
        "alert",
        title=f"Last {3} hourly cycles: {window_label(scenario.window_start, scenario.window_end)}",
    )
    for psp, s in before.items():
        reasons = ", ".join(r.value for r in s.alert_reasons)
        table.add_row(
            psp,
            f"{s.gateway_count:,}",
            f"{s.divergent_count:,}",
            _per_currency(s),
            _money(s.divergent_amount_minor, s.reporting_currency),
            _pct(s),
            str(s.lag_cycles),
            f"[red]YES[/] ({reasons})" if s.alert else "[green]no[/]",
        )
    console.print(table)
    from airflow_recon_provider.reconciliation.report import rates_text

    for psp, s in before.items():
        if s.used_rates or s.unconverted_currencies:
            console.print(f"{psp}: totals in {s.reporting_currency}, converted with {rates_text(s)}")


@dataclass
class RunbookResult:
    watch_state: str
    remediation_run_id: str | None
    remediation_state: str
    incident_id: str | None
    tasks: list[Any]
    children: list[str]
    approval: dict[str, Any]
    xcoms: dict[str, Any]
    finance_report: dict[str, Any] | None = None


def _run_runbook(
    root: Path, console: Console, scenario: DemoScenario, stand_ins: Any, api: Any
) -> RunbookResult:
    """the break's failed tries -> watch -> remediation (-> reprocess runs, approval) in this
    process, with progress."""
    _quiet_airflow_logging(root)
    from airflow_recon_provider.devtools import demo_airflow as af

    with console.status("Preparing Airflow's metadata database (the first run migrates it, ~20 s)..."):
        migrated = af.migrate_metadata_db(root / "airflow-home" / ".migrated-headless")
        af.forget_demo_runs()
    console.print(f"[green]✓[/] Airflow metadata database {'migrated' if migrated else 'up to date'}")
    with console.status("Parsing the package's DAGs (dags/)..."):
        bag = af.load_dags(warn=lambda text: console.print(f"[yellow]![/] {text}"))
    console.print(f"[green]✓[/] DAGs loaded: {', '.join(sorted(bag.dag_ids))}")
    watch = bag.dags[af.WATCH_DAG_ID]
    remediation = bag.dags[af.REMEDIATION_DAG_ID]
    reconciliation = bag.dags[af.RECONCILIATION_DAG_ID]
    with console.status("Starting Airflow's api-server (REST and execution API, in this process)..."):
        api.start()
    console.print(f"[green]✓[/] Airflow api-server on {api.url} (connection airflow_api, user {api.user})")
    _fail_window_cycles(root, console, reconciliation, scenario, stand_ins)

    console.rule(f"Detecção — {af.WATCH_DAG_ID}")
    tasks: list[af.TaskDone] = []

    def show(done: af.TaskDone) -> None:
        if done.state == "awaiting_input":
            console.print(f"  [cyan]…[/] {done.task_id} awaits finance's approval (Required actions)")
            return  # then it finishes like any other task
        if done.state in ("deferred", "up_for_reschedule"):
            return
        tasks.append(done)
        marks = {"success": "[green]✓[/]", "skipped": "[yellow]-[/]"}
        mark = marks.get(done.state, "[red]✗[/]")
        where = "" if done.dag_id == af.REMEDIATION_DAG_ID else f"[dim]{done.dag_id} {done.run_id}[/] "
        console.print(f"  {mark} {where}{done.task_id} [dim]{done.state}, {done.seconds:.1f} s[/]")

    with console.status("Running the divergence watch (dag.test)..."), af.params_restored(watch):
        watch_run = watch.test()
    console.print(f"  watch run {watch_run.run_id}: {watch_run.state}")
    runs = af.queued_runs(af.REMEDIATION_DAG_ID)
    if not runs:
        console.print("[red]The watch started no remediation run.[/]")
        return RunbookResult(str(watch_run.state), None, "not started", None, tasks, [], {}, {})
    run_id = runs[-1]
    console.print(
        f"  [green]✓[/] the watch opened the incident and started {af.REMEDIATION_DAG_ID} "
        f"run [bold]{run_id}[/]"
    )

    finance_report = _file_finance_report(console, bag, show, scenario)

    console.rule(
        f"Investigação -> Contenção -> Mitigação -> Recuperação -> Encerramento — {af.REMEDIATION_DAG_ID}"
    )
    console.print(
        f"[dim]Finance's approval is answered by [bold]{af.DEMO_APPROVER_NAME}[/], a demo user that "
        "approves automatically (with --ui a person answers in Required actions); the reprocess step's "
        f"{af.RECONCILIATION_DAG_ID} runs are executed in this process (no scheduler in a headless demo).[/]"
    )
    approver = af.DemoApprover(af.REMEDIATION_DAG_ID, run_id)
    approver.start()
    # Comunicação 3: on-call types the number the PSP gave the ticket (Required actions)
    ticket_number = af.HitlAnswerer(
        af.REMEDIATION_DAG_ID,
        run_id=run_id,
        task_id=af.PSP_TICKET_NUMBER_TASK_ID,
        chosen="OK",
        user=af.DEMO_ONCALL_ID,
        params_input={"psp_ticket": af.DEMO_PSP_TICKET},
    )
    ticket_number.start()

    with (
        af.reprocess_runs_executed_here(reconciliation, on_task=show) as children,
        af.params_restored(remediation),
    ):
        state = af.drive_dag_run(remediation, run_id, on_task=show)
    approver.stop()
    approver.join(5)
    ticket_number.stop()
    ticket_number.join(5)
    if ticket_number.request.get("answered"):
        console.print(f"  [green]✓[/] PSP ticket number {af.DEMO_PSP_TICKET} given by {af.DEMO_ONCALL_ID}")
    if approver.request.get("answered"):
        console.print(
            f"  [green]✓[/] approval answered {approver.request['answered']!r} by {af.DEMO_APPROVER_ID}"
        )
    color = "green" if state == "success" else "red"
    console.print(f"  remediation run {run_id}: [{color}]{state}[/]")
    xcoms = _xcoms(af.REMEDIATION_DAG_ID, run_id)
    incident_id = (xcoms.get("investigate.scope") or {}).get("incident_id")
    return RunbookResult(
        str(watch_run.state),
        run_id,
        state,
        incident_id,
        tasks,
        list(children),
        approver.request,
        xcoms,
        finance_report,
    )


@contextlib.contextmanager
def _task_output_to(log_file: Path) -> Iterator[None]:
    """The executor's task processes write their errors to the terminal: the demo shows them
    from the collected logs instead, so file descriptors 1 and 2 go to the demo's task log
    while they run (the processes inherit them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(log_file, "ab") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _fail_window_cycles(
    root: Path, console: Console, reconciliation: Any, scenario: DemoScenario, stand_ins: Any
) -> None:
    """The break, for real: the PSP's statement service is down for stripe's window cycles, and
    ``billing_gateway_reconciliation`` runs each of them as the scheduler's worker would (the
    LocalExecutor, Airflow's supervisor writing the try's log to the log folder):
    ``fetch_psp_statements`` fails after its retries and records the cycle ``failed``. Those are
    the failed tries the investigation collects the logs of (Investigação 2). The outage ends
    before the remediation, so its reprocessing succeeds."""
    from airflow_recon_provider.devtools import demo_airflow as af

    console.rule(f"The break — {af.RECONCILIATION_DAG_ID} for {DIVERGENT_PSP}, its statement service down")
    starts = []
    start = scenario.window_start
    while start < scenario.window_end:
        starts.append(start)
        start += timedelta(hours=1)
    stand_ins.psp.fail_statements(DIVERGENT_PSP, starts)
    try:
        for start in starts:
            cycle = start.isoformat().replace("+00:00", "Z")
            console.print(f"  reconciling {DIVERGENT_PSP}'s cycle {start:%H:%M} UTC (LocalExecutor)...")
            task_log = root / "airflow-home" / "demo-tasks.log"
            with _task_output_to(task_log), af.params_restored(reconciliation):
                run = reconciliation.test(
                    run_conf={"psp": DIVERGENT_PSP, "cycle_start": cycle}, use_executor=True
                )
            failed = sorted(ti.task_id for ti in run.get_task_instances() if ti.state == "failed")
            mark = "[red]✗[/]" if failed else "[yellow]?[/]"
            console.print(
                f"  {mark} {af.RECONCILIATION_DAG_ID} run {run.run_id} (cycle {start:%H:%M} UTC): {run.state}"
                + (f", failed: {', '.join(failed)}" if failed else "")
            )
    finally:
        stand_ins.psp.end_outage()
    console.print(
        f"  [dim]the PSP's statement service is back; {DIVERGENT_PSP}'s cycles stay failed until "
        "reprocessed[/]"
    )


def _file_finance_report(
    console: Console, bag: Any, show: Any, scenario: DemoScenario
) -> dict[str, Any] | None:
    """Detecção 2: finance files FIN-88 for the PSP over the alert's window (the form of
    ``billing_gateway_finance_report``, as the dashboard's *Reportar divergência* sends it);
    the report goes on the incident the watch opened, Slack and PagerDuty (low urgency, added
    to the open alert) tell on-call, and the dry run it starts is executed here, as a
    scheduler would."""
    from airflow_recon_provider.devtools import demo_airflow as af

    report_dag = bag.dags.get(af.FINANCE_REPORT_DAG_ID)
    if report_dag is None:
        console.print(f"[red]{af.FINANCE_REPORT_DAG_ID} is not among the DAGs: no finance report.[/]")
        return None
    remediation = bag.dags[af.REMEDIATION_DAG_ID]
    console.rule(f"Detecção 2 — finance reports a difference ({af.FINANCE_REPORT_DAG_ID})")
    conf = {
        "psp": DIVERGENT_PSP,
        "window_start": scenario.window_start.isoformat(),
        "window_end": scenario.window_end.isoformat(),
        "finance_ticket": af.DEMO_FINANCE_TICKET,
        "description": "Capturas do extrato da Stripe que não aparecem no relatório financeiro do dia.",
    }
    with console.status(f"Filing {af.DEMO_FINANCE_TICKET} (dag.test)..."), af.params_restored(report_dag):
        report_run = report_dag.test(run_conf=conf)
    record = _xcoms(af.FINANCE_REPORT_DAG_ID, report_run.run_id)
    recorded = record.get("record_report") or {}
    states = {ti.task_id: str(ti.state) for ti in report_run.get_task_instances()}
    console.print(
        f"  report run {report_run.run_id}: {report_run.state} "
        f"({', '.join(f'{t} {s}' for t, s in sorted(states.items()))})"
    )
    if not recorded.get("incident_id"):
        console.print("[red]  the report was not recorded.[/]")
        return None
    dry_id = str((recorded.get("dry_run") or {}).get("run_id") or "")
    console.print(
        f"  [green]✓[/] {af.DEMO_FINANCE_TICKET} {recorded.get('incident_action')} to "
        f"{recorded['incident_id']}; dry run {dry_id} started"
    )
    with af.params_restored(remediation):
        dry_state = af.drive_dag_run(remediation, dry_id, on_task=show)
    color = "green" if dry_state == "success" else "red"
    console.print(f"  dry run {dry_id}: [{color}]{dry_state}[/]")
    return {**recorded, "run_id": report_run.run_id, "state": str(report_run.state), "dry_run": dry_id}


def _xcoms(dag_id: str, run_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == "return_value"
            )
        ).all()
    out = {}
    for task_id, value in rows:
        out[task_id] = json.loads(value) if isinstance(value, str) else value
    return out


def _quiet_airflow_logging(root: Path) -> None:
    """Task logs go to a file: the demo prints its own progress."""
    import logging

    log_file = root / "airflow-home" / "demo-tasks.log"
    handler = logging.FileHandler(log_file, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)


# -- the report ----------------------------------------------------------------------------------


def _print_report(
    console: Console,
    scenario: DemoScenario,
    before: dict[str, Any],
    after: dict[str, Any],
    result: RunbookResult,
    stand_ins: Any,
) -> None:
    from airflow_recon_provider.reconciliation.kinds import ALL_KINDS

    console.rule("[bold]Report")
    # divergence before/after by kind
    table = Table(
        "PSP",
        "kind",
        "keys before",
        "amount before (R$, converted)",
        "keys after",
        "amount after (R$, converted)",
        title="Divergence by kind, before and after "
        f"({window_label(scenario.window_start, scenario.window_end)})",
    )
    for psp in DEMO_PSPS:
        b, a = before[psp], after[psp]
        shown = False
        for kind in ALL_KINDS:
            kb, ka = b.by_kind.get(kind), a.by_kind.get(kind)
            if kb is None and ka is None:
                continue
            shown = True
            table.add_row(
                psp,
                kind.value,
                str(kb.count if kb else 0),
                _money(kb.amount_minor if kb else 0),
                str(ka.count if ka else 0),
                _money(ka.amount_minor if ka else 0),
            )
        if not shown:
            table.add_row(psp, "[green]none[/]", "0", _money(0), "0", _money(0))
        table.add_row(
            f"[bold]{psp}[/]",
            "[bold]total[/]",
            f"[bold]{b.divergent_count}[/]",
            f"[bold]{_money(b.divergent_amount_minor, b.reporting_currency)}[/]",
            f"[bold]{a.divergent_count}[/]",
            f"[bold]{_money(a.divergent_amount_minor, a.reporting_currency)}[/]",
            end_section=True,
        )
    console.print(table)
    s = after[DIVERGENT_PSP]
    console.print(
        f"{DIVERGENT_PSP} after: {s.divergent_count} key(s), {_money(s.divergent_amount_minor)} converted "
        f"({_pct(s)}), lag {s.lag_cycles} cycle(s), alert: {'YES' if s.alert else 'no'}"
    )
    console.print(
        f"{DIVERGENT_PSP} by currency, before: {_per_currency(before[DIVERGENT_PSP])}".replace("\n", "; ")
    )
    console.print(f"{DIVERGENT_PSP} by currency, after: {_per_currency(s)}".replace("\n", "; "))

    # steps executed
    steps = Table("DAG / run", "task", "state", "seconds", title="Steps executed (Airflow task instances)")
    for done in result.tasks:
        run = done.dag_id if done.dag_id != REMEDIATION_DAG_ID else "remediation"
        if done.dag_id != REMEDIATION_DAG_ID:
            run = f"reprocess: {done.run_id}"
        color = {"success": "green", "skipped": "yellow"}.get(done.state, "red")
        steps.add_row(run, done.task_id, f"[{color}]{done.state}[/]", f"{done.seconds:.1f}")
    console.print(steps)

    if result.incident_id:
        _print_incident(console, result.incident_id)
        _print_finance_report(console, result)
        _print_task_logs(console, result.incident_id)
        _print_ledger_criterion(console, result.incident_id)
    _print_corrections(console, result)
    _print_messages(console, stand_ins)
    _print_pagerduty(console, stand_ins)
    _print_artifacts(console, result)


def _print_incident(console: Console, incident_id: str) -> None:
    from airflow_recon_provider.hooks.incidents import IncidentHook

    hook = IncidentHook()
    incident = hook.get(incident_id)
    table = Table(
        "when (UTC)",
        "step",
        "outcome",
        "divergence then",
        "who",
        title=f"Incident {incident_id} ({incident.psp}): {incident.state.value} — "
        "timeline (recon.incident_events)",
    )
    for event in hook.timeline(incident_id):
        table.add_row(
            f"{event.created_at:%H:%M:%S}",
            event.label,
            event.outcome,
            event.figures.short() if event.figures else "",
            event.actor,
        )
    console.print(table)


def _print_finance_report(console: Console, result: RunbookResult) -> None:
    """Detecção 2: the report on the incident and what its dry run found (the dashboard's
    incident page shows the same)."""
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.plugins.dashboard_finance_report import findings_view
    from airflow_recon_provider.reconciliation.finance_report import FinanceReportStep

    report = result.finance_report
    if not report or not result.incident_id:
        console.print("[red]No finance report was filed.[/]")
        return
    events = IncidentHook().timeline(result.incident_id)
    findings = [
        e
        for e in events
        if e.step == FinanceReportStep.FINDINGS
        and (e.details.get("dry_run") or {}).get("run_id") == report["dry_run"]
    ]
    told = [
        f"{e.step}: {e.outcome}"
        for e in events
        if e.run_id == report["run_id"] and e.step in (FinanceReportStep.SLACK, "communication.pagerduty")
    ]
    who = str(report.get("reported_by"))
    if who == "dag_test":  # from the dashboard or the form, it is the logged-in user
        who += " (dag.test's user)"
    console.print(
        f"Finance report {report['finance_ticket']} by {who}: "
        f"{report.get('incident_action')} to {result.incident_id}; dry run {report['dry_run']}"
    )
    for line in told:
        console.print(f"  {line}")
    if not findings:
        console.print("[red]  The dry run recorded no findings.[/]")
        return
    view = findings_view(findings[-1].details)
    kinds = Table(
        "currency",
        "kind",
        "keys",
        "divergent amount",
        title=f"{report['finance_ticket']}: divergence by kind and currency (dry run)",
    )
    for currency in view["currencies"]:
        for kind in currency["kinds"]:
            kinds.add_row(currency["currency"], kind["label"], kind["count"], kind["amount"])
        kinds.add_row(
            f"[bold]{currency['currency']}[/]",
            "[bold]total[/]",
            currency["divergent_count"],
            currency["divergent_amount"],
            end_section=True,
        )
    console.print(kinds)
    sides = Table(
        "status",
        "currency",
        "ledger",
        "gateway",
        "PSP statement",
        "",
        title=f"{report['finance_ticket']}: ledger vs gateway vs statement per status and currency (dry run)",
    )
    ledger = {(line["status"], line["currency"]): line for line in view["ledger"]}
    for line in view["gateway_vs_statement"]:
        own = ledger.get((line["status"], line["currency"]))
        sides.add_row(
            line["status"],
            line["currency"],
            f"{own['ledger_count']} / {own['ledger_amount']}" if own else "-",
            f"{line['gateway_count']} / {line['gateway_amount']}",
            f"{line['statement_count']} / {line['statement_amount']}",
            "[green]agree[/]" if line["matches"] and (own is None or own["matches"]) else "[red]differ[/]",
        )
    console.print(sides)


def _print_task_logs(console: Console, incident_id: str) -> None:
    """Investigação 2, "coletar logs": what the investigation collected through Airflow's REST
    API from the failed tries of the break (the lines as recorded on the timeline, masked)."""
    from airflow_recon_provider.hooks.incidents import IncidentHook

    events = [e for e in IncidentHook().timeline(incident_id) if e.step == "investigation.task_logs"]
    console.print("Investigação 2 — failed-task logs (investigation.task_logs):")
    if not events:
        console.print("  no collection recorded (no cycle of the window failed)")
    for event in events:
        console.print(f"  run {event.run_id}: {event.details.get('status')} — {event.outcome}")
    if events:
        # the real run's collection (the dry run of finance's report read the same tries)
        console.print(f"  what run {events[-1].run_id} collected (the timeline keeps the same lines):")
        for attempt in events[-1].details.get("tries") or []:
            console.print(
                f"  {attempt.get('run_id')} {attempt.get('task_id')} [{attempt.get('map_index')}] "
                f"try {attempt.get('try_number')} ({attempt.get('state')}):"
            )
            for line in attempt.get("lines") or []:
                console.print(f"    {line}", markup=False, highlight=False)


def _print_ledger_criterion(console: Console, incident_id: str) -> None:
    """Critérios de Recuperação 3: the ledger beside the statement and the gateway, as the
    recovery step last checked it."""
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.recovery import LedgerAlignment, recovery_criteria

    checks = [
        e
        for e in IncidentHook().timeline(incident_id)
        if e.step == "recovery.criteria" and isinstance(e.details.get("recovery"), dict)
    ]
    if not checks:
        console.print("[red]No recovery check was recorded.[/]")
        return
    check = checks[-1].details["recovery"]
    for criterion in recovery_criteria(check):
        console.print(f"Recovery criterion {criterion.text()}")
    ledger = check.get("ledger")
    if not isinstance(ledger, dict):
        return
    alignment = LedgerAlignment.from_dict(ledger)
    table = Table(
        "status",
        "currency",
        "ledger",
        "PSP statement",
        "gateway",
        "ledger vs statement",
        title="Critérios de Recuperação 3 — ledger.transactions vs PSP statements (last recovery check)",
    )
    for line in alignment.lines:
        table.add_row(
            line.status,
            line.currency or "(none)",
            line.figure("ledger"),
            line.figure("statement"),
            line.figure("gateway"),
            "[green]aligned[/]" if line.aligned else "[yellow]differs[/]",
        )
    console.print(table)


def _print_corrections(console: Console, result: RunbookResult) -> None:
    from airflow_recon_provider.hooks.incidents import IncidentHook

    with IncidentHook().connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT transaction_id, provider_reference, transaction_type, kind, amount_minor,"
            " before->>'status', after->>'status', requested_by, approved_by, run_id, applied_at, currency"
            " FROM recon.corrections ORDER BY transaction_id"
        ).fetchall()
    table = Table(
        "transaction",
        "reference",
        "kind",
        "amount",
        "before -> after",
        "requested by",
        "approved by",
        "applied (UTC)",
        title=f"Corrections applied, with audit (recon.corrections, run {result.remediation_run_id})",
    )
    for r in rows:
        table.add_row(
            f"#{r[0]} {r[2]}",
            r[1],
            r[3],
            _money(int(r[4]), r[11]),
            f"{r[5]} -> {r[6]}",
            r[7],
            r[8],
            f"{r[10]:%H:%M:%S}",
        )
    console.print(table if rows else "[red]No correction was applied.[/]")
    if result.approval:
        console.print(
            f"Approval request: [bold]{result.approval.get('subject')}[/] "
            f"(task {result.approval.get('task_id')})"
        )


def _print_invitation(console: Console, message: Any) -> None:
    """Encerramento 4: the review with finance, read back from the closing e-mail's .ics."""
    from icalendar import Calendar

    parts = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    if not parts:
        console.print("Review with finance: no invitation on the last e-mail")
        return
    (event,) = Calendar.from_ical(parts[0].get_payload(decode=True)).events
    console.print(
        f"Review with finance: {parts[0].get_filename()} (text/calendar; method="
        f"{parts[0].get_param('method')}) {event.start.isoformat()} to {event.end.isoformat()} "
        f"TZID={event.start.tzinfo}, UID {event['UID']}, attendees "
        + ", ".join(str(a).removeprefix("mailto:") for a in event.attendees)
    )


def _print_messages(console: Console, stand_ins: Any) -> None:
    mails = Table("to", "subject", "first line", title="E-mails to finance (kept by the SMTP stand-in)")
    for message in stand_ins.smtp.messages:
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        first = next((line for line in text.splitlines() if line.strip()), "")
        mails.add_row(str(message["To"]), str(message["Subject"]).strip(), first[:90])
    console.print(mails)
    slack = Table("channel", "message", title="Slack messages (kept by the Slack stand-in)")
    for post in stand_ins.slack.posts:
        slack.add_row(str(post.get("channel", "")), str(post.get("text", ""))[:160])
    console.print(slack)
    # one of each in full, as finance and the channel read them
    from rich.panel import Panel
    from rich.text import Text

    if stand_ins.smtp.messages:
        last = stand_ins.smtp.messages[-1]
        body = last.get_body(preferencelist=("plain",))
        text = body.get_content().strip() if body is not None else "(no plain-text part)"
        console.print(
            Panel(
                Text(f"To: {last['To']}\nSubject: {str(last['Subject']).strip()}\n\n{text}", overflow="fold"),
                title="The last e-mail to finance, as sent (plain-text part)",
                expand=False,
            )
        )
        _print_invitation(console, last)
    if stand_ins.slack.posts:
        post = stand_ins.slack.posts[0]
        console.print(
            Panel(
                Text(str(post.get("text", "")), overflow="fold"),
                title=f"The first Slack message in {post.get('channel', '')}, as posted",
                expand=False,
            )
        )
    requests = stand_ins.psp.requests
    console.print(
        f"PSP API stand-in: {len(requests)} statement request(s); billing-gateway-core stand-in: "
        f"{len(stand_ins.core.requests)} fallback request(s)"
    )


def _print_pagerduty(console: Console, stand_ins: Any) -> None:
    """Detecção 1: the alert's events as the PagerDuty stand-in received them (no routing key)."""
    pagerduty = getattr(stand_ins, "pagerduty", None)
    if pagerduty is None:
        return
    table = Table("action", "dedup key", "severity", "HTTP", "summary", title="PagerDuty events (stand-in)")
    for row in pagerduty.report():
        table.add_row(
            row["action"], row["dedup_key"], row["severity"], str(row["http_status"]), row["summary"][:120]
        )
    console.print(table)
    for incident in pagerduty.incidents:
        console.print(
            f"PagerDuty incident #{incident.number} {incident.dedup_key}: {incident.status} "
            f"({', '.join(incident.events)}); severity {incident.severity}, {incident.urgency} urgency "
            "on a service whose urgency follows severity"
        )


def _print_artifacts(console: Console, result: RunbookResult) -> None:
    """The run's artifacts as the XCom values carry them: a dashboard link, never a path."""
    from airflow_recon_provider.artifacts import artifacts_base_url

    x = result.xcoms
    found = []
    snapshot = (x.get("investigate.snapshot") or {}).get("snapshot") or {}
    found.append(("snapshot (runbook query, CSV)", snapshot))
    dry = (x.get("mitigate.correct_transactions") or {}).get("dry_run") or {}
    found.append(("correction dry run (CSV)", dry.get("artifact_record") or {}))
    found.append(("PSP ticket (CSV)", (x.get("mitigate.psp_ticket") or {}).get("artifact") or {}))
    report = x.get("close.closing_report") or {}
    found.append(("closing report (markdown)", report.get("markdown") or {}))
    found.append(("closing report (HTML)", report.get("html") or {}))
    for task in ("mitigate.rollback_release", "close.tag_release"):
        found.append((f"release record ({task.split('.')[-1]})", (x.get(task) or {}).get("record") or {}))
    table = Table("artifact", "name", "bytes", "dashboard link", title="Artifacts")
    for label, artifact in found:
        if artifact.get("link"):
            table.add_row(
                label, str(artifact.get("name")), f"{artifact.get('size_bytes', 0):,}", artifact["link"]
            )
    console.print(table)
    console.print(f"Artifact store: {artifacts_base_url()} (recon.artifacts lists each one)")
