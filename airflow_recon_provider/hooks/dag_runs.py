"""Trigger and follow DAG runs from inside a task or a trigger, the Airflow 3 way.

Airflow 3 tasks and triggers have no metadata-database access: they talk to the API
server through their supervisor (the Task SDK "execution API"). This module is the one
place the provider does that for DAG runs:

- :func:`trigger_dag_run` sends the very message ``TriggerDagRunOperator`` ends up sending:
  the operator raises ``DagRunTriggerException``, the task runner turns it into a
  ``TriggerDagRun`` request to the supervisor, which calls
  ``POST /execution/dag-runs/{dag_id}/{run_id}``. The exception carries one run and ends
  the task, so a task that triggers one run per cycle and then waits sends the request
  itself; a run id that already exists comes back as ``DAGRUN_ALREADY_EXISTS`` (HTTP 409),
  which is what makes a retry safe.
- :func:`read_run_states` and :func:`dag_run_state` use the public
  ``RuntimeTaskInstance.get_dagrun_state``, ``get_dr_count`` and ``get_task_states``
  helpers (available to triggers in the triggerer as well; Airflow's own
  ``DagStateTrigger`` relies on them).

The message classes are internal to the Task SDK (``airflow.sdk.execution_time.comms``);
the package pins ``apache-airflow<3.4`` and the reprocess tests exercise this path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow_recon_provider.reconciliation.errors import ReprocessError


def _value(state: Any) -> str | None:
    """A state enum or string as its plain string value."""
    if state is None:
        return None
    return str(getattr(state, "value", state))


def _supervisor_comms() -> Any:
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        raise ReprocessError(
            "DAG runs can only be triggered from a running Airflow task (no Task SDK supervisor here)"
        )
    return comms


def trigger_dag_run(
    dag_id: str,
    run_id: str,
    *,
    conf: dict[str, Any] | None = None,
    note: str | None = None,
) -> bool:
    """Create the DAG run ``run_id`` of ``dag_id`` (queued, no logical date).

    :returns: ``True`` when the run was created, ``False`` when a run with this id already
        existed (it is left as it is).
    :raises ReprocessError: the API server refused (unknown DAG, DAG with import errors,
        conf rejected by the DAG's params, ...).
    """
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun

    comms = _supervisor_comms()
    request = TriggerDagRun(dag_id=dag_id, run_id=run_id, conf=conf or {}, logical_date=None, note=note)
    try:
        response = comms.send(request)
    except AirflowRuntimeError as exc:  # the supervisor relays API errors this way
        raise ReprocessError(f"could not trigger {dag_id} run {run_id}: {_api_error(exc)}") from None
    except Exception as exc:  # in-process supervisors (dag.test) raise the client's error as is
        raise ReprocessError(
            f"could not trigger {dag_id} run {run_id}: {type(exc).__name__}: {_api_error(exc)}"
        ) from None
    if isinstance(response, ErrorResponse):
        if response.error == ErrorType.DAGRUN_ALREADY_EXISTS:
            return False
        raise ReprocessError(
            f"could not trigger {dag_id} run {run_id}: {response.error.value} {response.detail or ''}".strip()
        )
    return True


def _api_error(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    detail = getattr(error, "detail", None) or getattr(exc, "detail", None)
    if isinstance(detail, dict):
        inner = detail.get("detail", detail)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        return str(inner)
    return str(detail or exc)


def dag_is_paused(dag_id: str) -> bool | None:
    """Whether ``dag_id`` is paused in Airflow; ``None`` when it cannot be told."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        return bool(RuntimeTaskInstance.get_dag(dag_id).is_paused)
    except Exception:
        return None


def dag_run_state(dag_id: str, run_id: str) -> str | None:
    """The Airflow state of run ``run_id`` of ``dag_id`` (``queued``, ``running``,
    ``success``, ``failed``), ``None`` when there is no such run (deleted, or never created).

    Through the Task SDK (``get_dr_count``, ``get_dagrun_state``), so it works inside a task
    on any worker and under ``dag.test()``; errors (an unreachable API server, no Task SDK
    supervisor) propagate.
    """
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    if getattr(task_runner, "SUPERVISOR_COMMS", None) is None:
        raise RuntimeError(
            f"the state of {dag_id} run {run_id} can only be read from a running Airflow task "
            "(no Task SDK supervisor here)"
        )
    if not RuntimeTaskInstance.get_dr_count(dag_id=dag_id, run_ids=[run_id]):
        return None
    return _value(RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id))


def read_run_states(
    dag_id: str, run_ids: Iterable[str], *, verify_task_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """States of the runs ``run_ids`` of ``dag_id``: ``{run_id: {"state", "verify_task_states"}}``.

    ``verify_task_states`` lists the states of ``verify_task_id`` (every map index) in runs
    that succeeded, ``None`` otherwise or when no task is verified. Errors (an unknown run,
    an unreachable API server) propagate.
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    run_ids = list(run_ids)
    states = {
        run_id: _value(RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id))
        for run_id in run_ids
    }
    succeeded = [run_id for run_id, state in states.items() if state == "success"]
    verified: dict[str, list[str]] = {}
    if verify_task_id and succeeded:
        task_states = RuntimeTaskInstance.get_task_states(
            dag_id=dag_id, task_ids=[verify_task_id], run_ids=succeeded
        )
        for run_id in succeeded:
            by_task = task_states.get(run_id) or {}
            verified[run_id] = [
                _value(state) or "none"
                for key, state in sorted(by_task.items())
                if key == verify_task_id
                or (key.startswith(f"{verify_task_id}_") and key[len(verify_task_id) + 1 :].isdigit())
            ]
    return {
        run_id: {"state": state, "verify_task_states": verified.get(run_id) if verify_task_id else None}
        for run_id, state in states.items()
    }


__all__ = ["dag_is_paused", "dag_run_state", "read_run_states", "trigger_dag_run"]
