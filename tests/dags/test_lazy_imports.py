"""Parsing a DAG file and starting a task import only what they need (issue 7: DAG files parse
in under 0.5 s, the package adds under 0.3 s to a task start).

No timing here: each test runs a fresh interpreter (the DAG processor and a task start are
fresh processes too) and checks ``sys.modules`` for the heavy libraries and provider hooks
that are imported inside ``execute``/``run``/the hooks' methods instead. A module counts
only when the step under test added it, so whatever Airflow itself loads before (provider
infos, asset handlers) is not held against the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

#: database drivers, SQL tooling, HTTP/Kafka/Kubernetes clients and the provider hooks and
#: notifiers built on them: what the operators, sensors and remediation steps use at run time
RUN_TIME_ONLY = (
    "psycopg",
    "psycopg2",
    "sqlparse",
    "requests",
    "tenacity",
    "confluent_kafka",
    "kubernetes",
    "slack_sdk",
    "airflow.providers.postgres.hooks",
    "airflow.providers.common.sql.hooks",
    "airflow.providers.http",
    "airflow.providers.slack",
    "airflow.providers.smtp",
    "airflow.providers.apache.kafka.hooks",
    "airflow.providers.cncf.kubernetes",
    "airflow_recon_provider.hooks._postgres",
    "airflow_recon_provider.hooks.billing_gateway",
    "airflow_recon_provider.hooks.incidents",
    "airflow_recon_provider.hooks.corrections",
    "airflow_recon_provider.hooks.psp",
    "airflow_recon_provider.hooks.fx_rates",
    "airflow_recon_provider.hooks.fx_source",
    "airflow_recon_provider.notifications",
)

_HELPERS = """
import importlib, json, sys

def added(before, prefixes):
    new = set(sys.modules) - before
    return sorted(p for p in prefixes if any(m == p or m.startswith(p + ".") for m in new))
"""


def _run(script: str, tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    }
    done = subprocess.run(
        [sys.executable, "-c", _HELPERS + script],
        capture_output=True,
        text=True,
        env=env,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(180)
def test_dag_files_parse_without_run_time_imports(tmp_path):
    # one interpreter for all files, as a DAG processor would have: each file is charged with
    # what it added; a module an earlier file loaded is caught at that file
    files = sorted(str(p) for p in DAGS_FOLDER.glob("*.py"))
    script = f"""
from airflow.dag_processing.dagbag import DagBag
from airflow.providers_manager import ProvidersManager
# Airflow's own asset URI handlers (the amazon provider's S3 one imports requests), loaded
# by the first DAG with an asset: the DAG processor has them before it parses any file
ProvidersManager().initialize_providers_asset_uri_resources()
result = {{}}
for path in {files!r}:
    before = set(sys.modules)
    bag = DagBag(dag_folder=path)
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, path
    result[path.rsplit("/", 1)[-1]] = added(before, {RUN_TIME_ONLY!r})
print(json.dumps(result))
"""
    result = _run(script, tmp_path)
    assert len(result) == len(files) >= 8
    assert {name: mods for name, mods in result.items() if mods} == {}


@pytest.mark.timeout(180)
def test_task_start_imports_only_what_the_task_needs(tmp_path):
    operator_side = [m for m in RUN_TIME_ONLY if m != "airflow_recon_provider.notifications"]
    script = f"""
import airflow.sdk  # a task start has this already
from airflow.sdk import BaseOperator
before = set(sys.modules)
importlib.import_module("airflow_recon_provider.operators.reconciliation")
importlib.import_module("airflow_recon_provider.sensors.divergence")
# the sensor's trigger (and Airflow's trigger base) only when it pokes or defers
operators = added(before, {operator_side!r} + ["airflow.triggers.base", "airflow_recon_provider.triggers"])
before = set(sys.modules)
importlib.import_module("airflow_recon_provider.hooks.billing_gateway")
# the hook is a PostgresHook (psycopg, common.sql): nothing of the other integrations
hook = added(before, [
    "requests", "tenacity", "confluent_kafka", "kubernetes", "slack_sdk", "airflow.providers.http",
    "airflow.providers.slack", "airflow.providers.smtp", "airflow.providers.apache.kafka.hooks",
    "airflow.providers.cncf.kubernetes", "airflow.triggers.base", "airflow_recon_provider.notifications",
])
print(json.dumps({{"operators": operators, "hook": hook}}))
"""
    assert _run(script, tmp_path) == {"operators": [], "hook": []}


def test_remediation_still_exports_the_step_classes():
    from airflow_recon_provider import remediation
    from airflow_recon_provider.operators.corrections import TransactionCorrectionOperator
    from airflow_recon_provider.operators.investigation import ValidateScopeOperator
    from airflow_recon_provider.sensors.recovery import RecoverySensor

    assert remediation.ValidateScopeOperator is ValidateScopeOperator
    assert remediation.TransactionCorrectionOperator is TransactionCorrectionOperator
    assert remediation.RecoverySensor is RecoverySensor
    with pytest.raises(AttributeError):
        remediation.NoSuchOperator  # noqa: B018
