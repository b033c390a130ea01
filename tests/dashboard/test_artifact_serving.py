"""Artifacts served by the dashboard (``/recon/artifacts/{id}``) from the object store the
artifact store wrote (a file:// base here): byte for byte, CSV as a download, the closing
report rendered, markdown as text; unknown and malformed ids; an unreadable store is a clear
503; an object that no longer matches its record is never served whole. Each run's
artifacts listed (``/recon/runs/{dag_id}/{run_id}/artifacts``)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from dashboard_support import DRY_RUN_CSV, EVIDENCE_DAG, EVIDENCE_RUN, SNAPSHOT_CSV

pytestmark = pytest.mark.integration


@pytest.fixture
def client(dashboard_db):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    with TestClient(create_app(require_login=False)) as client:
        yield client


def _object(record) -> Path:
    return Path(record.url.removeprefix("file://"))


@pytest.mark.parametrize(("kind", "content"), [("snapshot", SNAPSHOT_CSV), ("dry_run", DRY_RUN_CSV)])
def test_a_csv_is_a_download_byte_for_byte(client, closed_incident, kind, content):
    record = closed_incident.artifacts[kind]
    answer = client.get(f"/artifacts/{record.id}")
    assert answer.status_code == 200
    assert answer.content == content == _object(record).read_bytes()
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        f"attachment; filename=\"{record.name}\"; filename*=UTF-8''{record.name}"
    )
    assert answer.headers["content-length"] == str(len(content))
    assert answer.headers["x-artifact-sha256"] == hashlib.sha256(content).hexdigest()
    digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
    assert answer.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_closing_report_opens_in_the_page_sandboxed(client, closed_incident):
    record = closed_incident.artifacts["closing_report_html"]
    answer = client.get(f"/artifacts/{record.id}")
    assert answer.status_code == 200 and answer.content == closed_incident.closing_html.encode()
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["content-disposition"].startswith("inline;")
    # no script of the document may run, whatever text the incident holds
    assert answer.headers["content-security-policy"].startswith("sandbox;")
    assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_the_markdown_report_is_plain_text(client, closed_incident):
    record = closed_incident.artifacts["closing_report"]
    answer = client.get(f"/artifacts/{record.id}")
    assert answer.status_code == 200 and answer.content == closed_incident.closing_markdown.encode()
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["content-disposition"].startswith("inline;")


def test_an_unknown_artifact_is_404(client, closed_incident):
    page = client.get("/artifacts/987654")
    assert page.status_code == 404 and "O artefato 987654 não existe." in page.text


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "99999999999999999999", "%3Cscript%3E"])
def test_a_malformed_artifact_id_is_400(client, dashboard_db, bad):
    page = client.get(f"/artifacts/{bad}")
    assert page.status_code == 400 and "Identificador de artefato inválido" in page.text
    assert "<script>" not in page.text.split("<body>", 1)[1].split("<script>\n//", 1)[0]


def test_a_vanished_object_is_a_clear_503(client, closed_incident):
    record = closed_incident.artifacts["dry_run"]
    _object(record).unlink()
    page = client.get(f"/artifacts/{record.id}")
    assert page.status_code == 503 and 'data-testid="dashboard-error"' in page.text
    assert f"O arquivo do artefato {record.id} (correction_k-adyen.csv) não foi encontrado" in page.text
    assert "artifacts_base_url" in page.text
    assert str(closed_incident.store_dir) not in page.text  # no server path in the page


def test_a_store_that_cannot_be_read_is_a_clear_503(client, closed_incident):
    from airflow_recon_provider.hooks.artifacts import ArtifactsHook

    # recorded in a store whose filesystem the API server does not have
    record = ArtifactsHook().record(
        dag_id=EVIDENCE_DAG, run_id=EVIDENCE_RUN, task_id="t", kind="psp_ticket", name="psp_ticket_x.csv",
        url="nosuchfs://bucket/psp_ticket_x.csv", conn_id="nosuch_conn", content_type="text/csv",
        size_bytes=1, sha256="0" * 64,
    )  # fmt: skip
    page = client.get(f"/artifacts/{record.id}")
    assert page.status_code == 503
    assert f"O armazenamento de artefatos não pôde ser lido para o artefato {record.id}" in page.text


def test_an_object_that_differs_from_its_record_is_never_served_whole(client, closed_incident):
    record = closed_incident.artifacts["snapshot"]
    path = _object(record)
    tampered = bytes(reversed(path.read_bytes()))  # same size, other bytes
    path.chmod(0o644)
    path.write_bytes(tampered)
    with pytest.raises(OSError, match="does not match its recorded SHA-256"):
        client.get(f"/artifacts/{record.id}")


def test_each_runs_artifacts_are_listed(client, closed_incident):
    a = closed_incident.artifacts
    run = re.sub("[:+]", lambda m: {":": "%3A", "+": "%2B"}[m.group()], EVIDENCE_RUN)
    page = client.get(f"/runs/{EVIDENCE_DAG}/{run}/artifacts")
    assert page.status_code == 200
    listed = re.findall(r'data-kind="(\w+)" data-artifact-id="(\d+)"', page.text)
    assert [int(i) for _, i in listed] == [
        a[k].id for k in ("snapshot", "dry_run", "closing_report", "closing_report_html", "early_snapshot")
    ]
    # links resolve to /recon/artifacts/<id> from /recon/runs/<dag>/<run>/artifacts
    assert f'href="../../../artifacts/{a["snapshot"].id}"' in page.text
    assert f"<code>{EVIDENCE_RUN}</code>" in page.text
    body = client.get(f"/api/runs/{EVIDENCE_DAG}/{run}/artifacts").json()
    assert body["run_id"] == EVIDENCE_RUN and len(body["artifacts"]) == 5
    assert body["artifacts"][0]["href"] == f"/recon/artifacts/{a['snapshot'].id}"
    assert "file://" not in str(body)
    other = client.get(f"/api/runs/{EVIDENCE_DAG}/manual__other/artifacts").json()
    assert [x["kind"] for x in other["artifacts"]] == ["psp_ticket"]
    empty = client.get(f"/runs/{EVIDENCE_DAG}/manual__never/artifacts")
    assert empty.status_code == 200 and 'data-testid="no-artifacts"' in empty.text


def test_a_bad_dag_id_in_a_run_url_is_400(client, dashboard_db):
    page = client.get("/runs/bad%20dag%21/r1/artifacts")
    assert page.status_code == 400 and "Identificador de DAG inválido" in page.text
    answer = client.get("/api/runs/bad%20dag%21/r1/artifacts")
    assert answer.status_code == 400 and "Identificador de DAG inválido" in answer.json()["error"]
