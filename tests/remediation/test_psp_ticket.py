"""PspTicketOperator (runbook Mitigação 4) against a real PostgreSQL: the CSV of divergent
transactions for the PSP, counts (never rows) and the PSP's ticket number in XCom."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths

from airflow_recon_provider.operators.psp_ticket import PspTicketOperator
from airflow_recon_provider.reconciliation.errors import DivergenceKindError, UnknownPspError
from airflow_recon_provider.reconciliation.psp_ticket import TICKET_FIELDS, parse_ticket_kinds

pytestmark = pytest.mark.integration

WINDOW = {"window_start": "2026-11-20T10:00:00Z", "window_end": "2026-11-20T11:00:00Z"}


@pytest.fixture
def divergences(db, airflow_conns, monkeypatch, tmp_path):
    """One key of each of the seven kinds for stripe, one adyen divergence, one match."""
    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference) VALUES"
        " (1,'stripe','dupgw'),(2,'stripe','dupgw'),(3,'stripe','dupst'),(4,'stripe','missst'),"
        " (5,'stripe','cur'),(6,'stripe','amt'),(7,'stripe','stat'),(8,'stripe','ok'),(9,'adyen','a1')"
    )
    db.execute(
        """INSERT INTO payment_transactions
           (id, intent_id, transaction_type, status, amount_minor, currency, created_at) VALUES
           (101,1,'capture','captured',100,'BRL','2026-11-20T10:01Z'),
           (102,2,'capture','captured',100,'BRL','2026-11-20T10:02Z'),
           (103,3,'capture','captured',300,'BRL','2026-11-20T10:03Z'),
           (104,4,'capture','captured',400,'BRL','2026-11-20T10:04Z'),
           (105,5,'capture','captured',500,'BRL','2026-11-20T10:05Z'),
           (106,6,'capture','captured',1000,'BRL','2026-11-20T10:06Z'),
           (107,7,'capture','captured',700,'BRL','2026-11-20T10:07Z'),
           (108,8,'capture','captured',800,'BRL','2026-11-20T10:08Z'),
           (109,9,'capture','captured',900,'BRL','2026-11-20T10:09Z')"""
    )
    db.execute(
        """INSERT INTO psp_statement_lines
           (psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at,
            statement_id) VALUES
           ('stripe','dupgw','capture','captured',100,'BRL','2026-11-20T10:01Z','s'),
           ('stripe','dupst','capture','captured',300,'BRL','2026-11-20T10:03Z','s'),
           ('stripe','dupst','capture','captured',300,'BRL','2026-11-20T10:13Z','s'),
           ('stripe','missgw','refund','refunded',250,'BRL','2026-11-20T10:20Z','s'),
           ('stripe','cur','capture','captured',500,'USD','2026-11-20T10:05Z','s'),
           ('stripe','amt','capture','captured',900,'BRL','2026-11-20T10:06Z','s'),
           ('stripe','stat','capture','refunded',700,'BRL','2026-11-20T10:07Z','s'),
           ('stripe','ok','capture','captured',800,'BRL','2026-11-20T10:08Z','s')"""
    )
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe", "adyen"]}))
    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return db


def read_csv(result):
    """The ticket CSV of an operator's result, read the dashboard's way (recon.artifacts,
    then the object store), never from a path."""
    record = assert_artifact_link(result["artifact"], kind="psp_ticket")
    reader = csv.DictReader(io.StringIO(artifact_text(record), newline=""))
    assert tuple(reader.fieldnames) == TICKET_FIELDS
    return list(reader)


def context(tmp_path):
    return {"ti": SimpleNamespace(dag_id="adhoc", run_id="manual__1", task_id="psp_ticket", map_index=-1)}


@pytest.fixture
def ticket_dag(register_dag):
    from airflow.sdk import DAG, Param

    with DAG(
        dag_id="test_psp_ticket",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params={"psp": "stripe", **WINDOW, "psp_ticket": Param("", type="string")},
    ) as dag:
        PspTicketOperator(
            task_id="psp_ticket",
            psp="{{ params.psp }}",
            window_start="{{ params.window_start }}",
            window_end="{{ params.window_end }}",
            ticket_number="{{ params.psp_ticket }}",
        )
    return register_dag(dag)


@pytest.mark.dags
@pytest.mark.timeout(180)
def test_ticket_csv_holds_the_external_divergences_only(ticket_dag, divergences, tmp_path):
    dag_run = ticket_dag.test(
        logical_date=datetime(2026, 11, 21, 9, tzinfo=UTC), run_conf={"psp_ticket": "STR-99812"}
    )
    assert dag_run.state == "success"
    result = dag_run.get_task_instance("psp_ticket").xcom_pull(task_ids="psp_ticket")
    assert result["psp_ticket"] == "STR-99812"
    assert result["rows"] == 5
    assert result["counts"] == {
        "duplicate_in_statement": 1,
        "missing_in_statement": 1,
        "missing_in_gateway": 1,
        "currency_mismatch": 1,
        "amount_mismatch": 1,
    }
    # every key here is in reais: one currency, its own count and amount
    assert result["by_currency"] == {
        "BRL": {"exponent": 2, "rows": 5, "divergent_amount_minor": 300 + 400 + 250 + 500 + 100}
    }
    assert "divergent_amount_minor" not in result
    # written under RECON_ARTIFACTS_DIR (the file:// base), linked, never a path in XCom
    folder = tmp_path / "artifacts" / "test_psp_ticket"
    assert [p.name for p in folder.rglob("*.csv")] == ["psp_ticket_stripe.csv"]
    assert result["artifact"]["name"] == "psp_ticket_stripe.csv"
    assert_no_local_paths(result, roots=[tmp_path], what="psp ticket XCom")
    # counts and a link, never the rows
    assert "missst" not in json.dumps(result)

    rows = {r["provider_reference"]: r for r in read_csv(result)}
    assert set(rows) == {"dupst", "missst", "missgw", "cur", "amt"}  # no internal kinds, no adyen
    assert rows["amt"] == {
        "provider_reference": "amt",
        "transaction_type": "capture",
        "kind": "amount_mismatch",
        "gateway_transaction_id": "106",
        "gateway_amount_minor": "1000",
        "gateway_currency": "BRL",
        "statement_amount_minor": "900",
        "statement_currency": "BRL",
        "divergent_amount_minor": "100",
        "currency": "BRL",
        "other_amounts_minor": "",
        "gateway_status": "captured",
        "statement_status": "captured",
    }
    assert (rows["missgw"]["kind"], rows["missgw"]["gateway_transaction_id"]) == ("missing_in_gateway", "")
    assert (rows["missst"]["gateway_transaction_id"], rows["missst"]["statement_amount_minor"]) == ("104", "")
    assert rows["dupst"]["kind"] == "duplicate_in_statement"
    # a currency mismatch: each amount with the currency it is in
    assert {k: rows["cur"][k] for k in ("gateway_amount_minor", "gateway_currency")} == {
        "gateway_amount_minor": "500",
        "gateway_currency": "BRL",
    }
    assert (rows["cur"]["statement_amount_minor"], rows["cur"]["statement_currency"]) == ("500", "USD")
    assert (rows["missgw"]["gateway_currency"], rows["missgw"]["statement_currency"]) == ("", "BRL")
    assert (rows["missst"]["gateway_currency"], rows["missst"]["statement_currency"]) == ("BRL", "")


@pytest.mark.dags
@pytest.mark.timeout(180)
def test_without_ticket_number_the_ticket_is_none(ticket_dag, divergences):
    dag_run = ticket_dag.test(logical_date=datetime(2026, 11, 21, 10, tzinfo=UTC))
    assert dag_run.state == "success"
    assert dag_run.get_task_instance("psp_ticket").xcom_pull(task_ids="psp_ticket")["psp_ticket"] is None


def test_configured_kinds_and_another_base(divergences, tmp_path):
    op = PspTicketOperator(
        task_id="psp_ticket",
        psp="stripe",
        divergence_kinds="['amount_mismatch', 'currency_mismatch']",  # a rendered multi-select param
        incident_id="INCIDENT-7",
        artifacts_dir=str(tmp_path / "elsewhere"),
        **WINDOW,
    )
    result = op.execute(context(tmp_path))
    assert result["counts"] == {"currency_mismatch": 1, "amount_mismatch": 1}
    assert [r["provider_reference"] for r in read_csv(result)] == ["cur", "amt"]
    assert (tmp_path / "elsewhere" / "adhoc" / "manual__1" / "psp_ticket_stripe.csv").is_file()
    (row,) = divergences.execute("SELECT psp, incident_id, kind, name FROM recon.artifacts").fetchall()
    assert row == ("stripe", "INCIDENT-7", "psp_ticket", "psp_ticket_stripe.csv")
    # run again (a retry) with the same rows: the same artifact, nothing written twice
    again = op.execute(context(tmp_path))
    assert again["artifact"] == result["artifact"]


def test_empty_window_writes_the_header_only(divergences, tmp_path):
    op = PspTicketOperator(
        task_id="psp_ticket",
        psp="stripe",
        window_start="2026-11-19T10:00:00Z",
        window_end="2026-11-19T11:00:00Z",
    )
    result = op.execute(context(tmp_path))
    assert result["rows"] == 0 and set(result["counts"].values()) == {0}
    assert read_csv(result) == []


def test_bad_input_leaves_no_file(divergences, tmp_path):
    store = tmp_path / "artifacts"
    with pytest.raises(UnknownPspError):
        PspTicketOperator(task_id="t", psp="paypal", **WINDOW).execute(context(tmp_path))
    with pytest.raises(DivergenceKindError, match="unknown divergence kind"):
        PspTicketOperator(
            task_id="t", psp="stripe", divergence_kinds="missing,amount_mismatch", **WINDOW
        ).execute(context(tmp_path))
    with pytest.raises(ValueError, match="deve ter uma só linha de no máximo 64 caracteres"):
        PspTicketOperator(task_id="t", psp="stripe", ticket_number="A\nB", **WINDOW).execute(
            context(tmp_path)
        )
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    assert divergences.execute("SELECT count(*) FROM recon.artifacts").fetchone() == (0,)


def test_parse_ticket_kinds():
    assert [k.value for k in parse_ticket_kinds(None)] == [
        "duplicate_in_statement",
        "missing_in_statement",
        "missing_in_gateway",
        "currency_mismatch",
        "amount_mismatch",
    ]
    assert parse_ticket_kinds("[]") == parse_ticket_kinds("")
    assert [k.value for k in parse_ticket_kinds(["status_mismatch"])] == ["status_mismatch"]


def test_ticket_in_four_currencies_keeps_each_amount_in_its_own(
    db, airflow_conns, monkeypatch, tmp_path, capfd
):
    """Amount mismatches in BRL, EUR, JPY (no decimals) and USD, a duplicate in the statement
    whose extra copy is in euros, and a currency mismatch: every amount of the CSV has its
    currency beside it, and the counts are per currency: no figure of the XCom or the log is
    a sum of minor units across currencies."""
    import sys
    from pathlib import Path

    corrections_tests = str(Path(__file__).resolve().parent.parent / "corrections")
    if corrections_tests not in sys.path:
        sys.path.insert(0, corrections_tests)
    from correction_data import cross_currency_sums, ints_in, numbers_in

    # (ref, gateway (amount, currency), statement lines [(amount, currency)])
    keys = [
        ("x-brl", (10_000_021, "BRL"), [(10_000_000, "BRL")]),
        ("x-eur", (961_980, "EUR"), [(961_000, "EUR")]),
        ("x-jpy", (123_457, "JPY"), [(123_000, "JPY")]),
        ("x-usd", (70_055, "USD"), [(70_000, "USD")]),
        ("x-dup", (4_000, "BRL"), [(4_000, "BRL"), (3_300, "EUR")]),
        ("x-cur", (5_000, "BRL"), [(5_000, "USD")]),
    ]
    for n, (ref, (amount, currency), lines) in enumerate(keys, 1):
        db.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference) VALUES (%s,'stripe',%s)", (n, ref)
        )
        db.execute(
            "INSERT INTO payment_transactions (id, intent_id, transaction_type, status, amount_minor,"
            " currency, created_at) VALUES (%s, %s, 'capture', 'captured', %s, %s, '2026-11-20T10:10Z')",
            (100 + n, n, amount, currency),
        )
        for minute, (line_amount, line_currency) in enumerate(lines, 10):
            db.execute(
                "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
                " amount_minor, currency, occurred_at, statement_id) VALUES ('stripe', %s, 'capture',"
                " 'captured', %s, %s, %s, 's')",
                (ref, line_amount, line_currency, f"2026-11-20T10:{minute}Z"),
            )
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe"]}))
    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    capfd.readouterr()
    result = PspTicketOperator(task_id="psp_ticket", psp="stripe", **WINDOW).execute(context(tmp_path))
    printed = capfd.readouterr()

    rows = {r["provider_reference"]: r for r in read_csv(result)}
    amounts = {
        ref: (
            r["gateway_amount_minor"],
            r["gateway_currency"],
            r["statement_amount_minor"],
            r["statement_currency"],
        )
        for ref, r in rows.items()
    }
    assert amounts == {
        "x-brl": ("10000021", "BRL", "10000000", "BRL"),
        "x-eur": ("961980", "EUR", "961000", "EUR"),
        "x-jpy": ("123457", "JPY", "123000", "JPY"),
        "x-usd": ("70055", "USD", "70000", "USD"),
        "x-dup": ("4000", "BRL", "4000", "BRL"),
        "x-cur": ("5000", "BRL", "5000", "USD"),
    }
    divergent = {ref: (r["kind"], r["divergent_amount_minor"], r["currency"]) for ref, r in rows.items()}
    assert divergent["x-jpy"] == ("amount_mismatch", "457", "JPY")
    assert divergent["x-eur"] == ("amount_mismatch", "980", "EUR")
    assert divergent["x-dup"][:1] == ("duplicate_in_statement",)
    assert json.loads(rows["x-dup"]["other_amounts_minor"]) == {"EUR": 3_300}  # the extra copy, in euros
    assert divergent["x-cur"][0] == "currency_mismatch"

    by_currency = result["by_currency"]
    assert set(by_currency) == {"BRL", "EUR", "JPY", "USD"}
    assert by_currency["JPY"] == {"exponent": 0, "rows": 1, "divergent_amount_minor": 457}
    assert by_currency["EUR"] == {"exponent": 2, "rows": 1, "divergent_amount_minor": 980 + 3_300}
    assert by_currency["USD"] == {"exponent": 2, "rows": 1, "divergent_amount_minor": 55}
    # x-brl, x-dup (its BRL copies match: 0) and x-cur (the key's currency is the gateway's)
    assert by_currency["BRL"] == {"exponent": 2, "rows": 3, "divergent_amount_minor": 21 + 0 + 5_000}
    assert sum(v["rows"] for v in by_currency.values()) == result["rows"] == 6
    assert "divergent_amount_minor" not in result

    # no figure anywhere is a sum of minor units of different currencies
    parts = [(ref, r["currency"], int(r["divergent_amount_minor"])) for ref, r in rows.items()]
    parts += [
        (ref, c, a)
        for ref, r in rows.items()
        if r["other_amounts_minor"]
        for c, a in json.loads(r["other_amounts_minor"]).items()
    ]
    mixed = cross_currency_sums(parts)
    log = "\n".join(line for line in (printed.out + printed.err).splitlines() if "PSP ticket" in line)
    assert "JPY: 1 linha, JPY 457" in log and "EUR: 1 linha, EUR 42,80" in log
    figures = {k: v for k, v in result.items() if k != "artifact"}  # its id and size are no amounts
    assert not (ints_in(figures) | numbers_in(log)) & mixed
