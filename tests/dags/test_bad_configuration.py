"""A bad RECON_CONFIG never takes the DAGs out of the UI: every DAG file still imports, the
forms say why in pt-BR, and every run is refused at its first step with the reason."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_recon_provider.names import DAG_IDS, REMEDIATION_DAG_ID
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.errors import ConfigError

pytestmark = pytest.mark.dags

DAGS = Path(__file__).resolve().parents[2] / "dags"
BAD = {
    "a PSP name with spaces": ('{"psps": [{"name": "Bad Name!"}]}', "'Bad Name!' is not a valid PSP name"),
    "not JSON": ('{"psps": [', "not valid JSON"),
    "a missing file": ("/nonexistent/recon.json", "which is not a file"),
}


@pytest.fixture(params=sorted(BAD), ids=lambda k: k.replace(" ", "-"))
def bad_config(request, monkeypatch):
    document, reason = BAD[request.param]
    monkeypatch.setenv("RECON_CONFIG", document)
    monkeypatch.delenv("AIRFLOW__RECON__LANGUAGE", raising=False)
    return reason


def test_every_dag_still_imports_and_the_form_says_why(bad_config):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(DAG_IDS)
    for dag_id in (REMEDIATION_DAG_ID, "billing_gateway_finance_report", "billing_gateway_reprocess"):
        psp = bag.dags[dag_id].params.get_param("psp")
        assert "ATENÇÃO: a configuração da reconciliação (RECON_CONFIG) não pôde ser lida" in psp.description
        assert bad_config in psp.description
        assert "Toda execução é recusada no primeiro passo" in psp.description


def test_the_first_step_refuses_the_run_with_the_reason(bad_config):
    from airflow_recon_provider.operators.investigation import ValidateScopeOperator

    scope = ValidateScopeOperator(
        task_id="scope",
        psp="stripe",
        window_start="2026-12-07T07:00Z",
        window_end="2026-12-07T10:00Z",
        dry_run=True,
        run_note=False,
    )
    context = {
        "ti": SimpleNamespace(dag_id=REMEDIATION_DAG_ID, run_id="manual__bad", task_id="scope"),
        "run_id": "manual__bad",
        "dag_run": SimpleNamespace(triggering_user_name="oncall", run_id="manual__bad"),
        "dag": None,
    }
    with pytest.raises(ConfigError, match=bad_config.replace("(", r"\(").replace(")", r"\)")):
        scope.execute(context)


def test_a_document_is_parsed_once_until_its_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "recon.json"
    path.write_text('{"psps": [{"name": "stripe"}]}')
    monkeypatch.setenv("RECON_CONFIG", str(path))
    first = ReconConfig.load()
    assert ReconConfig.load() is first
    path.write_text('{"psps": [{"name": "stripe"}, {"name": "adyen"}]}')
    second = ReconConfig.load()
    assert second is not first and second.psp_names == ["stripe", "adyen"]
    path.write_text('{"psps": [{"name": "Bad Name!"}]}')
    with pytest.raises(ConfigError, match="not a valid PSP name"):
        ReconConfig.load()
    assert ReconConfig.load_for_form()[1] is not None


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("AIRFLOW__RECON__PSP_TICKET_TIMEOUT", "soon", "psp_ticket_timeout"),
        (
            "RECON_PSP_TICKET_TIMEOUT_MINUTES",
            "-5",
            "RECON_PSP_TICKET_TIMEOUT_MINUTES must be a positive number",
        ),
    ],
)
def test_a_bad_psp_ticket_deadline_keeps_the_dags_and_the_task_says_why(monkeypatch, variable, value, reason):
    """The deadline of the PSP ticket number question is part of the parsed task: a bad value
    keeps every DAG importable (default deadline) and the task refuses to run with the reason."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("AIRFLOW__RECON__PSP_TICKET_TIMEOUT", raising=False)
    monkeypatch.delenv("RECON_PSP_TICKET_TIMEOUT_MINUTES", raising=False)
    monkeypatch.setenv(variable, value)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(DAG_IDS)
    tasks = [t for t in bag.dags[REMEDIATION_DAG_ID].tasks if t.task_id.endswith("psp_ticket_number")]
    assert tasks, "the remediation DAG asks for the PSP ticket number"
    for task in tasks:
        assert reason in task.configuration_error
        with pytest.raises(ConfigError, match="the PSP ticket number is not asked"):
            task.execute({})
