"""Airflow 3.3 with the CeleryExecutor, deployed the way docs/deployment.md says, for the
end-to-end test: a PostgreSQL metadata database, Redis as the broker, the billing gateway's
databases seeded with the demo's divergent scenario, the demo stand-ins (PSP, core, Slack,
SMTP, PTAX), then ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and
two ``airflow celery worker`` processes that share no disk.

The commands and settings below are the single source of both: the test runs them, and
``test_deployment_doc.py`` checks that docs/deployment.md shows each one, rendered with
:data:`DOC_VALUES`.

Each worker runs in its own mount and UTS namespace (``unshare``, root only) with its own
host name and an empty tmpfs over the Airflow home, the local artifacts folder and the
temporary folders: what a worker writes there is invisible to the other worker and to the
api-server, as on separate hosts. Where ``unshare`` is not permitted each worker gets
distinct directories instead (:attr:`CeleryDeployment.isolation` says which). Task logs go
to one folder per worker outside its private folders (standing for remote logging), so
that a failure can show them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
PRIVATE_FOLDERS_SCRIPT = HERE / "private_folders.sh"

REMEDIATION_DAG_ID = "billing_gateway_remediation"
APPROVAL_TASK_ID = "mitigate.correct_transactions"
WORKERS = ("recon-worker-1", "recon-worker-2")
#: what the api-server, scheduler, dag-processor and triggerer are started with
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

# -- the commands (docs/deployment.md shows each of them, rendered with DOC_VALUES) ------------

#: the provider's ``recon`` schema in the billing gateway database (as its owner; the test runs
#: it on the site's tables before seeding the scenario)
PROVIDER_SETUP_COMMAND = "airflow-recon migrate --conn-id billing_gateway_db"
#: run once, in this order, with the deployment's environment, before the components start
SETUP_COMMANDS = (
    "airflow db migrate",
    "airflow dags reserialize",
    # DAGs are created paused (Airflow's default); the watch stays paused in the test so the
    # remediation run under test is the only one (a site unpauses it: see the doc)
    "airflow dags unpause --treat-dag-id-as-regex --yes '^billing_gateway_(?!divergence_watch$)'",
)
COMPONENT_COMMANDS = {
    "api-server": "airflow api-server --host 127.0.0.1 --port {api_port} --workers 1",
    "scheduler": "airflow scheduler",
    "dag-processor": "airflow dag-processor",
    "triggerer": "airflow triggerer",
}
WORKER_COMMAND = (
    "airflow celery worker --celery-hostname {worker}@%h --queues {queue} --concurrency 2"
    " --without-gossip --without-mingle"
)

#: settings every component gets (beside the demo's: the provider's connections, RECON_CONFIG,
#: the auth manager and its users), as environment variables
CELERY_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://{metadata_db}",
    "AIRFLOW__CELERY__BROKER_URL": "redis://{redis_host}:{redis_port}/{redis_db}",
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://{metadata_db}",
    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "{queue}",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://{api_host}:{api_port}/execution/",
    "AIRFLOW__API__BASE_URL": "http://{api_host}:{api_port}",
    "AIRFLOW__RECON__ARTIFACTS_BASE_URL": "{artifacts_base_url}",
    "AIRFLOW__RECON__ARTIFACTS_CONN_ID": "{artifacts_conn_id}",
    "AIRFLOW__RECON__DASHBOARD_BASE_URL": "http://{api_host}:{api_port}/recon",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__RECON__FINANCE_APPROVERS": "finance",
}
#: the same value in every component (a generated airflow.cfg differs per host)
SHARED_SECRETS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
)

#: what the doc shows in place of the test's generated values
DOC_VALUES = {
    "api_host": "airflow-api.internal",
    "api_port": "8080",
    "metadata_db": "airflow:PASSWORD@metadata-db.internal:5432/airflow",
    "redis_host": "redis.internal",
    "redis_port": "6379",
    "redis_db": "0",
    "queue": "default",
    "worker": "recon-worker-1",
    "artifacts_base_url": "s3://finops-recon-artifacts/prod",
    "artifacts_conn_id": "aws_recon_artifacts",
}

# -- bounds ------------------------------------------------------------------------------------

READY_SECONDS = 240.0
APPROVAL_REQUEST_SECONDS = 300.0
RUN_END_SECONDS = 300.0


def render(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def unshare_permitted() -> bool:
    """Whether workers can get private folders (a mount namespace and tmpfs: root only)."""
    if not shutil.which("unshare") or not shutil.which("nsenter"):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--propagation", "private", "--",
         "sh", "-c", "mount -t tmpfs probe /mnt && hostname probe"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return probe.returncode == 0


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"({exc})"


@dataclass
class Worker:
    name: str
    #: the folders no one else sees (a tmpfs each, or distinct directories in the fallback)
    private: tuple[Path, ...]
    log_folder: Path
    process: subprocess.Popen[bytes] | None = None

    def files_in_private_folders(self, isolation: str) -> list[str]:
        """Every file in this worker's private folders, as the worker sees them."""
        folders = [str(p) for p in self.private]
        if isolation == "unshare":
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} is not running: its private folders are gone")
            found = subprocess.run(
                ["nsenter", "--target", str(self.process.pid), "--mount", "--",
                 "find", *folders, "-xdev", "-type", "f"],
                capture_output=True, text=True, timeout=60, check=False,
            ).stdout  # fmt: skip
            return sorted(line for line in found.splitlines() if line)
        return sorted(str(p) for folder in self.private for p in folder.rglob("*") if p.is_file())


