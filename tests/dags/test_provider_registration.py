"""The provider registers with Airflow: a broken provider info breaks all of Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata, resources

import pytest

from airflow_recon_provider import __version__
from airflow_recon_provider.get_provider_info import get_provider_info

CONNECTION_TYPES = {"billing_gateway", "payments_ledger", "psp", "reconciliation_kafka", "billing_core"}


def test_provider_info_is_well_formed():
    import jsonschema

    info = get_provider_info()
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-recon-provider"
    assert info["name"] and info["description"]
    assert __version__ in info["versions"]
    by_type = {c["connection-type"]: c for c in info["connection-types"]}
    assert set(by_type) >= CONNECTION_TYPES
    psp = by_type["psp"]
    assert psp["hook-class-name"] == "airflow_recon_provider.hooks.psp.PspHook"
    assert set(psp["ui-field-behaviour"]["hidden-fields"]) == {"schema", "login"}
    assert psp["ui-field-behaviour"]["relabeling"] == {"host": "PSP API base URL", "password": "API token"}
    modules = {m for hook in info["hooks"] for m in hook["python-modules"]}
    assert "airflow_recon_provider.hooks.psp" in modules


def test_entry_point_points_at_get_provider_info():
    (entry,) = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_recon_provider")
    ]
    assert entry.load() is get_provider_info


@pytest.mark.timeout(120)
def test_airflow_imports_and_knows_the_connection_types(tmp_path):
    """In a fresh interpreter, as a worker or the API server would see it."""
    script = (
        f"CONNECTION_TYPES = {sorted(CONNECTION_TYPES)!r}\n"
        + """
import json
import airflow
from airflow.providers_manager import ProvidersManager

pm = ProvidersManager()
hooks = {t: pm.hooks[t] for t in CONNECTION_TYPES}
triggers = sorted(t.trigger_class_name for t in pm.trigger if t.package_name == "airflow-recon-provider")
print(json.dumps({
    "providers": sorted(pm.providers),
    "hooks": {
        t: [h.hook_class_name, h.connection_type, h.package_name] if h else None
        for t, h in hooks.items()
    },
    "psp_behaviour": pm.field_behaviours.get("psp"),
    "triggers": triggers,
}))
"""
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=110, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "airflow-recon-provider" in result["providers"]
    for conn_type in CONNECTION_TYPES:
        hook = result["hooks"][conn_type]
        assert hook is not None, f"{conn_type} not registered: {done.stderr[-2000:]}"
        assert hook[1] == conn_type and hook[2] == "airflow-recon-provider"
    assert result["hooks"]["psp"][0] == "airflow_recon_provider.hooks.psp.PspHook"
    assert result["psp_behaviour"]["relabeling"]["host"] == "PSP API base URL"
    assert result["triggers"] == [
        "airflow_recon_provider.triggers.divergence",
        "airflow_recon_provider.triggers.psp_health",
        "airflow_recon_provider.triggers.recovery",
        "airflow_recon_provider.triggers.reprocess",
    ]
