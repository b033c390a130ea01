"""Runbook Investigação 2 — "Em caso de falha, coletar logs (`airflow tasks logs`)": the
investigation (``ReconciliationSnapshotOperator``, run by ``dag.test()`` against the real
PostgreSQL of ``tests/conftest.py``) reads the failed tries' logs of the window's failed cycles
through Airflow's REST API — here the local stand-in of ``airflow_api_stand_in.py``, which
speaks Airflow 3.3's routes and JSON shapes (checked against the installed Airflow below) — and
puts their error lines, secrets masked, into ``failed_task_logs_<psp>.md`` beside the snapshot
and onto the incident's timeline. Unreachable API, bad credentials (401) and no connection are
recorded as such and the investigation succeeds.
"""

from __future__ import annotations

from urllib.parse import quote

from airflow_api_stand_in import DAG_ID, dag_run, task_instance, task_try
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths
from task_logs_support import (
    API_USER,
    C12,
    C13,
    INCIDENT,
    PSP,
    WINDOW,
    api_connection,
    assert_no_secret,
    failing_match_log,
    log_events,
    run_investigation,
)

from airflow_recon_provider.devtools.stand_ins import free_port


def test_stand_in_speaks_airflow_3_3():
    """The stand-in's routes and objects are the installed Airflow's (routes of
    ``core_api/routes/public``, fields of the ``core_api/datamodels`` response models)."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import DAGRunResponse
    from airflow.api_fastapi.core_api.datamodels.log import TaskInstancesLogResponse
    from airflow.api_fastapi.core_api.datamodels.task_instance_history import TaskInstanceHistoryResponse
    from airflow.api_fastapi.core_api.datamodels.task_instances import TaskInstanceResponse
    from airflow.api_fastapi.core_api.routes.public import public_router

    paths = {route.path for route in public_router.routes}
    prefix = "/api/v2/dags/{dag_id}/dagRuns"
    for path in (
        prefix,
        prefix + "/{dag_run_id}/taskInstances",
        prefix + "/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries",
        prefix + "/{dag_run_id}/taskInstances/{task_id}/tries",
        prefix + "/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
    ):
        assert path in paths, path

    def fields(model) -> set[str]:
        return set(model.model_json_schema(mode="serialization")["properties"])

    run = dag_run("r", cycle_start=C12, state="failed")
    ti = task_instance(run, "match_transactions", map_index=0, psp=PSP, state="failed")
    assert set(run) == fields(DAGRunResponse)
    assert set(ti) == fields(TaskInstanceResponse)
    assert set(task_try(ti, try_number=1, state="failed")) == fields(TaskInstanceHistoryResponse)
    parsed = TaskInstancesLogResponse.model_validate(
        {"content": failing_match_log(), "continuation_token": None}
    )
    assert parsed.content[-2].event == "Task failed with exception"


def test_failed_match_transactions_lines_in_artifact_and_timeline(seeded, api, register_dag):
    _, result = run_investigation(register_dag, "collected")
    logs = result["task_logs"]
    assert logs["status"] == "collected", logs
    assert logs["failed_cycles"] == [C12.isoformat(), C13.isoformat()]
    # stripe's failed tries only: 12:00 scheduled (map index 1), 13:00 reprocess tries 1 and 2;
    # the success run of 13:00, adyen's instance and the 11:00 run are left out
    assert [
        (t["run_id"], t["task_id"], t["map_index"], t["try_number"], t["state"]) for t in logs["tries"]
    ] == [
        ("scheduled__2026-11-20T12:00:00+00:00", "match_transactions", 1, 1, "failed"),
        ("remediation_reprocess__stripe__13", "match_transactions", 0, 1, "up_for_retry"),
        ("remediation_reprocess__stripe__13", "match_transactions", 0, 2, "failed"),
    ]
    lines = logs["tries"][0]["lines"]
    assert lines[0].startswith(
        "14:10:01 ERROR PSP stripe statement request refused: Authorization: Bearer ***"
    )
    assert lines[1] == "14:10:02 ERROR Task failed with exception"
    assert lines[-1] == (
        "RuntimeError: classification of cycle 2026-11-20T12:00Z aborted (postgresql://recon:***@db/billing)"
    )
    assert not any("connecting" in line or "FAILED" in line for line in lines)  # not error lines
    assert logs["tries"][1]["lines"] == ["15:00:00 ERROR first try: lock timeout"]

    # the artifact beside the snapshot, read the dashboard's way
    summary = assert_artifact_link(logs["artifact"], kind="snapshot")
    assert summary["name"] == f"failed_task_logs_{PSP}.md"
    text = artifact_text(summary)
    assert "# Investigação — Checar Jobs: logs das tarefas com falha — PSP stripe" in text
    assert "## match_transactions — ciclo 2026-11-20T12:00:00+00:00 — tentativa 1" in text
    assert "RuntimeError: classification of cycle 2026-11-20T12:00Z aborted" in text

    # the timeline: a short pt-BR outcome and the lines
    (event,) = log_events()
    assert event.outcome.startswith(
        "Logs das tarefas com falha coletados: 3 tentativas com falha (match_transactions) em 2 ciclos"
    )
    assert summary["link"] in event.outcome
    assert event.details["tries"][0]["lines"] == lines
    assert event.details["status"] == "collected"

    # no token anywhere: the API's password and the JWT it issued, the DB password, the PSP token
    assert len(api.issued) == 1 and api.served("/auth/token")
    assert_no_secret(result, text, event.outcome, event.details, extra=tuple(api.issued))
    assert_no_local_paths(result, event.outcome, event.details, what="task logs")
    # the API was asked for the runs of the window's failed cycles, with the documented params
    ((_, _, query),) = [r for r in api.requests if r[1] == f"/api/v2/dags/{DAG_ID}/dagRuns"]
    assert query["state"] == "failed" and query["run_after_gte"] == "2026-11-20T11:00:00Z"
    run_id = quote("scheduled__2026-11-20T12:00:00+00:00", safe="")
    assert api.served(f"/dagRuns/{run_id}/taskInstances/match_transactions/logs/1")


def test_token_in_password_without_login(seeded, api, register_dag, monkeypatch):
    token = "static-api-token-0123456789"
    api.issued.append(token)
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api_connection(api.url, login=None, password=token))
    _, result = run_investigation(register_dag, "token")
    assert result["task_logs"]["status"] == "collected"
    assert not api.served("/auth/token")
    assert_no_secret(result, extra=(token,))


def test_bad_credentials_are_recorded_and_the_investigation_carries_on(
    seeded, api, register_dag, monkeypatch
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRFLOW_API", api_connection(api.url, login=API_USER, password="wrong-pw-1")
    )
    _, result = run_investigation(register_dag, "unauthorized")
    logs = result["task_logs"]
    assert logs["status"] == "unavailable" and logs["tries"] == []
    assert "HTTP 401" in logs["reason"] and "check the login/password" in logs["reason"]
    assert result["snapshot"]["rows"] > 0  # the rest of the investigation is there
    (event,) = log_events()
    assert event.outcome.startswith(
        "Logs das tarefas com falha não coletados (2 ciclos com falha): API do Airflow"
    )
    assert "HTTP 401" in event.outcome
    assert logs["artifact"] is None  # nothing collected, nothing published: the timeline says why
    assert_no_secret(result, event.outcome, event.details, extra=("wrong-pw-1",))


def test_unreachable_api_is_recorded(seeded, register_dag, monkeypatch):
    from airflow_recon_provider.hooks.airflow_api import AirflowApiHook

    monkeypatch.setattr(AirflowApiHook, "_sleep", staticmethod(lambda seconds: None))
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api_connection(url, login=API_USER))
    _, result = run_investigation(register_dag, "unreachable")
    logs = result["task_logs"]
    assert logs["status"] == "unavailable"
    assert "unreachable" in logs["reason"] and "gave up after 3 attempts" in logs["reason"]
    (event,) = log_events()
    assert "não coletados" in event.outcome and "unreachable" in event.outcome
    assert logs["artifact"] is None
    assert_no_secret(result, event.details)


def test_missing_connection_is_recorded(seeded, register_dag, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_API", raising=False)
    _, result = run_investigation(register_dag, "missing")
    logs = result["task_logs"]
    assert logs["status"] == "not_configured"
    assert (
        "conexão 'airflow_api' não configurada" in logs["reason"]
        and "AIRFLOW_CONN_AIRFLOW_API" in logs["reason"]
    )
    (event,) = log_events()
    assert event.details["status"] == "not_configured" and event.details["artifact"] is None


def test_no_failed_cycle_asks_nothing(db, airflow_conns, monkeypatch, tmp_path, api, register_dag):
    from airflow_recon_provider.devtools.seed import SeedSpec, seed_database
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.window import Window

    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    seed_database(
        db, None, SeedSpec(seed=5, psps=(PSP,), rows_per_psp=60, start=C12.replace(hour=10), hours=5)
    )
    IncidentHook().open_incident(
        PSP, incident_id=INCIDENT, window=Window.parse(*WINDOW), reason="r", actor="a"
    )
    _, result = run_investigation(register_dag, "clean")
    assert result["task_logs"]["status"] == "no_failed_cycles"
    assert api.requests == [] and log_events() == []


def test_missing_try_history_keeps_the_current_failed_try(seeded, api, register_dag):
    api.tries.clear()  # the tries route answers 404 for the retried instance
    _, result = run_investigation(register_dag, "no_history")
    logs = result["task_logs"]
    assert logs["status"] == "collected"
    assert [(t["run_id"], t["try_number"]) for t in logs["tries"]] == [
        ("scheduled__2026-11-20T12:00:00+00:00", 1),
        ("remediation_reprocess__stripe__13", 2),
    ]
    assert logs["tries"][1]["lines"][-1].startswith("RuntimeError: classification of cycle")
