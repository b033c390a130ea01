"""Runbook, Investigação 2 — Checar Jobs: "Em caso de falha, coletar logs (`airflow tasks logs`)".

:func:`collect_failed_task_logs` is the investigation's (``ReconciliationSnapshotOperator``)
step for it: when cycles of the window failed (``payment_reconciliation_logs``, written by
``fetch_psp_statements`` / ``match_transactions``), it reads through Airflow's REST API
(:class:`~airflow_recon_provider.hooks.airflow_api.AirflowApiHook`, connection ``airflow_api``)
the ``billing_gateway_reconciliation`` runs of those cycles that failed, the PSP's failed tries
of the two tasks, and the end of each try's log; keeps its error lines (ERROR lines and the
traceback's last lines, bounded per try) with secrets masked — Airflow's own secrets masker
(``redact``, which knows every connection password this worker has read), the API
connection's password and token, and generic patterns (bearer tokens, JWTs, passwords in
URIs); publishes them as ``failed_task_logs_<psp>.md`` beside the snapshot in the artifact
store; and puts a short pt-BR outcome with the lines on the incident's timeline.

API unreachable, credentials refused or the connection missing: the timeline (and XCom) say
the logs could not be collected and why — no artifact then; the investigation carries on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.hooks.airflow_api import AirflowApiHook
    from airflow_recon_provider.reconciliation.task_logs import FailedTryLog
    from airflow_recon_provider.reconciliation.window import Window

#: the incident timeline's step of this collection
STEP = "investigation.task_logs"
#: the failed tries whose logs are read at most (a long outage: the latest ones)
MAX_TRIES = 20


def _redact(text: str) -> str:
    """``text`` through Airflow's secrets masker (the patterns of this process: connection
    passwords, variables with sensitive names, ``mask_secret`` calls)."""
    try:
        from airflow.sdk.log import redact  # re-exported by the Task SDK's logging module
    except ImportError:  # pragma: no cover - older task SDK
        from airflow.sdk._shared.secrets_masker import redact
    result = redact(text)
    return result if isinstance(result, str) else str(result)


def _mask(lines: Iterable[str], secrets: Iterable[str]) -> tuple[str, ...]:
    from airflow_recon_provider.reconciliation.task_logs import mask_secrets

    known = list(secrets)
    return tuple(mask_secrets(_redact(line), known) for line in lines)


def _failed_tries(
    api: AirflowApiHook, run: Mapping[str, Any], ti: Mapping[str, Any]
) -> list[tuple[int, str]]:
    """``(try_number, state)`` of the failed tries of one task instance: its current try when it
    failed, and the retried ones from its history."""
    from airflow_recon_provider.reconciliation.task_logs import (
        FAILED_TRY_STATES,
        RECONCILIATION_DAG_ID,
        AirflowApiRequestError,
    )

    state = str(ti.get("state") or "")
    try_number = int(ti.get("try_number") or 0)
    if try_number <= 1:
        return [(try_number, state)] if state in FAILED_TRY_STATES and try_number >= 1 else []
    try:
        history = api.task_tries(
            RECONCILIATION_DAG_ID, str(run["dag_run_id"]), str(ti["task_id"]), int(ti.get("map_index", -1))
        )
    except AirflowApiRequestError:
        # no history for this instance (cleared, or a site DAG without it): its current try only
        return [(try_number, state)] if state in FAILED_TRY_STATES else []
    found = {
        int(h["try_number"]): str(h.get("state") or "")
        for h in history
        if str(h.get("state") or "") in FAILED_TRY_STATES and h.get("try_number")
    }
    return sorted(found.items())


def _collect(
    api: AirflowApiHook,
    *,
    psp: str,
    window: Window,
    failed_cycles: tuple[datetime, ...],
    max_lines: int,
    log: Any,
) -> tuple[list[FailedTryLog], list[str]]:
    from airflow_recon_provider.reconciliation.task_logs import (
        RECONCILIATION_DAG_ID,
        FailedTryLog,
        extract_error_lines,
        runs_for_failed_cycles,
        task_instance_concerns_psp,
    )

    # a cycle's runs start once it ended (scheduled) or later (a reprocess)
    runs = api.dag_runs(
        RECONCILIATION_DAG_ID, run_after_gte=min(failed_cycles) - timedelta(hours=1), states=("failed",)
    )
    selected = runs_for_failed_cycles(runs, psp=psp, failed_cycles=failed_cycles)
    pending: list[tuple[datetime, Mapping[str, Any], Mapping[str, Any], int, str]] = []
    for cycle, run in selected:
        for ti in api.task_instances(RECONCILIATION_DAG_ID, str(run["dag_run_id"])):
            if not task_instance_concerns_psp(ti, psp, run):
                continue
            for try_number, state in _failed_tries(api, run, ti):
                pending.append((cycle, run, ti, try_number, state))
    if len(pending) > MAX_TRIES:
        log.warning("%d failed tries found; reading the logs of the latest %d", len(pending), MAX_TRIES)
        pending = pending[-MAX_TRIES:]
    tries: list[FailedTryLog] = []
    for cycle, run, ti, try_number, state in pending:
        run_id, task_id = str(run["dag_run_id"]), str(ti["task_id"])
        map_index = int(ti.get("map_index", -1))
        try:
            content = api.task_log(RECONCILIATION_DAG_ID, run_id, task_id, try_number, map_index=map_index)
            lines = _mask(extract_error_lines(content, max_lines=max_lines), api.secrets())
            error = None
        except Exception as exc:  # one unreadable log does not hide the others
            lines, error = (), _mask([f"{type(exc).__name__}: {exc}"], api.secrets())[0]
            log.warning("log of %s try %d in %s not read: %s", task_id, try_number, run_id, error)
        tries.append(
            FailedTryLog(
                cycle_start=cycle,
                run_id=run_id,
                task_id=task_id,
                map_index=map_index,
                try_number=try_number,
                state=state,
                lines=lines,
                error=error,
            )
        )
    return tries, [str(run["dag_run_id"]) for _, run in selected]


def collect_failed_task_logs(
    context: Context,
    *,
    psp: str,
    window: Window,
    failed_cycles: Iterable[datetime],
    incident_id: str | None,
    airflow_api_conn_id: str = "airflow_api",
    billing_gateway_conn_id: str = "billing_gateway_db",
    artifacts_base_url: str | None = None,
    max_lines: int = 20,
    log: Any,
    api: AirflowApiHook | None = None,
) -> dict[str, Any]:
    """Collect the error lines of the failed tries of ``fetch_psp_statements`` /
    ``match_transactions`` for ``psp``'s ``failed_cycles`` into ``failed_task_logs_<psp>.md`` and
    onto the incident's timeline; never raises for the API (unreachable, refused, connection
    missing: recorded as such).

    :param psp: the PSP (already validated).
    :param window: the investigated window (for the artifact's header).
    :param failed_cycles: starts of the window's cycles recorded as ``failed``; none: nothing
        is collected (``status`` ``no_failed_cycles``), nothing published or recorded.
    :param incident_id: the incident whose timeline gets the outcome; ``None``: no event.
    :param airflow_api_conn_id: the api-server's HTTP connection.
    :param billing_gateway_conn_id: the gateway database (``recon.artifacts``, the timeline).
    :param artifacts_base_url: another artifact store base than the configured one.
    :param max_lines: error lines kept per try.
    :param log: the task's logger.
    :param api: a hook to use instead of building one (its connection id wins).
    :returns: (XCom) :meth:`TaskLogsCollection.as_dict` plus ``artifact`` (its summary, ``None``
        when nothing was collected) and ``outcome`` (the timeline's text);
        ``{"status": "no_failed_cycles", ...}`` without failed cycles.
    """
    from airflow_recon_provider.artifacts import publish_artifact
    from airflow_recon_provider.hooks.airflow_api import AirflowApiHook
    from airflow_recon_provider.reconciliation.errors import ConnectionMissingError
    from airflow_recon_provider.reconciliation.task_logs import (
        AirflowApiUnavailableError,
        TaskLogsCollection,
        TaskLogsError,
        describe_outcome,
        render_markdown,
    )

    cycles = tuple(sorted(set(failed_cycles)))
    if not cycles:
        return {"psp": psp, "status": "no_failed_cycles", "failed_cycles": [], "tries": []}
    api = api or AirflowApiHook(airflow_api_conn_id)
    conn_id = api.airflow_api_conn_id
    status, reason, tries, runs = "collected", None, [], []
    try:
        tries, runs = _collect(
            api, psp=psp, window=window, failed_cycles=cycles, max_lines=max_lines, log=log
        )
    except ConnectionMissingError as exc:
        status, reason = "not_configured", f"conexão {conn_id!r} não configurada ({exc})"
    except (TaskLogsError, AirflowApiUnavailableError) as exc:
        status, reason = "unavailable", f"API do Airflow indisponível ou recusou: {exc}"
    except Exception as exc:  # the investigation carries on whatever the API did
        status, reason = "unavailable", f"API do Airflow: {type(exc).__name__}: {exc}"
    finally:
        api.close()
    if reason is not None:
        reason = _mask([reason], api.secrets())[0]
        log.warning("failed task logs of PSP %s not collected: %s", psp, reason)
    collection = TaskLogsCollection(
        psp=psp,
        failed_cycles=cycles,
        status=status,
        tries=tuple(tries),
        runs=tuple(runs),
        reason=reason,
        conn_id=conn_id,
    )
    from airflow_recon_provider.i18n import language_scope

    artifact = None
    if collection.collected:
        # beside the snapshot (kind snapshot): what on-call would have read with `airflow tasks logs`
        with language_scope():
            markdown = render_markdown(collection, window=str(window))
        artifact = publish_artifact(
            context,
            kind="snapshot",
            name=f"failed_task_logs_{psp}.md",
            source=markdown.encode(),
            psp=psp,
            incident_id=incident_id,
            base_url=artifacts_base_url,
            billing_gateway_conn_id=billing_gateway_conn_id,
            keep_retries=True,
        )
    with language_scope():  # the timeline keeps the words in [recon] language
        outcome = describe_outcome(collection, link=artifact.link if artifact else None)
    log.info("%s", outcome)
    result = {
        **collection.as_dict(),
        "artifact": artifact.summary() if artifact else None,
        "outcome": outcome,
    }
    if incident_id:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.operators._context import run_actor, run_id_of

        IncidentHook(billing_gateway_conn_id=billing_gateway_conn_id).record_event(
            incident_id,
            step=STEP,
            outcome=outcome,
            actor=run_actor(context),
            run_id=run_id_of(context),
            details={
                "status": status,
                "reason": reason,
                "connection": conn_id,
                "failed_cycles": result["failed_cycles"],
                "artifact": result["artifact"],
                "tries": result["tries"],
            },
        )
    return result


__all__ = ["MAX_TRIES", "STEP", "collect_failed_task_logs"]
