"""Hook on Airflow's own REST API (connection ``airflow_api``), for the runbook's Investigação 2
— Checar Jobs: "Em caso de falha, coletar logs (`airflow tasks logs`)".

Airflow 3 tasks have no metadata-database access; the api-server's public REST API is how a
task reads other runs' task instances and logs. The connection is an HTTP connection to the
api-server (host = its base URL, e.g. ``http://airflow-api-server:8080``) with either:

- login and password of an Airflow user: the hook asks ``POST /auth/token``
  (``{"username", "password"}`` -> ``{"access_token"}``, Airflow 3.3's auth token route) for a
  JWT once per hook; or
- no login and a token in the password: sent as it is (``Authorization: Bearer <token>``).

Routes used (Airflow 3.3, ``airflow/api_fastapi/core_api/routes/public/``):

- ``GET /api/v2/dags/{dag_id}/dagRuns`` (``dag_run.py`` ``get_dag_runs``; ``run_after_gte``,
  ``state``, ``limit``, ``offset``, ``order_by``) -> ``DAGRunCollectionResponse``;
- ``GET``/``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`` (``dag_run.py`` ``get_dag_run``,
  ``patch_dag_run`` with ``update_mask=note``: the run's note);
- ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances`` (``task_instances.py``
  ``get_task_instances``) -> ``TaskInstanceCollectionResponse``;
- ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries``
  (``get_mapped_task_instance_tries``; ``.../{task_id}/tries`` unmapped) ->
  ``TaskInstanceHistoryCollectionResponse``;
- ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}``
  (``log.py`` ``get_log``; ``map_index``, ``full_content``; ``Accept: application/json``) ->
  ``TaskInstancesLogResponse`` ``{"content": [...], "continuation_token"}``.

The password and the JWT are masked in Airflow's logs (``mask_secret``), never put in an error
message, and handed to the caller (:meth:`AirflowApiHook.secrets`) so that it can mask them in
whatever it publishes. Failures: unreachable, timeout, 5xx, 429 retried a bounded number of
times then :class:`AirflowApiUnavailableError`; another 4xx (401 bad credentials, 403, 404)
:class:`AirflowApiRequestError` at once; connection not defined
:class:`~airflow_recon_provider.reconciliation.errors.ConnectionMissingError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_recon_provider.hooks._connections import check_header_extras, is_missing_connection
from airflow_recon_provider.hooks._http import BearerToken, iso, send_with_retries, setting
from airflow_recon_provider.names import AIRFLOW_API_CONN_ID
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError
from airflow_recon_provider.reconciliation.task_logs import AirflowApiRequestError, AirflowApiUnavailableError

_CREDENTIALS_HINT = "; check the login/password (or the token in the password) of the connection"
_HINTS = {
    401: _CREDENTIALS_HINT,
    403: "; the connection's user may not read these DAG runs / task logs",
    404: "; check the host (the api-server's base URL) of the connection, or the run is gone",
}
#: pages of 100 runs read at most (a window is at most days long: hourly runs)
MAX_RUN_PAGES = 10
PAGE_SIZE = 100
#: ``DAGRunPatchBody.note``'s ``max_length`` (Airflow 3.3)
RUN_NOTE_MAX = 1000


def _segment(value: str) -> str:
    """One path segment (run ids carry ``:`` and ``+``)."""
    return quote(str(value), safe="")


class AirflowApiHook(HttpHook):
    """Read DAG runs, task instances, their tries and logs through Airflow's REST API.

    :param airflow_api_conn_id: the HTTP connection of the api-server (host = base URL;
        login/password of a user -> JWT from ``POST /auth/token``, or no login and a token in
        the password).
    :param timeout: seconds to connect and to answer, per attempt.
    :param max_attempts: attempts per request while the API is unavailable, at least 1.
    :param backoff_seconds: first wait between attempts; doubles on each retry.
    :param max_backoff_seconds: longest wait between attempts.
    """

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = AIRFLOW_API_CONN_ID
    conn_type = "http"
    hook_name = "Airflow REST API"

    #: how the hook waits between attempts (tests replace it to record the waits)
    _sleep = staticmethod(time.sleep)

    def __init__(
        self,
        airflow_api_conn_id: str = default_conn_name,
        *,
        timeout: float = 15.0,
        max_attempts: int = 3,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        self.timeout = float(setting(timeout, "timeout"))
        self.max_attempts = int(setting(max_attempts, "max_attempts", integer=True))
        self.backoff_seconds = float(setting(backoff_seconds, "backoff_seconds", zero=True))
        self.max_backoff_seconds = float(setting(max_backoff_seconds, "max_backoff_seconds", zero=True))
        super().__init__(method="GET", http_conn_id=airflow_api_conn_id, auth_type=None, **kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id
        self._http: requests.Session | None = None
        self._secrets: list[str] = []

    # -- connection and token ----------------------------------------------------------------
    def _extract_auth(self, connection: Any) -> Any | None:
        # the session carries no auth of HttpHook's own: the bearer token is set in _session
        return None

    def _configure_session_from_extra(
        self, session: Any, connection: Any, extra_options: dict[str, Any]
    ) -> Any:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        check_header_extras(session.headers, connection.conn_id)
        return session

    @property
    def where(self) -> str:
        return f"Airflow API {self.base_url or '?'} (connection {self.airflow_api_conn_id})"

    def _remember(self, secret: str | None) -> None:
        if not secret:
            return
        from airflow.sdk.log import mask_secret

        mask_secret(secret)  # a connection password is masked already; a fresh JWT is not
        if secret not in self._secrets:
            self._secrets.append(secret)

    def secrets(self) -> list[str]:
        """The password and token this hook used (to mask them in what is published)."""
        return list(self._secrets)

    def _session(self) -> requests.Session:
        if self._http is not None:
            return self._http
        try:
            session = self.get_conn(headers={"Accept": "application/json"})
            connection = self.get_connection(self.airflow_api_conn_id)
        except Exception as exc:
            if is_missing_connection(exc):
                conn_id = self.airflow_api_conn_id
                raise ConnectionMissingError(
                    f"Airflow connection {conn_id!r} is not defined; create it (type http, host = "
                    "the api-server's URL, login/password of an Airflow user or a token in the "
                    f"password) or set AIRFLOW_CONN_{conn_id.upper()}"
                ) from None
            raise
        if not self.base_url:
            raise ConnectionMissingError(
                f"Airflow connection {self.airflow_api_conn_id!r} has no host: set the api-server's "
                "base URL (e.g. http://airflow-api-server:8080)"
            )
        password = connection.password or ""
        self._remember(password)
        if connection.login:
            token = self._login(session, connection.login, password)
        elif password:
            token = password
        else:
            raise ConnectionMissingError(
                f"Airflow connection {self.airflow_api_conn_id!r} has neither login/password nor a "
                "token in the password: the API needs credentials"
            )
        session.auth = BearerToken(token)
        self._http = session
        return session

    def _login(self, session: requests.Session, login: str, password: str) -> str:
        """A JWT for ``login`` from ``POST /auth/token`` (Airflow 3.3's auth token route)."""
        prepared = session.prepare_request(
            requests.Request(
                "POST", self.url_from_endpoint("auth/token"), json={"username": login, "password": password}
            )
        )
        response = self._send(session, prepared, what=f"a token for user {login!r} (POST /auth/token)")
        try:
            token = response.json().get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token or not isinstance(token, str):
            raise AirflowApiRequestError(
                f"{self.where} answered POST /auth/token without an access_token",
                status_code=response.status_code,
            )
        self._remember(token)
        return token

    def _send(
        self, session: requests.Session, prepared: requests.PreparedRequest, *, what: str
    ) -> requests.Response:
        return send_with_retries(
            self,
            session,
            prepared,
            where=self.where,
            what=what,
            unavailable=AirflowApiUnavailableError,
            refused=AirflowApiRequestError,
            hints=_HINTS,
            timeout=self.timeout,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds,
            sleep=self._sleep,
        )

    def get_json(self, endpoint: str, params: Mapping[str, Any] | None = None, *, what: str) -> Any:
        """``GET <base>/<endpoint>`` with ``params``; the decoded JSON body."""
        session = self._session()
        prepared = session.prepare_request(
            requests.Request("GET", self.url_from_endpoint(endpoint), params=dict(params or {}))
        )
        response = self._send(session, prepared, what=what)
        try:
            return json.loads(response.content)
        except ValueError:
            raise AirflowApiRequestError(
                f"{self.where} answered {what} with a body that is not JSON", status_code=response.status_code
            ) from None

    def patch_json(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
        *,
        what: str,
    ) -> Any:
        """``PATCH <base>/<endpoint>`` with a JSON ``body``; the decoded JSON body."""
        session = self._session()
        prepared = session.prepare_request(
            requests.Request(
                "PATCH", self.url_from_endpoint(endpoint), params=dict(params or {}), json=dict(body)
            )
        )
        response = self._send(session, prepared, what=what)
        try:
            return json.loads(response.content)
        except ValueError:
            raise AirflowApiRequestError(
                f"{self.where} answered {what} with a body that is not JSON", status_code=response.status_code
            ) from None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- the routes --------------------------------------------------------------------------
    def dag_runs(
        self, dag_id: str, *, run_after_gte: datetime, states: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Runs of ``dag_id`` that ran after ``run_after_gte`` (``DAGRunResponse`` dicts), in
        ``run_after`` order, at most :data:`MAX_RUN_PAGES` pages."""
        runs: list[dict[str, Any]] = []
        for page in range(MAX_RUN_PAGES):
            params: dict[str, Any] = {
                "run_after_gte": iso(run_after_gte),
                "order_by": "run_after",
                "limit": PAGE_SIZE,
                "offset": page * PAGE_SIZE,
            }
            if states:
                params["state"] = list(states)
            body = self.get_json(
                f"api/v2/dags/{_segment(dag_id)}/dagRuns", params, what=f"the runs of {dag_id}"
            )
            batch = list(_items(body, "dag_runs", self.where))
            runs.extend(batch)
            total = body.get("total_entries")
            if len(batch) < PAGE_SIZE or (isinstance(total, int) and len(runs) >= total):
                break
        return runs

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One run (``DAGRunResponse``)."""
        body = self.get_json(
            f"api/v2/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}", what=f"run {run_id} of {dag_id}"
        )
        return dict(body) if isinstance(body, Mapping) else {}

    def set_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Replace the note of a run (``PATCH .../dagRuns/{run_id}?update_mask=note``; Airflow
        keeps at most :data:`RUN_NOTE_MAX` characters). Airflow 3's Task SDK has no call for
        it: the REST API is how a task writes the note people see on the run's page."""
        self.patch_json(
            f"api/v2/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}",
            {"note": note[:RUN_NOTE_MAX]},
            {"update_mask": "note"},
            what=f"the note of run {run_id} of {dag_id}",
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of one run (``TaskInstanceResponse`` dicts)."""
        instances: list[dict[str, Any]] = []
        for page in range(MAX_RUN_PAGES):
            body = self.get_json(
                f"api/v2/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}/taskInstances",
                {"limit": PAGE_SIZE, "offset": page * PAGE_SIZE},
                what=f"the task instances of {dag_id} run {run_id}",
            )
            batch = list(_items(body, "task_instances", self.where))
            instances.extend(batch)
            if len(batch) < PAGE_SIZE:
                break
        return instances

    def task_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance (``TaskInstanceHistoryResponse`` dicts)."""
        base = f"api/v2/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}/taskInstances/{_segment(task_id)}"
        endpoint = f"{base}/{int(map_index)}/tries" if map_index >= 0 else f"{base}/tries"
        body = self.get_json(endpoint, what=f"the tries of {task_id} in {dag_id} run {run_id}")
        return list(_items(body, "task_instances", self.where))

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, *, map_index: int = -1
    ) -> list[Any]:
        """The whole log of one try (``TaskInstancesLogResponse.content``: structured messages or
        text lines)."""
        endpoint = (
            f"api/v2/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}/taskInstances/"
            f"{_segment(task_id)}/logs/{int(try_number)}"
        )
        body = self.get_json(
            endpoint,
            {"map_index": int(map_index), "full_content": "true"},
            what=f"the log of {task_id} try {try_number} in {dag_id} run {run_id}",
        )
        content = body.get("content") if isinstance(body, Mapping) else None
        if not isinstance(content, list):
            raise AirflowApiRequestError(f"{self.where} answered a log without a content list")
        return content


def _items(body: Any, key: str, where: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        raise AirflowApiRequestError(f"{where} answered without a {key!r} list")
    return [item for item in items if isinstance(item, dict)]


__all__ = ["AirflowApiHook"]
