"""Single-action DAG tests: ``billing_gateway_reprocess``, ``billing_gateway_data_correction``,
``billing_gateway_reconciliation_control``, ``billing_gateway_release_rollback``.

Everything is reused from the remediation DAG tests: their fixtures (``recon_dags``,
``scenario``, ``psp_api``, ``finance_conns``, ``core_api``, ``workdir``,
``children_run_by_the_test`` ...) are loaded from ``tests/remediation_dag/conftest.py``
under a name of their own (pytest imports every conftest as ``conftest``, so it cannot be
imported by name), and the helpers are imported from ``remediation_dag_support`` with that
folder on ``sys.path``, as that conftest does. Only the fixtures of the four DAGs are new.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REMEDIATION_DAG_TESTS = Path(__file__).resolve().parents[1] / "remediation_dag"
if str(REMEDIATION_DAG_TESTS) not in sys.path:
    sys.path.insert(0, str(REMEDIATION_DAG_TESTS))


def _remediation_fixtures():
    name = "remediation_dag_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REMEDIATION_DAG_TESTS / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_fixtures = _remediation_fixtures()
# the remediation DAG tests' fixtures, registered for this folder too
recon_dags = _fixtures.recon_dags
reconciliation_dag = _fixtures.reconciliation_dag
recon_config = _fixtures.recon_config
scenario = _fixtures.scenario
psp_api = _fixtures.psp_api
smtp_server = _fixtures.smtp_server
slack_api = _fixtures.slack_api
finance_conns = _fixtures.finance_conns
core_api = _fixtures.core_api
workdir = _fixtures.workdir
children_run_by_the_test = _fixtures.children_run_by_the_test

SINGLE_ACTION_DAGS = (
    "billing_gateway_reprocess",
    "billing_gateway_data_correction",
    "billing_gateway_reconciliation_control",
    "billing_gateway_release_rollback",
)


def _dag(recon_dags, dag_id):
    # dag.test() resolves a run's conf into the DAG's own Params: give them back afterwards
    yield from _fixtures._with_params_restored(recon_dags.dags[dag_id])


def _dag_fixture(dag_id: str):
    @pytest.fixture
    def the_dag(recon_dags):
        yield from _dag(recon_dags, dag_id)

    return the_dag


reprocess_dag = _dag_fixture("billing_gateway_reprocess")
correction_dag = _dag_fixture("billing_gateway_data_correction")
control_dag = _dag_fixture("billing_gateway_reconciliation_control")
release_dag = _dag_fixture("billing_gateway_release_rollback")


@pytest.fixture(params=SINGLE_ACTION_DAGS)
def single_action_dag(request, recon_dags):
    yield from _dag(recon_dags, request.param)


@pytest.fixture
def open_incident(scenario, db):
    """Open an incident for stripe (as the divergence watch would) and return its id."""

    def open_for(psp: str = "stripe") -> str:
        from remediation_dag_support import WINDOW_END, WINDOW_START

        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.reconciliation.window import Window

        return IncidentHook().open_incident(
            psp,
            window=Window.parse(WINDOW_START, WINDOW_END),
            reason="divergence alert",
            actor="airflow:billing_gateway_divergence_watch",
        )

    return open_for
