"""Artifacts recorded in recon.artifacts (migration 7) on a real PostgreSQL: publish writes
the object then records it once; a retry with the same bytes reuses the row; other bytes
are refused, or kept beside the first try's for fresh observations; the dashboard's reads
(by id, run, incident) and the open function."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import psycopg
import pytest

from airflow_recon_provider.artifacts import (
    ArtifactConflictError,
    ArtifactError,
    ArtifactNotFoundError,
    open_artifact,
    read_bytes,
)
from airflow_recon_provider.hooks.artifacts import ArtifactsHook
from airflow_recon_provider.operators._artifacts import publish_artifact

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-20T12:30:00+00:00"


def context(task_id: str = "snapshot", try_number: int = 1, run_id: str = RUN_ID) -> dict:
    ti = SimpleNamespace(
        dag_id="billing_gateway_remediation",
        run_id=run_id,
        task_id=task_id,
        map_index=-1,
        try_number=try_number,
    )
    return {"ti": ti, "run_id": run_id}


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__RECON__ARTIFACTS_BASE_URL", f"file://{tmp_path}/store")
    monkeypatch.setenv("AIRFLOW__RECON__DASHBOARD_BASE_URL", "https://airflow.example.com/recon")
    return tmp_path / "store"


def test_migration_7_creates_the_table(db):
    (version,) = db.execute("SELECT max(version) FROM recon.schema_migrations WHERE version = 7").fetchone()
    assert version == 7
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO recon.artifacts (dag_id, run_id, task_id, kind, name, url, content_type, size_bytes,"
            " sha256) VALUES ('d', 'r', 't', 'holiday_photos', 'n', 'file:///x', 'text/csv', 1, %s)",
            ("0" * 64,),
        )
    indexes = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'artifacts'")}
    assert {"artifacts_by_incident", "artifacts_by_run", "artifacts_once"} <= indexes


def test_publish_writes_then_records_once(db, airflow_conns, base):
    record = publish_artifact(
        context(),
        kind="snapshot",
        name="snapshot_stripe.csv",
        source=b"a\n1\n",
        psp="stripe",
        incident_id="INCIDENT-9",
    )
    assert record.link == f"https://airflow.example.com/recon/artifacts/{record.id}"
    assert record.url.startswith(f"file://{base}/billing_gateway_remediation/")
    assert (record.kind, record.psp, record.incident_id, record.task_id) == (
        "snapshot",
        "stripe",
        "INCIDENT-9",
        "snapshot",
    )
    assert record.content_type.startswith("text/csv")
    assert record.sha256 == hashlib.sha256(b"a\n1\n").hexdigest() and record.size_bytes == 4
    summary = record.summary()
    assert "url" not in summary and str(base) not in str(summary) and "file://" not in str(summary)

    again = publish_artifact(
        context(try_number=2), kind="snapshot", name="snapshot_stripe.csv", source=b"a\n1\n"
    )
    assert again.id == record.id
    with pytest.raises(ArtifactConflictError):
        publish_artifact(context(try_number=2), kind="snapshot", name="snapshot_stripe.csv", source=b"a\n2\n")
    assert read_bytes(record) == b"a\n1\n"

    hook = ArtifactsHook()
    assert hook.get(record.id) == record
    assert [r.id for r in hook.for_run("billing_gateway_remediation", RUN_ID)] == [record.id]
    assert [r.id for r in hook.for_incident("INCIDENT-9")] == [record.id]
    assert hook.latest("INCIDENT-9", "snapshot") == record
    assert hook.latest("INCIDENT-9", "dry_run") is None
    with open_artifact(hook.get(record.id)) as handle:
        assert handle.read() == b"a\n1\n"
    with pytest.raises(ArtifactNotFoundError):
        hook.get(record.id + 1000)


def test_fresh_observations_keep_every_try(db, airflow_conns, base):
    first = publish_artifact(
        context(), kind="snapshot", name="snapshot_stripe.csv", source=b"try 1\n", keep_retries=True
    )
    second = publish_artifact(
        context(try_number=2),
        kind="snapshot",
        name="snapshot_stripe.csv",
        source=b"try 2\n",
        keep_retries=True,
    )
    assert (first.name, second.name) == ("snapshot_stripe.csv", "snapshot_stripe.try2.csv")
    assert read_bytes(first) == b"try 1\n" and read_bytes(second) == b"try 2\n"


def test_unknown_kind_is_refused(db, airflow_conns, base):
    with pytest.raises(ArtifactError, match="kind"):
        publish_artifact(context(), kind="selfie", name="x.csv", source=b"x")
