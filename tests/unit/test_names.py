"""The contract names (DESIGN.md §2, §5) live in airflow_recon_provider/names.py alone."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from airflow_recon_provider import names

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_recon_provider"
CONTRACT_VALUES = {
    value: name
    for name, value in vars(names).items()
    if name.isupper() and isinstance(value, str) and name != "PSP_CONN_PREFIX"
}


def _dag_ids_of(path: Path) -> set[str]:
    """dag_id= keywords and the first positional string of a DAG(...) / single-action builder."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "dag_id" and isinstance(kw.value, ast.Constant):
                    found.add(kw.value.value)
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                if node.args[0].value.startswith("billing_gateway_"):
                    found.add(node.args[0].value)
    return found


def test_every_dag_file_defines_a_named_dag_and_every_name_has_its_file():
    files = sorted((ROOT / "dags").glob("billing_gateway_*.py"))
    by_file = {f.stem: _dag_ids_of(f) for f in files}
    assert all(by_file[stem] == {stem} for stem in by_file), by_file
    assert set(by_file) == set(names.DAG_IDS)
    assert len(names.DAG_IDS) == len(set(names.DAG_IDS))


def test_hooks_default_connection_ids_are_the_named_ones():
    from airflow_recon_provider.hooks.billing_core import BillingCoreHook
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.hooks.payments_ledger import PaymentsLedgerHook

    assert BillingGatewayHook.default_conn_name == names.BILLING_GATEWAY_CONN_ID == "billing_gateway_db"
    assert IncidentHook.default_conn_name == names.BILLING_GATEWAY_CONN_ID
    assert PaymentsLedgerHook.default_conn_name == names.PAYMENTS_LEDGER_CONN_ID == "payments_ledger_db"
    assert BillingCoreHook.default_conn_name == names.BILLING_CORE_CONN_ID == "billing_gateway_core"


def _literal_uses(path: Path) -> list[str]:
    source = path.read_text()
    uses = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.STRING or tok.string[:3] in ('"""', "'''"):
            continue
        value = tok.string[1:-1] if tok.string[:1] in "\"'" else None
        if value in CONTRACT_VALUES and "conn_type" not in tok.line:
            uses.append(
                f"{path.relative_to(ROOT)}:{tok.start[0]}: {value!r} (use names.{CONTRACT_VALUES[value]})"
            )
    return uses


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(PACKAGE.rglob("*.py")) if p.name not in {"names.py", "get_provider_info.py"}],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_module_spells_a_contract_name_itself(path):
    assert _literal_uses(path) == []
