"""The reconciliation DAG file parses without importing a hook, database driver or HTTP client
(no timing: parse time is measured in benchmarks/, see also test_lazy_imports.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.timeout(120)
def test_reconciliation_dag_parses_without_heavy_imports(tmp_path):
    script = f"""
import json, runpy, sys
import airflow.sdk
before = set(sys.modules)
runpy.run_path({str(DAGS_FOLDER / "billing_gateway_reconciliation.py")!r})
heavy = ("psycopg", "requests", "tenacity", "airflow_recon_provider.hooks",
         "airflow_recon_provider.reconciliation")
loaded = sorted(m for m in set(sys.modules) - before if m.startswith(heavy))
print(json.dumps({{"heavy": loaded}}))
"""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=110, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
