"""`airflow-recon fx-rates load FILE.csv` against a real PostgreSQL: all of the file or
nothing, one line on stderr naming the file line, exit 2 for bad input and 1 for a missing
connection, an unreachable database or an unmigrated schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from airflow_recon_provider.cli import main

pytestmark = pytest.mark.integration

HEADER = "currency,rate,valid_from,source\n"
GOOD = HEADER + (
    "USD,5.4312,2026-12-04,BCB PTAX\n"
    "EUR,6.2875,2026-12-04T13:10:02-03:00,BCB PTAX\n"
    "USD,5.4400,2026-12-05,BCB PTAX\n"
    "JPY,0.036104,2026-12-04,BCB PTAX\n"
)


def stored(db):
    return db.execute(
        "SELECT currency, rate, valid_from, source FROM recon.fx_rates ORDER BY 1, 3"
    ).fetchall()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def write(tmp_path):
    def write(text: str | bytes, name: str = "rates.csv") -> str:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)

    return write


def test_load_prints_the_count_per_currency(db, airflow_conns, capsys, write):
    path = write(GOOD)
    code, out, err = run(capsys, "fx-rates", "load", path)
    assert code == 0, err
    assert json.loads(out) == {
        "file": path,
        "reporting_currency": "BRL",
        "loaded": 4,
        "by_currency": {"EUR": 1, "JPY": 1, "USD": 2},
    }
    assert [(c, r) for c, r, _, _ in stored(db)] == [
        ("EUR", Decimal("6.2875")),
        ("JPY", Decimal("0.036104")),
        ("USD", Decimal("5.4312")),
        ("USD", Decimal("5.4400")),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("USD,-1,2026-12-06,x", "line 6: rate '-1' must be a positive decimal"),
        ("USD,0,2026-12-06,x", "line 6: rate '0' must be a positive decimal"),
        ("USD,NaN,2026-12-06,x", "line 6: rate 'NaN' must be a positive decimal"),
        ("ZZZ,1.5,2026-12-06,x", "line 6: currency 'ZZZ' is not an ISO 4217 currency code"),
        ("XAU,1.5,2026-12-06,x", "line 6: currency 'XAU' is not an ISO 4217 currency code with minor units"),
        ("USD,1.5,06/12/2026,x", "line 6: valid_from '06/12/2026' is not a date YYYY-MM-DD"),
        ("USD,1.5,2026-12-06T10:00:00,x", "line 6: valid_from '2026-12-06T10:00:00' has no timezone"),
        (
            "USD,1.5,2026-12-05T00:00:00Z,x",
            "line 6: USD valid from 2026-12-05T00:00:00Z is already on line 4",
        ),
        ("USD,1.5,2026-12-06", "line 6: expected 4 columns"),
    ],
)
def test_a_bad_line_exits_2_with_one_line_naming_it_and_loads_nothing(
    db, airflow_conns, capsys, write, line, message
):
    path = write(GOOD + line + "\n")
    code, out, err = run(capsys, "fx-rates", "load", path)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: {path} {message}"), err
    assert stored(db) == []


def test_a_key_already_in_the_table_exits_2_naming_the_line_and_the_row(db, airflow_conns, capsys, write):
    db.execute(
        "INSERT INTO recon.fx_rates (currency, rate, valid_from, source, loaded_at)"
        " VALUES ('JPY', 0.0355, '2026-12-04', 'november file', '2026-12-01T09:00Z')"
    )
    path = write(GOOD)
    code, out, err = run(capsys, "fx-rates", "load", path)
    assert (code, out) == (2, "")
    assert err == (
        f"error: {path} line 5: JPY valid from 2026-12-04T00:00:00Z is already in recon.fx_rates (rate "
        "0.0355, source 'november file', loaded 2026-12-01T09:00:00Z); nothing was loaded\n"
    )
    assert [r[0] for r in stored(db)] == ["JPY"]
    # loading the same good file twice: the second run refuses all of it
    db.execute("DELETE FROM recon.fx_rates")
    assert run(capsys, "fx-rates", "load", path)[0] == 0
    code, _, err = run(capsys, "fx-rates", "load", path)
    assert code == 2 and "line 2: USD valid from 2026-12-04T00:00:00Z is already in recon.fx_rates" in err
    assert "(3 more lines of the file also in the table)" in err
    assert len(stored(db)) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty: expected the header currency,rate,valid_from,source on line 1"),
        (HEADER, "has no rates after its header (line 1)"),
        (
            "moeda,taxa,data,fonte\nUSD,5.4,2026-12-04,x\n",
            "line 1: the header must be currency,rate,valid_from",
        ),
        (HEADER.encode() + b"USD,5.4,2026-12-04,caf\xe9\n", "is not UTF-8 text"),
    ],
)
def test_empty_or_unreadable_files_exit_2(db, airflow_conns, capsys, write, content, message):
    path = write(content)
    code, out, err = run(capsys, "fx-rates", "load", path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and message in err
    assert stored(db) == []


def test_a_missing_file_exits_2(db, airflow_conns, capsys, tmp_path):
    code, out, err = run(capsys, "fx-rates", "load", str(tmp_path / "nope.csv"))
    assert (code, out) == (2, "")
    assert err == f"error: cannot read {tmp_path / 'nope.csv'}: No such file or directory\n"


def test_the_reporting_currency_needs_no_rate(db, airflow_conns, capsys, write, monkeypatch):
    path = write(GOOD)
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"reporting_currency": "USD"}))
    code, _, err = run(capsys, "fx-rates", "load", path)
    assert code == 2
    assert f"{path} line 2: USD is the reporting currency (rate 1): it needs no rate" in err
    assert stored(db) == []


def test_missing_connection_unreachable_database_and_missing_schema_exit_1(
    db, airflow_conns, capsys, write, monkeypatch
):
    path = write(GOOD)
    monkeypatch.delenv("AIRFLOW_CONN_BILLING_GATEWAY_DB")
    code, out, err = run(capsys, "fx-rates", "load", path)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "'billing_gateway_db' is not defined" in err
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", "postgresql://postgres@127.0.0.1:1/none")
    code, out, err = run(capsys, "fx-rates", "load", path)
    assert (code, out) == (1, "") and err.count("\n") == 1 and "unreachable" in err
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", airflow_conns)
    db.execute("DROP TABLE recon.fx_rates")
    code, out, err = run(capsys, "fx-rates", "load", path)
    assert (code, out) == (1, "")
    assert err == (
        "error: recon.fx_rates does not exist in the database of connection 'billing_gateway_db'; run "
        "`airflow-recon migrate` first (schema migration 6)\n"
    )


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "fx-rates")
    assert code == 2 and err.count("\n") == 1
    code, _, err = run(capsys, "fx-rates", "load")
    assert code == 2 and "the following arguments are required: file" in err


def test_console_script_loads_as_a_process(db, airflow_conns, write):
    result = subprocess.run(
        [sys.executable, "-m", "airflow_recon_provider.cli", "fx-rates", "load", write(GOOD)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["loaded"] == 4
