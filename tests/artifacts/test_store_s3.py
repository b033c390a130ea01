"""The artifact store on s3:// against a local S3-compatible server (moto in server mode),
through Airflow's object storage and an ``aws`` connection: one put per object, write-once,
identical retry accepted, other bytes refused, streamed reads; recorded in recon.artifacts."""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import pytest

from airflow_recon_provider.artifacts import (
    ArtifactConflictError,
    ArtifactNotFoundError,
    ArtifactStore,
    open_artifact,
    read_bytes,
)
from airflow_recon_provider.hooks.artifacts import ArtifactsHook
from airflow_recon_provider.operators._artifacts import publish_artifact

RUN = "manual__2026-11-20T12:30:00+00:00"


def keys(s3_server, base: str) -> list[str]:
    bucket = base.removeprefix("s3://").split("/", 1)[0]
    listed = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_put_is_one_object_written_once(s3_server, s3_base):
    store = ArtifactStore()
    assert (store.base_url, store.conn_id) == (s3_base, "aws_recon_artifacts")
    stored = store.put("billing_gateway_remediation", RUN, "snapshot_stripe.csv", b"a,b\n1,2\n")
    assert (
        stored.url
        == f"{s3_base}/billing_gateway_remediation/manual__2026-11-20T12_30_00_00_00/snapshot_stripe.csv"
    )
    assert keys(s3_server, s3_base) == [
        "prod/billing_gateway_remediation/manual__2026-11-20T12_30_00_00_00/snapshot_stripe.csv"
    ]
    assert read_bytes(stored.url) == b"a,b\n1,2\n"

    again = store.put("billing_gateway_remediation", RUN, "snapshot_stripe.csv", b"a,b\n1,2\n")
    assert not again.created and again.sha256 == stored.sha256
    with pytest.raises(ArtifactConflictError, match="never overwritten"):
        store.put("billing_gateway_remediation", RUN, "snapshot_stripe.csv", b"a,b\n1,3\n")
    assert read_bytes(stored.url) == b"a,b\n1,2\n"


def test_a_large_file_is_streamed_both_ways(s3_server, s3_base, tmp_path):
    data = os.urandom(6 * 1024 * 1024 + 5)
    source = tmp_path / "snapshot.csv"
    source.write_bytes(data)
    stored = ArtifactStore().put("dag", RUN, "snapshot.csv", source)
    assert stored.size_bytes == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    with open_artifact(stored.url) as handle:
        head = handle.read(1024)
        rest = handle.read()
    assert head + rest == data


def test_missing_object_is_not_found(s3_base):
    with pytest.raises(ArtifactNotFoundError):
        read_bytes(f"{s3_base}/nothing/here.csv")


@pytest.mark.integration
def test_publish_records_the_s3_url_and_the_connection(db, airflow_conns, s3_server, s3_base):
    ti = SimpleNamespace(dag_id="billing_gateway_remediation", run_id=RUN, task_id="psp_ticket", map_index=-1)
    record = publish_artifact(
        {"ti": ti}, kind="psp_ticket", name="psp_ticket_stripe.csv", source=b"ref\nX1\n", psp="stripe"
    )
    assert record.url.startswith(f"{s3_base}/") and record.conn_id == "aws_recon_artifacts"
    stored = ArtifactsHook().get(record.id)
    # the dashboard's way: the record opens with its own connection
    with open_artifact(stored) as handle:
        assert handle.read() == b"ref\nX1\n"
    assert "s3://" not in str(record.summary())
