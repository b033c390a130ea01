"""A local stand-in of Airflow 3.3's REST API for the routes the investigation reads (a real
HTTP server on 127.0.0.1), with the same paths, query parameters, authentication and JSON
shapes as the installed Airflow's:

- ``POST /auth/token`` — ``airflow/api_fastapi/auth/managers/simple/routes/login.py``
  ``create_token``: body ``LoginBody`` ``{"username", "password"}`` -> 201 ``LoginResponse``
  ``{"access_token"}``; bad credentials -> 401 ``{"detail": ...}``;
- ``GET /api/v2/dags/{dag_id}/dagRuns`` — ``core_api/routes/public/dag_run.py`` ``get_dag_runs``
  (``run_after_gte``, ``state``, ``limit``, ``offset``) -> ``DAGRunCollectionResponse``
  ``{"dag_runs": [DAGRunResponse], "total_entries"}``;
- ``GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`` — ``task_instances.py``
  ``get_task_instances`` -> ``TaskInstanceCollectionResponse``;
- ``GET .../taskInstances/{task_id}/{map_index}/tries`` (and ``.../{task_id}/tries``) —
  ``get_mapped_task_instance_tries`` -> ``TaskInstanceHistoryCollectionResponse``;
- ``GET .../taskInstances/{task_id}/logs/{try_number}?map_index=`` — ``log.py`` ``get_log`` ->
  ``TaskInstancesLogResponse`` ``{"content": [StructuredLogMessage], "continuation_token"}``;
  404 ``{"detail": "TaskInstance not found"}``.

Every object carries exactly the fields of the model's serialization schema
(``DAGRunResponse``, ``TaskInstanceResponse``, ``TaskInstanceHistoryResponse`` in
``airflow/api_fastapi/core_api/datamodels/``); ``test_stand_in_speaks_airflow_3_3`` checks it
against the installed Airflow. Every ``/api/v2`` request needs ``Authorization: Bearer <the
token it issued>`` (401 ``{"detail": "Not authenticated"}`` otherwise, as the api-server).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_recon_provider.devtools._json_server import JsonServer

DAG_ID = "billing_gateway_reconciliation"
_RUNS = re.compile(r"^/api/v2/dags/(?P<dag>[^/]+)/dagRuns$")
_TIS = re.compile(r"^/api/v2/dags/(?P<dag>[^/]+)/dagRuns/(?P<run>[^/]+)/taskInstances$")
_TRIES = re.compile(
    r"^/api/v2/dags/(?P<dag>[^/]+)/dagRuns/(?P<run>[^/]+)/taskInstances/(?P<task>[^/]+)(?:/(?P<mi>-?\d+))?/tries$"
)
_LOG = re.compile(
    r"^/api/v2/dags/(?P<dag>[^/]+)/dagRuns/(?P<run>[^/]+)/taskInstances/(?P<task>[^/]+)/logs/(?P<try>\d+)$"
)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def dag_run(run_id: str, *, cycle_start: datetime, state: str, conf: dict[str, Any] | None = None) -> dict:
    """A ``DAGRunResponse`` of the hourly DAG (scheduled: data interval = the cycle)."""
    end = cycle_start + timedelta(hours=1)
    scheduled = conf is None or not conf.get("cycle_start")
    return {
        "dag_run_id": run_id,
        "dag_id": DAG_ID,
        "logical_date": _iso(cycle_start) if scheduled else None,
        "queued_at": _iso(end),
        "start_date": _iso(end),
        "end_date": _iso(end + timedelta(minutes=2)),
        "duration": 120.0,
        "data_interval_start": _iso(cycle_start) if scheduled else None,
        "data_interval_end": _iso(end) if scheduled else None,
        "run_after": _iso(end),
        "last_scheduling_decision": _iso(end + timedelta(minutes=2)),
        "run_type": "scheduled" if scheduled else "manual",
        "state": state,
        "triggered_by": "timetable" if scheduled else "rest_api",
        "triggering_user_name": None,
        "conf": conf or {},
        "note": None,
        "dag_versions": [],
        "bundle_version": None,
        "dag_display_name": DAG_ID,
        "partition_key": None,
        "partition_date": None,
    }


def _ti_common(run: dict, task_id: str, map_index: int, try_number: int, state: str) -> dict:
    return {
        "task_id": task_id,
        "dag_id": DAG_ID,
        "dag_run_id": run["dag_run_id"],
        "map_index": map_index,
        "start_date": run["start_date"],
        "end_date": run["end_date"],
        "duration": 3.5,
        "state": state,
        "try_number": try_number,
        "max_tries": 0,
        "task_display_name": task_id,
        "dag_display_name": DAG_ID,
        "hostname": "worker-1",
        "unixname": "airflow",
        "pool": "default_pool",
        "pool_slots": 1,
        "queue": "default",
        "priority_weight": 1,
        "operator": "MatchTransactionsOperator"
        if task_id == "match_transactions"
        else "FetchPspStatementsOperator",
        "operator_name": None,
        "queued_when": run["queued_at"],
        "scheduled_when": run["queued_at"],
        "pid": 4242,
        "executor": None,
        "executor_config": "{}",
        "dag_version": None,
    }


def task_instance(
    run: dict, task_id: str, *, map_index: int, psp: str | None, state: str, try_number: int = 1
) -> dict:
    """A ``TaskInstanceResponse``."""
    return {
        **_ti_common(run, task_id, map_index, try_number, state),
        "id": str(uuid.uuid4()),
        "logical_date": run["logical_date"],
        "run_after": run["run_after"],
        "note": None,
        "rendered_map_index": psp,
        "rendered_fields": {},
        "trigger": None,
        "triggerer_job": None,
    }


def task_try(ti: dict, *, try_number: int, state: str) -> dict:
    """A ``TaskInstanceHistoryResponse`` (one try)."""
    run = {"dag_run_id": ti["dag_run_id"], "start_date": ti["start_date"], "end_date": ti["end_date"]}
    run["queued_at"] = ti["queued_when"]
    return _ti_common(run, ti["task_id"], ti["map_index"], try_number, state)


@dataclass
class AirflowApiStandIn(JsonServer):
    """The stand-in; fill ``runs``, ``task_instances``, ``tries`` and ``logs`` before use.

    :param users: login -> password accepted by ``POST /auth/token``.
    """

    users: dict[str, str] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    task_instances: dict[str, list[dict]] = field(default_factory=dict)
    tries: dict[tuple[str, str, int], list[dict]] = field(default_factory=dict)
    logs: dict[tuple[str, str, int, int], list[Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    name = "airflow-api-stand-in"

    def __post_init__(self) -> None:
        super().__init__()

    def _authorized(self, headers: Any) -> bool:
        value = headers.get("Authorization") or ""
        return value.startswith("Bearer ") and value[len("Bearer ") :] in self.issued

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any) -> Any:
        from urllib.parse import unquote

        with self.lock:
            self.requests.append((method, path, dict(query)))
        if method == "POST" and path == "/auth/token":
            try:
                login = json.loads(body or b"{}")
            except ValueError:
                return 400, {"detail": "Invalid JSON body"}
            if self.users.get(login.get("username")) != login.get("password") or not login.get("password"):
                return 401, {"detail": "Invalid credentials"}
            # a JWT-shaped token (header.payload.signature), as SimpleAuthManager issues
            token = f"eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ{uuid.uuid4().hex}.{uuid.uuid4().hex}{uuid.uuid4().hex}"
            self.issued.append(token)
            return 201, {"access_token": token}
        if method != "GET":
            return 405, {"detail": "Method Not Allowed"}
        if not self._authorized(headers):
            return 401, {"detail": "Not authenticated"}
        if match := _RUNS.match(path):
            runs = [r for r in self.runs if r["dag_id"] == unquote(match["dag"])]
            if after := query.get("run_after_gte"):
                bound = datetime.fromisoformat(after.replace("Z", "+00:00"))
                runs = [
                    r for r in runs if datetime.fromisoformat(r["run_after"].replace("Z", "+00:00")) >= bound
                ]
            if state := query.get("state"):
                runs = [r for r in runs if r["state"] == state]
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 50))
            return 200, {"dag_runs": runs[offset : offset + limit], "total_entries": len(runs)}
        if match := _TIS.match(path):
            tis = self.task_instances.get(unquote(match["run"]), [])
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 50))
            return 200, {"task_instances": tis[offset : offset + limit], "total_entries": len(tis)}
        if match := _TRIES.match(path):
            key = (unquote(match["run"]), unquote(match["task"]), int(match["mi"] or -1))
            if key not in self.tries:
                return 404, {"detail": f"The Task Instance with run_id: `{key[0]}` was not found"}
            items = self.tries[key]
            return 200, {"task_instances": items, "total_entries": len(items)}
        if match := _LOG.match(path):
            key = (
                unquote(match["run"]),
                unquote(match["task"]),
                int(query.get("map_index", -1)),
                int(match["try"]),
            )
            if key not in self.logs:
                return 404, {"detail": "TaskInstance not found"}
            return 200, {"content": self.logs[key], "continuation_token": None}
        return 404, {"detail": "Not Found"}

    def served(self, fragment: str) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if fragment in r[1]]


__all__ = ["DAG_ID", "AirflowApiStandIn", "dag_run", "task_instance", "task_try"]
