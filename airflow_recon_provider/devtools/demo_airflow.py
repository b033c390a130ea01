"""Airflow for the demo: its environment, its metadata database, and the in-process runs.

The headless demo runs the package's real DAGs in this process, the way ``dag.test()``
does: no scheduler, no workers. Two things a scheduler would otherwise do are played here,
in the open:

- a run created by another DAG (the remediation run the divergence watch starts, the
  reconciliation runs the reprocess step starts) is executed with the same minimal loop
  as ``dag.test()`` (:func:`drive_dag_run`); deferred tasks run their trigger inline;
- finance's approval in *Required actions* is answered by :class:`DemoApprover`, a
  clearly labelled demo user, exactly as the REST API's ``hitlDetails`` PATCH records it.

Nothing here is imported by the provider; the environment must be set (see
:func:`airflow_env`) before anything imports Airflow.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_recon_provider.names import (
    FINANCE_REPORT_DAG_ID,
    INCIDENT_UPDATES_DAG_ID,
    RECONCILIATION_DAG_ID,
    REMEDIATION_DAG_ID,
    WATCH_DAG_ID,
)

DEMO_DAG_IDS = (
    WATCH_DAG_ID,
    REMEDIATION_DAG_ID,
    RECONCILIATION_DAG_ID,
    INCIDENT_UPDATES_DAG_ID,
    FINANCE_REPORT_DAG_ID,
)
#: the finance report the headless demo files (Detecção 2)
DEMO_FINANCE_TICKET = "FIN-88"

#: who answers finance's approval in the headless demo (recorded as such in recon.corrections)
DEMO_APPROVER_ID = "demo-approver"
DEMO_APPROVER_NAME = "demo-approver (finance)"
#: on-call in the demo: gives the PSP's ticket number (Comunicação 3)
DEMO_ONCALL_ID = "demo-oncall"
DEMO_PSP_TICKET = "STRIPE-8812"
PSP_TICKET_NUMBER_TASK_ID = "communicate.psp_ticket_number"

#: a bound, so that a broken run ends the demo with an error instead of waiting forever
RUN_DEADLINE_SECONDS = 240


def dags_folder() -> Path:
    """The package's DAG files (``dags/`` beside the package in a checkout)."""
    import airflow_recon_provider

    folder = Path(airflow_recon_provider.__file__).resolve().parents[1] / "dags"
    if not (folder / f"{REMEDIATION_DAG_ID}.py").is_file():
        raise FileNotFoundError(
            f"the package's DAG files are not at {folder}; run the demo from a checkout of the repository"
        )
    return folder


#: on-call's address in the demo: invited to the review with finance (Encerramento 4)
DEMO_ONCALL_EMAIL = "oncall@platform.io"


def airflow_env(*, home: Path, metadata_uri: str, recon_config: str, extra: dict[str, str]) -> dict[str, str]:
    """Environment of every Airflow process of the demo (this one, or ``airflow standalone``)."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_uri.replace(
            "postgresql://", "postgresql+psycopg2://", 1
        ),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "RECON_CONFIG": recon_config,
        "RECON_ARTIFACTS_DIR": str(home.parent / "artifacts"),
        "RECON_RELEASE_RECORD": str(home.parent / "release-actions.json"),
        # rollback and tag run the local script instead of a Kubernetes pod
        "AIRFLOW_VAR_RECON_RELEASE_MODE": "local",
        # Critérios de Recuperação: checked every 15 s, not every 5 min, while people watch
        "AIRFLOW__RECON__RECOVERY_POLL_INTERVAL": "15",
        # Encerramento 4: on-call is invited to the review with finance too
        "AIRFLOW_VAR_RECON_ONCALL_RECIPIENTS": DEMO_ONCALL_EMAIL,
        **extra,
    }


class HeadlessApiServer:
    """Airflow's api-server for the headless demo, in this process (uvicorn on a thread, over
    the demo's metadata database), as ``airflow standalone`` would run it:

    - its execution API is where the executor's task processes report, so the failed tries of
      ``billing_gateway_reconciliation`` run the way a worker runs them (``dag.test(
      use_executor=True)``, LocalExecutor) and Airflow's supervisor writes their logs to the
      log folder (``[logging] base_log_folder``);
    - its REST API is where the investigation reads those logs back (Investigação 2, "coletar
      logs"): connection ``airflow_api``, as the on-call user, a JWT from ``POST /auth/token``.

    :param home: the demo's ``AIRFLOW_HOME`` (the users' password file goes there).
    """

    def __init__(self, home: Path) -> None:
        import secrets

        from airflow_recon_provider.devtools.stand_ins import LOCALHOST, free_port

        self.home = home
        self.host = LOCALHOST
        self.port = free_port()
        self.user = DEMO_ONCALL_ID
        self.password = secrets.token_urlsafe(18)
        self._jwt_secret = secrets.token_hex(64)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """What Airflow and the provider need to use it; set before Airflow reads its config."""
        import json

        passwords = self.home / "headless-api-passwords.json"
        self.home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({self.user: self.password}))
        passwords.chmod(0o600)
        return {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW_CONN_AIRFLOW_API": json.dumps(
                {
                    "conn_type": "http",
                    "host": self.host,
                    "port": self.port,
                    "schema": "http",
                    "login": self.user,
                    "password": self.password,
                }
            ),
        }

    def start(self, timeout: float = 60.0) -> HeadlessApiServer:
        """Serve (the metadata database migrated, the DAGs serialized)."""
        import uvicorn
        from airflow.api_fastapi.app import create_app

        self._server = uvicorn.Server(
            uvicorn.Config(create_app(apps="all"), host=self.host, port=self.port, log_level="error")
        )
        self._thread = threading.Thread(target=self._server.run, name="headless-api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"Airflow's api-server did not start on {self.url}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None


def migrate_metadata_db(marker: Path) -> bool:
    """``airflow db migrate`` once per Airflow version (it takes ~20 s the first time)."""
    import airflow

    if marker.exists() and marker.read_text() == airflow.__version__:
        return False
    from airflow.utils.db import upgradedb

    upgradedb()
    marker.write_text(airflow.__version__)
    return True


def forget_demo_runs() -> None:
    """Delete earlier demo runs of the package's DAGs (run ids of reprocessing are derived
    from the cycles, so a second demo in the same hour would find them taken)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(
            delete(DagRun).where(DagRun.dag_id.in_(DEMO_DAG_IDS)).execution_options(synchronize_session=False)
        )


