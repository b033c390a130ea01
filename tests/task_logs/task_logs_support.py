"""What the "coletar logs" tests share (runbook Investigação 2): the scenario's names and
secrets, a failed ``match_transactions`` log as Airflow's ``get_log`` serves it, the stand-in's
content, the ``airflow_api`` connection, and running the investigation with ``dag.test()``."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

from airflow_api_stand_in import AirflowApiStandIn, dag_run, task_instance, task_try
from structlog.tracebacks import ExceptionDictTransformer


def error_detail(message: str) -> list[dict]:
    """What Airflow's task logs carry as ``error_detail``: structlog's ExceptionDictTransformer
    of a real exception chain (the supervisor renames ``exception`` to ``error_detail``)."""

    def inner() -> None:
        raise ConnectionError("server closed the connection")

    def outer() -> None:
        try:
            inner()
        except ConnectionError as exc:
            raise RuntimeError(message) from exc

    try:
        outer()
    except RuntimeError:
        return ExceptionDictTransformer(use_rich=False, show_locals=False)(sys.exc_info())
    raise AssertionError("unreachable")


PSP = "stripe"
INCIDENT = "INCIDENT-916"
WINDOW = ("2026-11-20T12:00:00+00:00", "2026-11-20T14:00:00+00:00")
C12 = datetime(2026, 11, 20, 12, tzinfo=UTC)
C13 = datetime(2026, 11, 20, 13, tzinfo=UTC)
API_USER, API_PASSWORD = "recon-investigation", "Api-Pass-4567"
DB_SECRET = "Gw-Db-Passw0rd"
PSP_TOKEN = "sk_live_9fQ2xTOKENabc123"
SECRETS = (API_PASSWORD, DB_SECRET, PSP_TOKEN)


def failing_match_log() -> list[dict]:
    """The log of a failed ``match_transactions`` try as ``get_log`` serves it: structured
    messages (the supervisor's JSON lines), the failure's ``error_detail`` made by structlog's
    ExceptionDictTransformer, and secrets in it a task could have logged."""
    return [
        {"event": "::group::Log message source details", "sources": ["/opt/airflow/logs/attempt=1.log"]},
        {"event": "::endgroup::"},
        {
            "timestamp": "2026-11-20T14:10:00.1Z",
            "level": "info",
            "event": "DAG bundles loaded",
            "logger": "x",
        },
        {
            "timestamp": "2026-11-20T14:10:00.2Z",
            "level": "info",
            "event": f"connecting postgresql://recon:{DB_SECRET}@db:5432/billing",
            "logger": "task",
        },
        {
            "timestamp": "2026-11-20T14:10:01Z",
            "level": "error",
            "event": f"PSP stripe statement request refused: Authorization: Bearer {PSP_TOKEN}; "
            f"api user {API_USER} password {API_PASSWORD}",
            "logger": "airflow.task.operators.MatchTransactionsOperator",
        },
        {
            "timestamp": "2026-11-20T14:10:02Z",
            "level": "error",
            "event": "Task failed with exception",
            "logger": "task",
            "error_detail": error_detail(
                f"classification of cycle 2026-11-20T12:00Z aborted (postgresql://recon:{DB_SECRET}@db/billing)"
            ),
        },
        {
            "timestamp": "2026-11-20T14:10:03Z",
            "level": "info",
            "event": "Marking task as FAILED.",
            "logger": "t",
        },
    ]


def fill_stand_in(api: AirflowApiStandIn) -> None:
    """Cycle 12:00 failed in its scheduled run (``match_transactions`` try 1); cycle 13:00's
    scheduled run failed, then its reprocess failed again after a retry (try 1 and 2 failed);
    other PSPs' task instances and a run outside the window are there too."""
    r12 = dag_run("scheduled__2026-11-20T12:00:00+00:00", cycle_start=C12, state="failed")
    r11 = dag_run("scheduled__2026-11-20T11:00:00+00:00", cycle_start=C12.replace(hour=11), state="failed")
    r13 = dag_run(
        "remediation_reprocess__stripe__13",
        cycle_start=C13,
        state="failed",
        conf={"psp": PSP, "cycle_start": "2026-11-20T13:00:00Z", "reprocess": True},
    )
    ok = dag_run("scheduled__2026-11-20T13:00:00+00:00", cycle_start=C13, state="success")
    api.runs = [r11, r12, ok, r13]
    api.task_instances = {
        r12["dag_run_id"]: [
            task_instance(r12, "scope_cycle", map_index=-1, psp=None, state="success"),
            task_instance(r12, "fetch_psp_statements", map_index=0, psp="adyen", state="success"),
            task_instance(r12, "fetch_psp_statements", map_index=1, psp=PSP, state="success"),
            task_instance(r12, "match_transactions", map_index=0, psp="adyen", state="failed"),
            task_instance(r12, "match_transactions", map_index=1, psp=PSP, state="failed"),
        ],
        r13["dag_run_id"]: [
            task_instance(r13, "fetch_psp_statements", map_index=0, psp=PSP, state="success"),
            task_instance(r13, "match_transactions", map_index=0, psp=PSP, state="failed", try_number=2),
        ],
        r11["dag_run_id"]: [task_instance(r11, "match_transactions", map_index=0, psp=PSP, state="failed")],
    }
    retried = api.task_instances[r13["dag_run_id"]][1]
    api.tries = {
        (r13["dag_run_id"], "match_transactions", 0): [
            task_try(retried, try_number=1, state="up_for_retry"),
            task_try(retried, try_number=2, state="failed"),
        ]
    }
    other = [{"timestamp": "2026-11-20T14:10:02Z", "level": "error", "event": "adyen failure", "logger": "t"}]
    api.logs = {
        (r12["dag_run_id"], "match_transactions", 1, 1): failing_match_log(),
        (r12["dag_run_id"], "match_transactions", 0, 1): other,
        (r13["dag_run_id"], "match_transactions", 0, 1): [
            {"timestamp": "2026-11-20T15:00:00Z", "level": "error", "event": "first try: lock timeout"}
        ],
        (r13["dag_run_id"], "match_transactions", 0, 2): failing_match_log(),
        (r11["dag_run_id"], "match_transactions", 0, 1): other,
    }


def api_connection(url: str, *, login: str | None, password: str = API_PASSWORD) -> str:
    host, port = url.removeprefix("http://").split(":")
    conn = {"conn_type": "http", "host": host, "port": int(port), "schema": "http", "password": password}
    if login:
        conn["login"] = login
    return json.dumps(conn)


def run_investigation(register_dag, name: str):
    from airflow.sdk import DAG

    from airflow_recon_provider.operators.investigation import ReconciliationSnapshotOperator

    with DAG(
        dag_id=f"task_logs_{name}_{os.getpid()}", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)
    ) as dag:
        ReconciliationSnapshotOperator(
            task_id="snapshot",
            psp=PSP,
            window_start=WINDOW[0],
            window_end=WINDOW[1],
            incident_id=INCIDENT,
            kafka_timeout=2.0,
            health_timeout=2.0,
        )
    run = register_dag(dag).test()
    ti = run.get_task_instance("snapshot")
    assert str(ti.state) == "success", ti.state
    return run, ti.xcom_pull(task_ids="snapshot")


def log_events():
    from airflow_recon_provider.hooks.incidents import IncidentHook

    return [e for e in IncidentHook().timeline(INCIDENT) if e.step == "investigation.task_logs"]


def assert_no_secret(*values, extra: tuple[str, ...] = ()) -> None:
    text = json.dumps(values, default=str)
    for secret in (*SECRETS, *extra):
        assert secret not in text, f"{secret!r} leaked"
