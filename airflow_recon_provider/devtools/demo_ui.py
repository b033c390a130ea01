"""``demo --ui``: the real Airflow UI on the demo's data.

The demo's databases, scenario and stand-ins as in the headless demo, then Airflow's own
components (what ``airflow standalone`` starts: api-server, scheduler, dag-processor,
triggerer), each in its own process group so that Ctrl-C stops everything this command
started — and nothing else. The package's DAGs and its "Reconciliação Financeira" plugin
are served as installed; two demo logins: ``oncall`` (triggers the remediation) and
``finance`` (answers the approval in *Required actions*; the requester may not).

The divergence watch is left paused, so the remediation is started by a person from the
form; unpause ``billing_gateway_divergence_watch`` to see detection start it by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from airflow_recon_provider.devtools.demo_scenario import DEMO_PSPS, DemoScenario

#: demo logins (local demo only; the passwords file is written in the demo's Airflow home)
USERS = {"oncall": "oncall-demo", "finance": "finance-demo"}
FINANCE_APPROVER = "finance"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
READY_TIMEOUT = 240.0


def ui_env(home: Path, port: int) -> dict[str, str]:
    """Settings of the Airflow processes of ``--ui`` (beside :func:`demo_airflow.airflow_env`)."""
    passwords = home / "demo-passwords.json"
    passwords.write_text(json.dumps(USERS))
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:admin" for u in USERS),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # 32 LocalExecutor workers by default (~5 GB); four are plenty for the demo
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # finance approves corrections; the on-call engineer who triggers may not
        "RECON_FINANCE_APPROVERS": FINANCE_APPROVER,
        # Comunicação 3: on-call has 2 minutes to give the PSP ticket number in Required
        # actions (else on the dashboard), so the demo's run ends soon after its closure
        "RECON_PSP_TICKET_TIMEOUT_MINUTES": "2",
        # Investigação 2 "coletar logs": the investigation reads the failed tries' logs through
        # this api-server's REST API as the on-call user (JWT from POST /auth/token)
        "AIRFLOW_CONN_AIRFLOW_API": json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": port,
                "schema": "http",
                "login": "oncall",
                "password": USERS["oncall"],
            }
        ),
    }


@dataclass
class AirflowProcesses:
    """Airflow's components started by the demo, each in its own process group."""

    home: Path
    port: int
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """The API server first (tasks report to its execution API), then the others."""
        self._start("api-server", "--port", str(self.port))
        deadline = time.monotonic() + timeout
        while self.health() is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API server did not answer on {self.url} in {timeout:.0f} s")
            time.sleep(1)
        for name in COMPONENTS[1:]:
            self._start(name)

    def _start(self, name: str, *args: str) -> None:
        logs = self.home / "component-logs"
        logs.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).with_name("airflow"))
        with open(logs / f"{name}.log", "ab") as out:
            self.processes[name] = subprocess.Popen(
                [airflow, name, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as a whole
                preexec_fn=_terminate_with_parent(),
            )

    def _check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"Airflow component(s) exited: {dead}; see {self.home / 'component-logs'}")

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=3) as answer:
                return json.loads(answer.read())
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        body = self.health()
        if not body:
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((body.get(p) or {}).get("status") == "healthy" for p in parts)

    def wait_ready(self, timeout: float = READY_TIMEOUT, console: Console | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Airflow was not healthy after {timeout:.0f} s: {self.health()}")
            time.sleep(1)

    def stop(self, grace: float = 20.0) -> list[int]:
        """Stop every process this demo started; returns the pids that had to be killed."""
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        killed = []
        for process in self.processes.values():
            if _group_alive(process.pid):
                _signal_group(process.pid, signal.SIGKILL)
                killed.append(process.pid)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        # anything still running with this demo's Airflow home (a task that left its group)
        for pid in _processes_with_env("AIRFLOW_HOME", str(self.home)):
            if pid not in (os.getpid(), os.getppid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        self.processes.clear()
        return killed


def _terminate_with_parent() -> Callable[[], None] | None:
    """What the component's process runs before exec: ask Linux to send it SIGTERM when the
    demo process dies, so that even a demo killed with SIGKILL leaves no Airflow running.
    The C function is looked up here, in the demo, so the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _processes_with_env(name: str, value: str) -> list[int]:
    wanted = f"{name}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def prepare_airflow(home: Path) -> None:
    """Metadata DB migrated, earlier demo runs forgotten, DAGs serialized, the watch paused
    (in this process, before the components start)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    from airflow_recon_provider.devtools import demo_airflow as af

    af.migrate_metadata_db(home / ".migrated-ui")
    af.forget_demo_runs()
    bag = af.load_dags(warn=lambda text: print(f"! {text}"))
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id.in_(bag.dag_ids)).values(is_paused=False))
        session.execute(update(DagModel).where(DagModel.dag_id == af.WATCH_DAG_ID).values(is_paused=True))


