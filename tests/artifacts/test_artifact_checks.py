"""The helper the step tests use to refuse worker paths in what leaves a task."""

from __future__ import annotations

import pytest
from artifact_checks import assert_no_local_paths


@pytest.mark.parametrize(
    "value",
    [
        "dry-run artifact: /var/lib/airflow/recon-artifacts/d/r/correction_corr-1.csv",
        {"snapshot": {"path": "/srv/artifacts/snapshot_stripe.csv"}},
        ["closing report attached (file:///shared/INCIDENT-1-closing-report.md)"],
        {"nested": [{"record_path": "/home/airflow/release-actions.json"}]},
        b"see /opt/recon/INCIDENT-3-closing-report.html",
    ],
)
def test_paths_and_file_urls_are_refused(value):
    with pytest.raises(AssertionError):
        assert_no_local_paths(value)


def test_a_path_under_a_given_root_is_refused(tmp_path):
    with pytest.raises(AssertionError, match="worker path"):
        assert_no_local_paths({"out": f"{tmp_path}/anything"}, roots=[tmp_path])


def test_dashboard_links_pass():
    assert_no_local_paths(
        {
            "artifact": {"name": "psp_ticket_stripe.csv", "link": "http://localhost:8080/recon/artifacts/12"},
            "text": "[correction\\_corr-1.csv](https://airflow.example.com/recon/artifacts/7) — 1.234 bytes",
            "rows": 12,
        }
    )
