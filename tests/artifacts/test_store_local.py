"""The artifact store on file://: atomic, written once, identical retry accepted, other
bytes refused, names made safe; the [recon] configuration and RECON_ARTIFACTS_DIR."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from airflow_recon_provider.artifacts import (
    ArtifactConflictError,
    ArtifactNotFoundError,
    ArtifactStore,
    artifact_link,
    artifacts_base_url,
    artifacts_conn_id,
    dashboard_base_url,
    normalize_base_url,
    open_artifact,
    read_bytes,
    safe_name,
)

RUN = "manual__2026-11-20T12:30:00+00:00"


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(f"file://{tmp_path}/store")


def test_layout_is_base_dag_run_name_with_safe_parts(store, tmp_path):
    stored = store.put("billing gateway/remediation", RUN, "snapshot stripe?.csv", b"a,b\n1,2\n")
    expected = tmp_path / "store" / "billing_gateway_remediation" / "manual__2026-11-20T12_30_00_00_00"
    assert stored.url == f"file://{expected}/snapshot_stripe_.csv"
    assert (expected / "snapshot_stripe_.csv").read_bytes() == b"a,b\n1,2\n"
    assert stored.size_bytes == 8
    assert stored.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert stored.created
    # nothing left beside it: the temporary sibling is gone
    assert sorted(p.name for p in expected.iterdir()) == ["snapshot_stripe_.csv"]


@pytest.mark.parametrize(
    ("text", "safe"),
    [("../../etc/passwd", "etc_passwd"), ("..", "_"), ("", "_"), (".hidden", "hidden"), ("a/b\\c", "a_b_c")],
)
def test_names_never_leave_the_run_folder(text, safe):
    assert safe_name(text) == safe


def test_traversal_names_stay_under_the_base(store, tmp_path):
    stored = store.put("../../dag", "../run", "../../x.csv", b"x")
    assert Path(stored.url.removeprefix("file://")).resolve().is_relative_to(tmp_path / "store")


def test_identical_retry_is_accepted_and_other_bytes_refused(store):
    first = store.put("dag", RUN, "report.md", b"# report\n")
    again = store.put("dag", RUN, "report.md", b"# report\n")
    assert again.url == first.url and again.sha256 == first.sha256 and not again.created
    with pytest.raises(ArtifactConflictError, match="never overwritten"):
        store.put("dag", RUN, "report.md", b"# another report\n")
    assert read_bytes(first.url) == b"# report\n"


def test_a_local_file_is_copied_and_streamed_back(store, tmp_path):
    source = tmp_path / "big.csv"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(data)
    stored = store.put("dag", RUN, "big.csv", source)
    assert stored.size_bytes == len(data)
    with open_artifact(stored.url) as handle:
        assert handle.read(10) == data[:10]
        assert handle.read() == data[10:]
    # the source is the caller's: left as it was
    assert source.read_bytes() == data


def test_a_failed_write_leaves_nothing(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.put("dag", RUN, "gone.csv", tmp_path / "does-not-exist.csv")
    folder = tmp_path / "store" / "dag"
    assert not folder.exists() or not any(folder.rglob("*"))


def test_concurrent_writers_of_one_name_never_overwrite(store):
    """Ten threads write the same name, half with other bytes: exactly one content wins,
    everyone else either gets that same content back or a conflict."""
    outcomes: list[object] = []

    def write(i: int) -> None:
        try:
            outcomes.append(store.put("dag", RUN, "race.csv", b"even\n" if i % 2 == 0 else b"odd\n"))
        except ArtifactConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [o for o in outcomes if not isinstance(o, Exception)]
    winner = read_bytes(stored[0].url)
    assert sum(1 for o in stored if o.created) == 1
    assert all(hashlib.sha256(winner).hexdigest() == o.sha256 for o in stored)
    assert len(stored) + sum(isinstance(o, ArtifactConflictError) for o in outcomes) == 10


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(ArtifactNotFoundError):
        open_artifact(f"file://{tmp_path}/nothing.csv")


def test_base_urls_are_normalized(tmp_path):
    assert normalize_base_url(str(tmp_path)) == f"file://{tmp_path}"
    assert normalize_base_url(f"file://{tmp_path}/") == f"file://{tmp_path}"
    assert normalize_base_url("s3://bucket/prefix/") == "s3://bucket/prefix"


def test_configuration(monkeypatch, tmp_path):
    for name in ("ARTIFACTS_BASE_URL", "ARTIFACTS_CONN_ID", "DASHBOARD_BASE_URL"):
        monkeypatch.delenv(f"AIRFLOW__RECON__{name}", raising=False)
    monkeypatch.delenv("RECON_ARTIFACTS_DIR", raising=False)
    home = os.environ["AIRFLOW_HOME"]
    assert artifacts_base_url() == f"file://{home}/recon-artifacts"
    assert artifacts_conn_id() is None
    # the legacy variable: a local directory
    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(tmp_path / "legacy"))
    assert artifacts_base_url() == f"file://{tmp_path}/legacy"
    # the [recon] section wins
    monkeypatch.setenv("AIRFLOW__RECON__ARTIFACTS_BASE_URL", "s3://recon-evidence/prod/")
    monkeypatch.setenv("AIRFLOW__RECON__ARTIFACTS_CONN_ID", "aws_recon")
    assert artifacts_base_url() == "s3://recon-evidence/prod"
    assert artifacts_conn_id() == "aws_recon"
    store = ArtifactStore()
    assert (store.base_url, store.conn_id) == ("s3://recon-evidence/prod", "aws_recon")
    # links: [api] base_url + /recon unless dashboard_base_url says otherwise
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    assert dashboard_base_url() == "https://airflow.example.com/recon"
    assert artifact_link(42) == "https://airflow.example.com/recon/artifacts/42"
    monkeypatch.setenv("AIRFLOW__RECON__DASHBOARD_BASE_URL", "https://recon.example.com/board/")
    assert artifact_link(7) == "https://recon.example.com/board/artifacts/7"


def test_provider_registers_the_recon_section():
    from airflow_recon_provider.get_provider_info import get_provider_info

    options = get_provider_info()["config"]["recon"]["options"]
    # the artifact store's options (the section also holds others, e.g. language)
    assert {"artifacts_base_url", "artifacts_conn_id", "dashboard_base_url"} <= set(options)
    for option in options.values():
        # the types Airflow's provider config schema knows
        assert option["description"] and option["type"] in {"string", "integer", "float", "boolean"}
        assert "default" in option
    assert options["recovery_poll_interval"]["type"] == "float"