def load_dags(*, warn: Callable[[str], None] | None = None) -> Any:
    """``dags/`` parsed and serialized (what the dag processor would do). The demo needs the
    watch, remediation and reconciliation DAGs; a broken file among the others is reported
    through ``warn`` and left out."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    bag = DagBag(dag_folder=str(dags_folder()))
    missing = [d for d in (WATCH_DAG_ID, REMEDIATION_DAG_ID, RECONCILIATION_DAG_ID) if d not in bag.dags]
    if missing:
        raise RuntimeError(f"the package's DAGs {missing} do not load: {bag.import_errors}")
    for path, error in bag.import_errors.items():
        if warn is not None:
            warn(f"{Path(path).name} does not load and is left out: {error.strip().splitlines()[-1]}")
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    return bag


@contextlib.contextmanager
def params_restored(dag: Any) -> Iterator[Any]:
    """In-process runs resolve a run's conf into the DAG's own Param objects (see
    tests/remediation_dag/conftest.py); give the DAG its own back afterwards."""
    saved = copy.deepcopy(dag.params)
    saved_tasks = {task.task_id: copy.deepcopy(task.params) for task in dag.tasks}
    try:
        yield dag
    finally:
        dag.params = saved
        for task in dag.tasks:
            task.params = saved_tasks[task.task_id]


@dataclass
class TaskDone:
    dag_id: str
    run_id: str
    task_id: str
    state: str
    seconds: float


def drive_dag_run(
    sdk_dag: Any,
    run_id: str,
    *,
    on_task: Callable[[TaskDone], None] | None = None,
    on_waiting: Callable[[list[str]], None] | None = None,
    deadline_seconds: float = RUN_DEADLINE_SECONDS,
) -> str:
    """Execute the existing run ``run_id`` of ``sdk_dag`` to its end, like a scheduler and a
    worker: the minimal loop of ``dag.test()``, on a run created by someone else. Deferred
    tasks run their trigger inline; tasks awaiting human input wait for an answer. Returns
    the run's final state."""
    from airflow import settings
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    def current(session: Any) -> Any:
        return session.scalar(select(DagRun).where(DagRun.dag_id == sdk_dag.dag_id, DagRun.run_id == run_id))

    session = settings.Session()
    dag_run = current(session)
    if dag_run is None:
        raise RuntimeError(f"{sdk_dag.dag_id} has no run {run_id}")
    if dag_run.state == DagRunState.QUEUED:
        dag_run.state = DagRunState.RUNNING
        dag_run.start_date = timezone.utcnow()
        session.commit()
    deadline = time.monotonic() + deadline_seconds
    waiting_reported: set[str] = set()
    while True:
        # tasks run below close the scoped session: always read the run again
        session = settings.Session()
        session.expire_all()
        dag_run = current(session)
        if dag_run.state != DagRunState.RUNNING:
            return str(dag_run.state)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sdk_dag.dag_id} run {run_id} did not finish in {deadline_seconds:.0f} s")
        dag_run.dag = DBDagBag().get_dag_for_run(dag_run, session=session)
        schedulable, _ = dag_run.update_state(session=session)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
            ti.scheduled_dttm = timezone.utcnow()
        session.commit()
        tis = dag_run.get_task_instances(session=session)
        scheduled = [ti for ti in tis if ti.state == TaskInstanceState.SCHEDULED]
        awaiting = sorted(ti.task_id for ti in tis if ti.state == TaskInstanceState.AWAITING_INPUT)
        if not scheduled:
            if awaiting and on_waiting and set(awaiting) - waiting_reported:
                on_waiting(awaiting)
                waiting_reported.update(awaiting)
            time.sleep(0.3)
            continue
        for ti in scheduled:
            started = time.monotonic()
            task_id = ti.task_id
            result = _run_task(ti=ti, task=sdk_dag.task_dict[task_id], run_triggerer=True)
            if on_task is not None:
                # the state the task ended this attempt with (an approval may already have
                # moved an awaiting task on by the time the database is read)
                state = getattr(result.ti, "state", None) if result is not None else None
                if state is None:
                    state = _ti_state(sdk_dag.dag_id, run_id, task_id, ti.map_index)
                state = str(getattr(state, "value", state))
                on_task(TaskDone(sdk_dag.dag_id, run_id, task_id, state, time.monotonic() - started))


