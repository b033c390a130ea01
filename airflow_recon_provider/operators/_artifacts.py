"""Operators write an artifact of the running task: the bytes to the store
(:class:`~airflow_recon_provider.artifacts.ArtifactStore`), the record to ``recon.artifacts``
(:class:`~airflow_recon_provider.hooks.artifacts.ArtifactsHook`), the link to XCom."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from airflow_recon_provider.artifacts import (
    KINDS,
    ArtifactConflictError,
    ArtifactError,
    ArtifactRecord,
    ArtifactStore,
    content_type_of,
    safe_name,
)
from airflow_recon_provider.hooks.artifacts import ArtifactsHook
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context


def _task_ids(context: Context) -> tuple[str, str, str, int]:
    ti = context["ti"]
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    run_id = getattr(ti, "run_id", None) or context.get("run_id")
    task_id = getattr(ti, "task_id", None) or "unknown"
    map_index = getattr(ti, "map_index", -1)
    if map_index not in (-1, None):
        task_id = f"{task_id}[{map_index}]"
    try:
        try_number = int(getattr(ti, "try_number", 1) or 1)
    except (TypeError, ValueError):
        try_number = 1
    if not dag_id or not run_id:
        raise ArtifactError("an artifact belongs to a DAG run: the task context has no dag_id / run_id")
    return str(dag_id), str(run_id), str(task_id), try_number


def _retry_name(name: str, try_number: int) -> str:
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        return f"{name}.try{try_number}"
    return f"{stem}.try{try_number}.{suffix}"


def publish_artifact(
    context: Context,
    *,
    kind: str,
    name: str,
    source: bytes | str | os.PathLike[str],
    psp: str | None = None,
    incident_id: str | None = None,
    content_type: str | None = None,
    base_url: str | os.PathLike[str] | None = None,
    billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
    keep_retries: bool = False,
) -> ArtifactRecord:
    """Write an artifact of the running task to the store and record it in
    ``recon.artifacts``; return the record (``record.summary()`` is what XCom carries).

    :param kind: one of :data:`KINDS`.
    :param name: the file name (made path-safe), unique within the DAG run.
    :param source: the bytes, or a local file of this task to copy (e.g. a CSV streamed
        to a temporary file); the caller removes its temporary file.
    :param base_url: another base than the configured one (an operator's override).
    :param keep_retries: the content is a fresh observation (a snapshot, a report stamped
        with its generation time): when a previous try stored other bytes under ``name``,
        keep them and store this try's as ``<stem>.try<N>.<suffix>``. Otherwise other bytes
        are an :class:`ArtifactConflictError`.
    """
    if kind not in KINDS:
        raise ArtifactError(f"artifact kind {kind!r} must be one of {', '.join(KINDS)}")
    dag_id, run_id, task_id, try_number = _task_ids(context)
    store = ArtifactStore(base_url)
    name = safe_name(name)
    try:
        stored = store.put(dag_id, run_id, name, source)
    except ArtifactConflictError:
        if not keep_retries:
            raise
        name = _retry_name(name, try_number)
        stored = store.put(dag_id, run_id, name, source)
    return ArtifactsHook(billing_gateway_conn_id=billing_gateway_conn_id).record(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        psp=psp or None,
        incident_id=incident_id or None,
        kind=kind,
        name=name,
        url=stored.url,
        conn_id=store.conn_id,
        content_type=content_type or content_type_of(name),
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
    )


__all__ = ["publish_artifact"]