@dataclass
class CeleryDeployment:
    """Everything the end-to-end test starts; :meth:`stop` undoes it."""

    root: Path
    env: dict[str, str]
    values: dict[str, str]
    isolation: str
    workers: list[Worker]
    stand_ins: Any
    gateway_uri: str
    metadata_uri: str
    scenario: Any
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    redis: subprocess.Popen[bytes] | None = None
    notes: list[str] = field(default_factory=list)
    #: seconds each stage of the start took
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.values['api_port']}"

    @property
    def component_logs(self) -> Path:
        return self.root / "component-logs"

    @property
    def bucket(self) -> Path:
        return self.root / "bucket"

    # -- starting ------------------------------------------------------------------------------

    def run_setup(self) -> None:
        """The one-off commands (:data:`SETUP_COMMANDS`), each bounded."""
        for command in SETUP_COMMANDS:
            argv = shlex.split(render(command, self.values))
            argv[0] = _venv_bin(argv[0])
            done = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=240, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )

    def start_components(self) -> None:
        """The api-server first (tasks report to its execution API), then the others."""
        self._spawn("api-server", shlex.split(render(COMPONENT_COMMANDS["api-server"], self.values)))
        self.wait_for("the api-server to answer", lambda: self.health() is not None, READY_SECONDS)
        for name in COMPONENTS[1:]:
            self._spawn(name, shlex.split(render(COMPONENT_COMMANDS[name], self.values)))
        for worker in self.workers:
            command = shlex.split(render(WORKER_COMMAND, {**self.values, "worker": worker.name}))
            env = {
                **self.env,
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(worker.log_folder),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            }
            if self.isolation == "unshare":
                env["TMPDIR"] = str(self.root / "tmp")
                wrapper = ["unshare", "--mount", "--uts", "--propagation", "private", "--",
                           "sh", str(PRIVATE_FOLDERS_SCRIPT), worker.name,
                           *(str(p) for p in worker.private), "--"]  # fmt: skip
                worker.process = self._spawn(worker.name, [*wrapper, *command], env=env)
            else:
                home, artifacts, tmp = worker.private
                for folder in worker.private:
                    folder.mkdir(parents=True, exist_ok=True)
                env.update(
                    {"AIRFLOW_HOME": str(home), "RECON_ARTIFACTS_DIR": str(artifacts), "TMPDIR": str(tmp)}
                )
                worker.process = self._spawn(worker.name, command, env=env)

    def wait_ready(self) -> None:
        def healthy() -> bool:
            body = self.health() or {}
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all((body.get(p) or {}).get("status") == "healthy" for p in parts)

        self.wait_for("Airflow's components to be healthy", healthy, READY_SECONDS)
        for worker in self.workers:
            log = self.component_logs / f"{worker.name}.log"
            self.wait_for(f"{worker.name} to be ready", lambda log=log: " ready." in tail(log, 20000), 120)

    def _spawn(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        from airflow_recon_provider.devtools.demo_ui import _terminate_with_parent

        self.component_logs.mkdir(parents=True, exist_ok=True)
        argv = [_venv_bin(a) if a in ("airflow", "airflow-recon") else a for a in argv]
        with open(self.component_logs / f"{name}.log", "ab") as out:
            process = subprocess.Popen(
                argv,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as a whole
                preexec_fn=_terminate_with_parent(),
            )
        self.processes[name] = process
        return process

    # -- waiting, with the reason when it does not come --------------------------------------

    def wait_for(self, what: str, condition: Callable[[], Any], seconds: float) -> Any:
        """Poll ``condition`` until it returns something truthy; past ``seconds``, or when a
        component exits, fail with the end of every component's log."""
        deadline = time.monotonic() + seconds
        while True:
            result = condition()
            if result:
                return result
            dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
            if dead:
                raise AssertionError(
                    f"while waiting for {what}: component(s) exited {dead}\n{self.logs_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not after {seconds:.0f} s\n{self.logs_tail()}")
            time.sleep(2)

    def logs_tail(self, chars: int = 2500) -> str:
        parts = [f"--- {p.name}\n{tail(p, chars)}" for p in sorted(self.component_logs.glob("*.log"))]
        return "\n".join(parts)

    def task_logs_tail(self, run_id: str | None = None, chars: int = 4000) -> str:
        """The end of the task logs the workers wrote (of ``run_id`` when given)."""
        found = sorted(
            f
            for worker in self.workers
            for f in worker.log_folder.rglob("*.log")
            if run_id is None or quote(run_id, safe="") in str(f) or run_id in str(f)
        )
        return "\n".join(f"--- {f}\n{tail(f, chars)}" for f in found[-6:])

    # -- REST -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any] | None:
        import httpx

        try:
            return httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return None

    def token(self, user: str) -> str:
        import httpx

        from airflow_recon_provider.devtools.demo_ui import USERS

        answer = httpx.post(
            f"{self.url}/auth/token", json={"username": user, "password": USERS[user]}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def api(self, user_token: str) -> Any:
        import httpx

        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {user_token}"},
            cookies={"_token": user_token},
            timeout=60,
        )

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, grace: float = 30.0) -> list[str]:
        """Stop every process started here; returns those that needed SIGKILL."""
        from airflow_recon_provider.devtools.demo_ui import _group_alive, _processes_with_env, _signal_group

        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        killed = []
        for name, process in self.processes.items():
            if _group_alive(process.pid):
                _signal_group(process.pid, signal.SIGKILL)
                killed.append(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        homes = {str(self.home), *(str(w.private[0]) for w in self.workers)}
        for home in homes:  # a task process that left its group
            for pid in _processes_with_env("AIRFLOW_HOME", home):
                if pid != os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(f"pid {pid}")
        self.processes.clear()
        if self.stand_ins is not None:
            self.stand_ins.stop()
        if self.redis is not None:
            _signal_group(self.redis.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis.wait(10)
        return killed


def _venv_bin(name: str) -> str:
    """A console script of this environment (the test may run without .venv/bin on PATH)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


@contextlib.contextmanager
def redis_broker(root: Path) -> Iterator[tuple[int, subprocess.Popen[bytes] | None]]:
    """Redis at 127.0.0.1:6379 when it answers (this machine kind runs one); otherwise a
    ``redis-server`` of our own on a free port, stopped afterwards."""
    if redis_answers(6379):
        yield 6379, None
        return
    server = shutil.which("redis-server")
    if server is None:
        raise FileNotFoundError("no Redis answers on 127.0.0.1:6379 and redis-server is not installed")
    port = free_port()
    (root / "redis").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(root / "redis")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not redis_answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server on port {port} did not start")
        time.sleep(0.2)
    yield port, process


def build_env(
    *,
    root: Path,
    values: dict[str, str],
    gateway_uri: str,
    ledger_uri: str,
    metadata_uri: str,
    connections: dict[str, str],
) -> dict[str, str]:
    """The environment of every component: the demo's Airflow settings (``airflow_env`` and
    ``ui_env`` of the devtools: connections, RECON_CONFIG, auth manager and its two users),
    then the Celery deployment's (:data:`CELERY_SETTINGS`), shared secrets and free ports."""
    from cryptography.fernet import Fernet

    from airflow_recon_provider.devtools.demo_airflow import airflow_env
    from airflow_recon_provider.devtools.demo_scenario import RECON_CONFIG
    from airflow_recon_provider.devtools.demo_ui import ui_env

    home = root / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    # nothing of the test session's own Airflow (SQLite home, unit-test mode) leaks in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECON_"))}
    env.update(
        airflow_env(
            home=home,
            metadata_uri=metadata_uri,
            recon_config=json.dumps(RECON_CONFIG),
            extra={
                "AIRFLOW_CONN_BILLING_GATEWAY_DB": gateway_uri,
                "AIRFLOW_CONN_PAYMENTS_LEDGER_DB": ledger_uri,
                **connections,
            },
        )
    )
    env.update(ui_env(home, int(values["api_port"])))
    env.update({key: render(value, values) for key, value in CELERY_SETTINGS.items()})
    env.update(
        {
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            # two cores shared with everything else: few processes, small pools
            "AIRFLOW__CORE__PARALLELISM": "6",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # task logs of the api-server, scheduler and triggerer (workers get their own)
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(root / "logs"),
        }
    )
    return env


def xcom_values(client: Any, dag_id: str = "~", run_id: str = "~") -> dict[str, Any]:
    """Every XCom of ``dag_id``/``run_id`` (``~``: all) through the REST API, page by page:
    ``{"dag/run/task[map]/key": value}``."""
    entries: list[dict[str, Any]] = []
    while True:
        listing = client.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/~/xcomEntries",
            params={"limit": 100, "offset": len(entries)},
        )
        listing.raise_for_status()
        page = listing.json()
        entries += page["xcom_entries"]
        if not page["xcom_entries"] or len(entries) >= page["total_entries"]:
            break
    values = {}
    for entry in entries:
        entry_run = quote(entry["run_id"], safe="")
        task = quote(entry["task_id"], safe="")
        key = quote(entry["key"], safe="")
        one = client.get(
            f"/api/v2/dags/{entry['dag_id']}/dagRuns/{entry_run}/taskInstances/{task}/xcomEntries/{key}",
            params={"map_index": entry["map_index"]},
        )
        one.raise_for_status()
        where = f"{entry['dag_id']}/{entry['run_id']}/{entry['task_id']}[{entry['map_index']}]/{entry['key']}"
        values[where] = one.json().get("value")
    return values
