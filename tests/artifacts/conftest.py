"""Artifact store tests: a local S3-compatible server (moto in server mode) for the s3://
case, started once per session."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="session")
def s3_server():
    from airflow_recon_provider.devtools.local_s3 import LocalS3Server

    with LocalS3Server() as server:
        yield server


@pytest.fixture
def s3_base(s3_server, monkeypatch) -> str:
    """A fresh bucket, the ``aws_recon_artifacts`` connection and the [recon] section
    pointing at it; returns the base URL."""
    bucket = f"recon-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_RECON_ARTIFACTS", s3_server.airflow_connection())
    monkeypatch.setenv("AIRFLOW__RECON__ARTIFACTS_BASE_URL", f"s3://{bucket}/prod")
    monkeypatch.setenv("AIRFLOW__RECON__ARTIFACTS_CONN_ID", "aws_recon_artifacts")
    return f"s3://{bucket}/prod"