#: how long the break's reconciliation runs may take on this Airflow (queued, run, failed)
BREAK_TIMEOUT = 300.0


def _api(airflow: AirflowProcesses, method: str, path: str, token: str | None, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{airflow.url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def break_window_cycles(
    airflow: AirflowProcesses, stand_ins: Any, scenario: DemoScenario, console: Console
) -> dict[str, str]:
    """The break, for real (as in the headless demo): stripe's statement service answers 503
    for the window's cycles while ``billing_gateway_reconciliation`` runs each of them on this
    Airflow — triggered through the REST API as on-call, run by the scheduler's executor, its
    logs written by Airflow — so ``fetch_psp_statements`` fails and records the cycle
    ``failed``. The investigation reads those logs back (connection ``airflow_api``). The
    outage ends once the runs ended, so the remediation's reprocessing succeeds. Run ids come
    from the cycles (``demo_break__stripe__<cycle>``), never from the wall clock's hour.
    Returns each run's final state."""
    from airflow_recon_provider.devtools import demo_airflow as af
    from airflow_recon_provider.devtools.demo_scenario import DIVERGENT_PSP

    starts = []
    start = scenario.window_start
    while start < scenario.window_end:
        starts.append(start)
        start += timedelta(hours=1)
    token = _api(airflow, "POST", "/auth/token", None, {"username": "oncall", "password": USERS["oncall"]})[
        "access_token"
    ]
    dag = af.RECONCILIATION_DAG_ID
    runs = {f"demo_break__{DIVERGENT_PSP}__{s.isoformat()}": s for s in starts}
    states: dict[str, str] = {}
    deadline = time.monotonic() + BREAK_TIMEOUT
    stand_ins.psp.fail_statements(DIVERGENT_PSP, starts)
    try:
        for run_id, cycle in runs.items():
            body = {
                "dag_run_id": run_id,
                "logical_date": None,
                "conf": {"psp": DIVERGENT_PSP, "cycle_start": cycle.isoformat().replace("+00:00", "Z")},
            }
            while True:
                try:
                    _api(airflow, "POST", f"/api/v2/dags/{dag}/dagRuns", token, body)
                    break
                except urllib.error.HTTPError as exc:
                    # the dag-processor, just started, may still be re-registering the DAGs
                    if exc.code != 404 or time.monotonic() > deadline:
                        raise
                    airflow._check_alive()
                    time.sleep(2)
        while len(states) < len(runs) and time.monotonic() < deadline:
            airflow._check_alive()
            for run_id in runs:
                state = _api(airflow, "GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}", token)["state"]
                if state in ("success", "failed"):
                    states[run_id] = state
            time.sleep(2)
    finally:
        stand_ins.psp.end_outage()
    for run_id, cycle in runs.items():
        state = states.get(run_id, f"not ended after {BREAK_TIMEOUT:.0f} s")
        mark = "[red]✗[/]" if state == "failed" else "[yellow]![/]"
        console.print(f"  {mark} {dag} run {run_id} (cycle {cycle:%H:%M} UTC): {state}")
    return states


@dataclass
class UiDemo:
    """Everything ``--ui`` runs; :meth:`stop` undoes it (used by the browser tests too)."""

    scenario: DemoScenario
    stand_ins: Any
    airflow: AirflowProcesses
    databases: Any

    def stop(self, *, stop_postgres: bool = False) -> list[int]:
        killed = self.airflow.stop()
        self.stand_ins.stop()
        if stop_postgres:
            self.databases.server.stop()  # raises with pg_ctl's message if it cannot
        return killed


def start_ui_demo(root: Path, console: Console, *, rows_per_psp: int, seed: int, port: int) -> UiDemo:
    import psycopg

    from airflow_recon_provider.devtools.demo_setup import (
        prepare_scenario,
        set_environment,
        start_demo_databases,
    )
    from airflow_recon_provider.devtools.stand_ins import DemoPspApi, StandIns

    dbs = start_demo_databases(root, console)
    scenario = prepare_scenario(dbs, console, rows_per_psp=rows_per_psp, seed=seed)
    with psycopg.connect(dbs.gateway_uri, autocommit=True) as gconn:
        stand_ins = StandIns.start(DemoPspApi.snapshot(gconn))
    for name, url in stand_ins.describe():
        console.print(f"[green]✓[/] {name} on {url}")
    home = root / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env = set_environment(root, dbs, stand_ins.connections(DEMO_PSPS), ui_env(home, port))
    airflow = AirflowProcesses(home=home, port=port, env={**os.environ, **env})
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"  # this process only: the demo prints
    with console.status("Preparing Airflow's metadata database and the package's DAGs..."):
        prepare_airflow(home)
    console.print("[green]✓[/] metadata database and DAGs ready (billing_gateway_divergence_watch paused)")
    demo = UiDemo(scenario, stand_ins, airflow, dbs)
    try:
        with console.status(f"Starting Airflow ({', '.join(COMPONENTS)}) on {airflow.url} ..."):
            airflow.start()
            airflow.wait_ready(console=console)
        console.print(
            "The break: stripe's statement service down for the window's cycles, "
            "billing_gateway_reconciliation run for each of them"
        )
        with console.status("Reconciling stripe's window cycles on this Airflow..."):
            break_window_cycles(airflow, stand_ins, scenario, console)
    except BaseException:
        demo.stop()
        raise
    return demo


def run_ui(*, root: Path, console: Console, rows_per_psp: int, seed: int, port: int, stop: bool) -> int:
    from airflow_recon_provider.devtools.demo_scenario import window_label

    # Ctrl-C and SIGTERM stop everything started here, even when this process was started with
    # SIGINT ignored (a background job of a non-interactive shell, as CI runs it: Python then
    # keeps the inherited SIG_IGN and Ctrl-C would never reach the demo)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    console.rule("[bold]airflow-recon-provider — the reconciliation runbook in the Airflow UI (demo)")
    demo = start_ui_demo(root, console, rows_per_psp=rows_per_psp, seed=seed, port=port)
    s = demo.scenario
    start = s.window_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    end = s.window_end.strftime("%Y-%m-%dT%H:%M:%SZ")
    console.print(
        f"\n[bold green]Airflow is ready:[/] {demo.airflow.url}\n"
        f"  log in as [bold]oncall[/] / {USERS['oncall']} to trigger, as [bold]finance[/] / "
        f"{USERS['finance']} to approve\n"
        f"  1. DAG [bold]billing_gateway_remediation[/] -> Trigger: PSP stripe, window start {start}, "
        f"window end {end} ({window_label(s.window_start, s.window_end)}); untick Dry run\n"
        "  2. as finance: Required actions -> approve the data correction\n"
        f"  3. Reconciliação Financeira (in the navigation, or {demo.airflow.url}/recon/): PSPs, incident, "
        "corrections\n"
        f"  Component logs: {demo.airflow.home / 'component-logs'}\n"
        "Press Ctrl-C to stop everything this command started."
    )
    interrupted = False
    try:
        while all(p.poll() is None for p in demo.airflow.processes.values()):
            time.sleep(1)
        dead = {n: p.returncode for n, p in demo.airflow.processes.items() if p.poll() is not None}
        console.print(f"[red]Airflow component(s) exited:[/] {dead}")
    except KeyboardInterrupt:
        interrupted = True
    console.print("Stopping Airflow, the stand-ins" + (" and PostgreSQL" if stop else "") + "...")
    killed = demo.stop(stop_postgres=stop)
    left = _processes_with_env("AIRFLOW_HOME", str(demo.airflow.home))
    from airflow_recon_provider.devtools.demo_setup import postgres_still_running

    console.print(f"Stopped Airflow and the stand-ins ({len(killed)} process(es) needed SIGKILL).")
    if left:
        console.print(f"[red]Still running: Airflow process(es) {left}[/] (stop them with kill <pid>).")
    if stop:
        console.print("PostgreSQL stopped." + ("" if left else " Nothing of this demo is left running."))
    else:
        console.print(postgres_still_running(root, demo.databases.server.port))
    return 0 if interrupted else 1
