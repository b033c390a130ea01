"""Hook on ``recon.artifacts`` (migration 7) in the gateway database (``billing_gateway_db``,
always the primary): one row per artifact written to the object store — which run and task
wrote it, for which PSP and incident, its kind, name, storage URL, size and SHA-256.

Operators record through :func:`airflow_recon_provider.operators._artifacts.publish_artifact` right
after the object is written; the dashboard lists a run's or an incident's artifacts here and
opens one with :func:`airflow_recon_provider.artifacts.open_artifact`. The ``recon`` schema
has fixed names (the provider owns it), so the SQL is plain text with bound values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_recon_provider.artifacts import (
    KINDS,
    ArtifactConflictError,
    ArtifactError,
    ArtifactNotFoundError,
    ArtifactRecord,
)
from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.reconciliation.config import ReconConfig

#: the columns of ``recon.artifacts``, in :class:`ArtifactRecord` order
COLUMNS = (
    "id, dag_id, run_id, task_id, psp, incident_id, kind, name, url, conn_id, content_type,"
    " size_bytes, sha256, created_at"
)


def _record(row: Sequence[Any]) -> ArtifactRecord:
    (aid, dag_id, run_id, task_id, psp, incident_id, kind, name, url, conn_id, ctype, size, sha, at) = row
    return ArtifactRecord(
        id=int(aid),
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        psp=psp,
        incident_id=incident_id,
        kind=kind,
        name=name,
        url=url,
        conn_id=conn_id,
        content_type=ctype,
        size_bytes=int(size),
        sha256=sha,
        created_at=at,
    )


class ArtifactsHook(ReconPostgresHook):
    """Record and find artifacts in ``recon.artifacts``.

    :param billing_gateway_conn_id: Airflow connection of the gateway database (the ``recon``
        schema lives there).
    """

    conn_name_attr = "billing_gateway_conn_id"
    default_conn_name = BILLING_GATEWAY_CONN_ID
    conn_type = "billing_gateway"
    hook_name = "Billing Gateway artifacts (PostgreSQL)"

    def __init__(self, *args: Any, billing_gateway_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        # no table mapping or PSP is needed here: never fail on RECON_CONFIG (the api-server)
        kwargs.setdefault("config", ReconConfig())
        super().__init__(*args, **kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def record(
        self,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        kind: str,
        name: str,
        url: str,
        content_type: str,
        size_bytes: int,
        sha256: str,
        psp: str | None = None,
        incident_id: str | None = None,
        conn_id: str | None = None,
    ) -> ArtifactRecord:
        """Record an artifact just written; return its row.

        Once per ``(dag_id, run_id, name)``: the same name with the same SHA-256 (a retried
        task) returns the existing row; another SHA-256 is an :class:`ArtifactConflictError`.
        """
        if kind not in KINDS:
            raise ArtifactError(f"artifact kind {kind!r} must be one of {', '.join(KINDS)}")
        with self.connect() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO recon.artifacts (dag_id, run_id, task_id, psp, incident_id, kind, name, url,"
                " conn_id, content_type, size_bytes, sha256)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (dag_id, run_id, name) DO NOTHING RETURNING {COLUMNS}",
                (
                    dag_id,
                    run_id,
                    task_id,
                    psp,
                    incident_id,
                    kind,
                    name,
                    url,
                    conn_id,
                    content_type,
                    int(size_bytes),
                    sha256,
                ),
            ).fetchone()
            if row is not None:
                return _record(row)
            existing = conn.execute(
                f"SELECT {COLUMNS} FROM recon.artifacts WHERE dag_id = %s AND run_id = %s AND name = %s",
                (dag_id, run_id, name),
            ).fetchone()
        if existing is None:  # pragma: no cover - deleted in between
            raise ArtifactError(f"artifact {name} of {dag_id} / {run_id} vanished while being recorded")
        found = _record(existing)
        if found.sha256 != sha256:
            raise ArtifactConflictError(
                f"artifact {name} of {dag_id} / {run_id} is already recorded with other content "
                f"(sha256 {found.sha256[:12]}…, new {sha256[:12]}…): evidence is never overwritten"
            )
        if found.incident_id is None and incident_id:
            with self.connect() as conn:
                conn.execute(
                    "UPDATE recon.artifacts SET incident_id = %s WHERE id = %s AND incident_id IS NULL",
                    (incident_id, found.id),
                )
            return self.get(found.id)
        return found

    def get(self, artifact_id: int) -> ArtifactRecord:
        """The artifact ``artifact_id`` (:class:`ArtifactNotFoundError` when there is none)."""
        with self.connect(autocommit=True) as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM recon.artifacts WHERE id = %s", (int(artifact_id),)
            ).fetchone()
        if row is None:
            raise ArtifactNotFoundError(f"artifact {artifact_id} does not exist")
        return _record(row)

    def find(self, dag_id: str, run_id: str, name: str) -> ArtifactRecord | None:
        with self.connect(autocommit=True) as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM recon.artifacts WHERE dag_id = %s AND run_id = %s AND name = %s",
                (dag_id, run_id, name),
            ).fetchone()
        return None if row is None else _record(row)

    def for_run(self, dag_id: str, run_id: str) -> list[ArtifactRecord]:
        """The DAG run's artifacts, oldest first."""
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM recon.artifacts WHERE dag_id = %s AND run_id = %s ORDER BY id",
                (dag_id, run_id),
            ).fetchall()
        return [_record(r) for r in rows]

    def for_incident(self, incident_id: str, *, kind: str | None = None) -> list[ArtifactRecord]:
        """The incident's artifacts (of ``kind`` when given), oldest first."""
        query = f"SELECT {COLUMNS} FROM recon.artifacts WHERE incident_id = %s"
        params: list[Any] = [incident_id]
        if kind is not None:
            query += " AND kind = %s"
            params.append(kind)
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [_record(r) for r in rows]

    def latest(self, incident_id: str, kind: str) -> ArtifactRecord | None:
        """The incident's newest artifact of ``kind``."""
        found = self.for_incident(incident_id, kind=kind)
        return found[-1] if found else None


__all__ = ["COLUMNS", "ArtifactsHook"]
