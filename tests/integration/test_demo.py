"""The demo command, as a user runs it: embedded PostgreSQL, seeded scenario, summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

KINDS = (
    "duplicate_in_gateway",
    "duplicate_in_statement",
    "missing_in_statement",
    "missing_in_gateway",
    "currency_mismatch",
    "amount_mismatch",
    "status_mismatch",
)


def _demo(data_dir, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    return subprocess.run(
        [sys.executable, "-m", "airflow_recon_provider.cli", "demo", "--data-dir", str(data_dir), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


@pytest.mark.timeout(300)
def test_demo_shows_all_seven_kinds_and_reuses_its_data(tmp_path):
    first = _demo(tmp_path, "--rows", "1000")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "Scenario seeded" in out
    stripe = out[out.index("PSP stripe") : out.index("PSP adyen")]
    for kind in KINDS:
        match = re.search(rf"│ {kind}\s+│\s+([\d,]+) │", stripe)
        assert match and int(match.group(1).replace(",", "")) > 0, kind
    assert "alert billing_gateway-reconciliation: YES" in stripe
    adyen = out[out.index("PSP adyen") : out.index("PSP pagseguro")]
    assert "divergent: 0 keys" in adyen and "alert billing_gateway-reconciliation: no" in adyen
    assert "Integridade de Dados (stripe)" in out

    second = _demo(tmp_path, "--rows", "1000", "--stop")
    assert second.returncode == 0, second.stderr
    assert "already seeded; reusing it" in second.stdout
    assert "PostgreSQL stopped." in second.stdout