def _ti_state(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        )
    return str(state)


def queued_runs(dag_id: str, run_ids: list[str] | None = None) -> list[str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    query = select(DagRun.run_id).where(DagRun.dag_id == dag_id, DagRun.state == DagRunState.QUEUED)
    if run_ids is not None:
        query = query.where(DagRun.run_id.in_(run_ids))
    with create_session() as session:
        return list(session.scalars(query.order_by(DagRun.id)).all())


@contextlib.contextmanager
def reprocess_runs_executed_here(
    reconciliation_dag: Any, on_task: Callable[[TaskDone], None] | None = None
) -> Iterator[list[str]]:
    """While the reprocess step waits for its reconciliation runs, execute them here first
    (what the scheduler and a worker would do meanwhile; there is none in-process)."""
    from airflow_recon_provider.triggers.reprocess import ReconciliationRunsTrigger

    executed: list[str] = []
    original = ReconciliationRunsTrigger.poll

    async def poll_after_running_children(self: Any) -> Any:
        for run_id in queued_runs(reconciliation_dag.dag_id, list(self.run_ids)):
            with params_restored(reconciliation_dag):
                drive_dag_run(reconciliation_dag, run_id, on_task=on_task)
            executed.append(run_id)
        return await original(self)

    ReconciliationRunsTrigger.poll = poll_after_running_children  # type: ignore[method-assign]
    try:
        yield executed
    finally:
        ReconciliationRunsTrigger.poll = original  # type: ignore[method-assign]


class HitlAnswerer(threading.Thread):
    """Answers the first approval request of ``dag_id`` (and ``run_id`` when given) once its
    task waits in ``awaiting_input``, recorded exactly as the REST API's ``hitlDetails`` PATCH
    records a person's answer (AIRFLOW3-NOTES, HITL). Used by the headless demo and the tests.

    It is built so that a run waiting for it never hangs: a busy metadata database
    (``database is locked`` on SQLite) is retried; an answer that did not take (the task seen
    in ``awaiting_input`` again with the response already recorded) is submitted again; and if
    the answer cannot be given at all, the waiting task is failed so the run ends and
    :attr:`error` says why.

    :param chosen: the option chosen, or ``None`` to let the request time out: once its
        deadline has passed, the scheduler's ``awaiting_input`` sweep decides (there is no
        scheduler in ``dag.test()``).
    :param user: id recorded in ``responded_by``; ``user_name`` its display name.
    :param timeout: seconds to wait for a request before giving up.
    :param task_id: answer only this task's request (default: the first request of the run).
    :param params_input: the form's fields in the answer (an entry form such as the PSP
        ticket number's).
    """

    def __init__(
        self,
        dag_id: str,
        *,
        chosen: str | None,
        user: str | None = None,
        user_name: str | None = None,
        run_id: str | None = None,
        timeout: float = 200,
        task_id: str | None = None,
        params_input: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"approval answerer ({user or 'timeout'})")
        self.task_id = task_id
        self.params_input = dict(params_input or {})
        self.dag_id = dag_id
        self.run_id = run_id
        self.chosen = chosen
        self.user = user
        self.user_name = user_name or user
        self.timeout = timeout
        self.request: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._ti_id: Any = None

    def stop(self) -> None:
        self._halt.set()

    def finish(self, seconds: float = 30) -> None:
        """Stop watching, wait for the thread, and raise what went wrong, if anything."""
        self.stop()
        self.join(seconds)
        if self.error is not None:
            raise AssertionError(f"the approval was not answered: {self.error!r}") from self.error

    def run(self) -> None:
        try:
            self._answer()
        except BaseException as exc:  # reported through .error / finish()
            self.error = exc
            self._unblock()

    # -- the steps ---------------------------------------------------------------------------

    def _answer(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._halt.is_set():
            if self._ti_id is None and time.monotonic() > deadline:
                raise TimeoutError(f"no task of {self.dag_id} waited for an approval in {self.timeout:.0f} s")
            try:
                state = self._step()
            except Exception as exc:  # a busy database: try again
                if not _is_transient(exc):
                    raise
                state = "retry"
            if state == "done":
                return
            self._halt.wait(0.1 if self._ti_id is None else 0.2)

    def _step(self) -> str:
        """One look at the database; returns ``done`` when there is nothing left to do."""
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        with create_session() as session:
            if self._ti_id is None:
                query = select(TaskInstance).where(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                )
                if self.run_id is not None:
                    query = query.where(TaskInstance.run_id == self.run_id)
                if self.task_id is not None:
                    query = query.where(TaskInstance.task_id == self.task_id)
                ti = session.scalars(query).first()
            else:
                ti = session.get(TaskInstance, self._ti_id)
            if ti is None:
                return "waiting"
            if self._ti_id is not None and ti.state != TaskInstanceState.AWAITING_INPUT:
                # answered and moving on: watch until it has run, in case it parks again
                return "done" if getattr(ti.state, "value", ti.state) in _FINISHED else "watching"
            detail = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti.id))
            if detail is None:  # the request is written before the task parks; not visible yet
                return "waiting"
            if self._ti_id is None:
                self.request = {
                    "task_id": ti.task_id,
                    "run_id": ti.run_id,
                    "subject": detail.subject,
                    "body": detail.body,
                    "options": list(detail.options or []),
                    "defaults": detail.defaults,
                    "assignees": detail.assignees,
                    "timeout": ti.trigger_timeout,
                }
                self._ti_id = ti.id
            if self.chosen is None:
                self._let_it_time_out()
                return "watching"
            self._submit(ti, detail, session)
        self.request["answered"] = self.chosen
        return "watching"

    def _submit(self, ti: Any, detail: Any, session: Any) -> None:
        from airflow.models.trigger import handle_event_submit
        from airflow.sdk import timezone
        from airflow.triggers.base import TriggerEvent

        if not detail.response_received:
            detail.responded_by = {"id": self.user, "name": self.user_name}
            detail.responded_at = timezone.utcnow()
            detail.chosen_options = [self.chosen]
            detail.params_input = dict(self.params_input)
            session.add(detail)
        handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)

    def _let_it_time_out(self) -> None:
        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from airflow.sdk import timezone

        timeout = self.request["timeout"]
        if timeout is None:
            raise RuntimeError("the approval request has no timeout: it would wait forever")
        while timezone.utcnow() <= timeout and not self._halt.is_set():
            time.sleep(0.1)
        SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()

    def _unblock(self) -> None:
        """Fail the task still waiting for this answer, so the run waiting on it ends."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        if self._ti_id is None:
            return
        for _ in range(50):
            try:
                with create_session() as session:
                    ti = session.get(TaskInstance, self._ti_id)
                    if ti is not None and ti.state == TaskInstanceState.AWAITING_INPUT:
                        ti.set_state(TaskInstanceState.FAILED, session=session)
                return
            except Exception as exc:
                if not _is_transient(exc):
                    return
                time.sleep(0.2)


def _is_transient(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()


_FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


class DemoApprover(HitlAnswerer):
    """The demo's stand-in for a finance analyst: answers the approval request of
    ``dag_id``/``run_id`` with ``chosen``, recorded like an answer given in *Required actions*
    (``responded_by`` is the demo approver, never the requester)."""

    def __init__(self, dag_id: str, run_id: str, *, chosen: str = "Approve", timeout: float = 200) -> None:
        super().__init__(
            dag_id,
            run_id=run_id,
            chosen=chosen,
            user=DEMO_APPROVER_ID,
            user_name=DEMO_APPROVER_NAME,
            timeout=timeout,
        )
