"""`airflow-recon` against a real PostgreSQL: output formats and bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from scenario import STRIPE_ADYEN, cycle_logs, intents, statement_lines, transactions

from airflow_recon_provider.cli import main
from airflow_recon_provider.schema import MIGRATIONS

WINDOW = ["--window-start", "2026-11-20T10:00:00Z", "--window-end", "2026-11-20T11:00:00Z"]
REPORT_KEYS = [
    "kind",
    "provider_reference",
    "transaction_type",
    "gateway_status",
    "statement_status",
    "gateway_amount_minor",
    "statement_amount_minor",
    "divergent_amount_minor",
    "currency",
]


@pytest.fixture
def scenario(db, airflow_conns):
    intents(db, STRIPE_ADYEN)
    transactions(
        db,
        [
            (1, "capture", "captured", 1000, "BRL", "2026-11-20T07:10:00-03:00"),
            (2, "capture", "captured", 900000, "BRL", "2026-11-20T10:20Z"),
            (3, "refund", "refunded", 250, "USD", "2026-11-20T10:30Z"),
            (4, "capture", "captured", 100, "BRL", "2026-11-20T10:30Z"),
        ],
    )
    statement_lines(
        db,
        [
            ("stripe", "r1", "capture", "captured", 1000, "BRL", "2026-11-20T10:10:05Z", "s"),
            ("stripe", "r3", "refund", "refunded", 250, "EUR", "2026-11-20T10:30:02Z", "s"),
        ],
    )
    cycle_logs(db, [("stripe", "2026-11-20T09:00Z", "2026-11-20T10:00Z", "success")])
    return db


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_jsonl_keys_and_integers(scenario, capsys):
    code, out, err = _run(capsys, "report", "--psp", "stripe", *WINDOW)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [list(r) for r in rows] == [REPORT_KEYS, REPORT_KEYS]
    assert [(r["kind"], r["provider_reference"]) for r in rows] == [
        ("missing_in_statement", "r2"),
        ("currency_mismatch", "r3"),
    ]
    assert rows[0]["divergent_amount_minor"] == 900000 and isinstance(rows[0]["divergent_amount_minor"], int)
    assert rows[0]["statement_amount_minor"] is None


def test_report_csv_table_and_kind_filter(scenario, capsys):
    code, out, _ = _run(
        capsys, "report", "--psp", "stripe", *WINDOW, "--format", "csv", "--kinds", "currency_mismatch"
    )
    assert code == 0
    data = list(csv.DictReader(io.StringIO(out)))
    assert [d["provider_reference"] for d in data] == ["r3"]
    assert data[0]["currency"] == "USD"
    code, out, _ = _run(capsys, "report", "--psp", "stripe", *WINDOW, "--format", "table")
    assert code == 0 and "R$ 9.000,00" in out and "missing_in_statement" in out
    # the currency mismatch: the gateway's amount in USD, the PSP's in EUR, each labelled
    assert "USD 2,50" in out and "EUR 2,50" in out


def test_summary_json_per_currency_and_converted(scenario, capsys):
    # 1 USD = 5.3519 BRL from the day before; a later rate (after the window's end) is not used
    scenario.execute(
        "INSERT INTO recon.fx_rates (currency, rate, valid_from, source) VALUES"
        " ('USD', 5.3519, '2026-11-19T16:00Z', 'BCB PTAX'), ('USD', 9, '2026-11-20T12:00:01Z', 'later')"
    )
    code, out, _ = _run(capsys, "summary", "--psp", "stripe", *WINDOW)
    assert code == 0
    doc = json.loads(out)
    assert doc["reporting_currency"] == "BRL"
    assert doc["by_currency"] == {
        "BRL": {
            "exponent": 2,
            "gateway_count": 2,
            "gateway_amount_minor": 901000,
            "divergent_count": 1,
            "divergent_amount_minor": 900000,
            "by_kind": {"missing_in_statement": {"count": 1, "amount_minor": 900000}},
        },
        "USD": {
            "exponent": 2,
            "gateway_count": 1,
            "gateway_amount_minor": 250,
            "divergent_count": 1,
            "divergent_amount_minor": 250,
            "by_kind": {"currency_mismatch": {"count": 1, "amount_minor": 250}},
        },
    }
    # USD 2.50 * 5.3519 = R$ 13.37975 -> 1338 centavos (half-even, once per currency total)
    assert doc["fx_rates"] == {
        "USD": {"rate": "5.3519", "valid_from": "2026-11-19T16:00:00+00:00", "source": "BCB PTAX"}
    }
    assert doc["unconverted_currencies"] == []
    assert doc["gateway_count"] == 3
    assert doc["gateway_amount_minor"] == 901000 + 1338
    assert doc["divergent_count"] == 2
    assert doc["divergent_amount_minor"] == 900000 + 1338
    assert doc["by_kind"] == {
        "missing_in_statement": {"count": 1, "amount_minor": 900000},
        "currency_mismatch": {"count": 1, "amount_minor": 1338},
    }
    assert doc["alert"] is True and doc["recovered"] is False
    assert doc["alert_reasons"] == ["amount"]
    assert doc["divergence_pct"] == 99.8892  # 100 * 901338 / 902338
    assert {"psp", "window_start", "window_end", "divergence_pct"} <= set(doc)
    code, out, err = _run(capsys, "summary", "--psp", "stripe", *WINDOW, "--table")
    assert code == 0
    assert "USD 2,50" in err and "R$ 9.000,00" in err and "1 USD = 5,3519 BRL" in err


def test_summary_without_a_rate_never_adds_currencies_and_alerts(scenario, capsys):
    code, out, _ = _run(capsys, "summary", "--psp", "stripe", *WINDOW)
    assert code == 0
    doc = json.loads(out)
    assert doc["unconverted_currencies"] == ["USD"] and doc["fx_rates"] == {}
    assert doc["gateway_amount_minor"] == 901000 and doc["divergent_amount_minor"] == 900000
    assert doc["gateway_count"] == 3 and doc["divergent_count"] == 2
    assert doc["by_currency"]["USD"]["divergent_amount_minor"] == 250
    assert doc["alert_reasons"] == ["amount", "fx_rate_missing"] and doc["recovered"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--psp", "paypal", *WINDOW], "unknown PSP 'paypal'"),
        (["--psp", "stripe' OR '1'='1", *WINDOW], "not a valid PSP name"),
        (
            [
                "--psp",
                "stripe",
                "--window-start",
                "2026-11-20T11:00:00Z",
                "--window-end",
                "2026-11-20T10:00:00Z",
            ],
            "must be after its start",
        ),
        (
            [
                "--psp",
                "stripe",
                "--window-start",
                "2026-11-20T10:00:00",
                "--window-end",
                "2026-11-20T11:00:00Z",
            ],
            "has no timezone",
        ),
        (
            [
                "--psp",
                "stripe",
                "--window-start",
                "2026-01-01T00:00:00Z",
                "--window-end",
                "2026-11-20T11:00:00Z",
            ],
            "larger than the maximum",
        ),
        (
            ["--psp", "stripe", "--window-start", "yesterday", "--window-end", "2026-11-20T11:00:00Z"],
            "not an ISO 8601",
        ),
        (
            ["--psp", "stripe", *WINDOW, "--kinds", "missing_in_statement,everything"],
            "unknown divergence kind",
        ),
    ],
)
@pytest.mark.parametrize("command", ["report", "summary"])
def test_bad_input_exits_2_with_one_line(scenario, capsys, command, argv, message):
    before = scenario.execute("SELECT count(*) FROM payment_transactions").fetchone()[0]
    code, out, err = _run(capsys, command, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err
    assert scenario.execute("SELECT count(*) FROM payment_transactions").fetchone()[0] == before


def test_missing_connection_and_unreachable_database(scenario, capsys, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_BILLING_GATEWAY_DB")
    code, out, err = _run(capsys, "summary", "--psp", "stripe", *WINDOW)
    assert code == 1 and out == "" and "billing_gateway_db" in err and "not defined" in err
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", "postgresql://postgres@127.0.0.1:1/none")
    code, out, err = _run(capsys, "summary", "--psp", "stripe", *WINDOW)
    assert code == 1 and "unreachable" in err and err.count("\n") == 1


def test_migrate_is_idempotent(scenario, capsys):
    code, out, _ = _run(capsys, "migrate")
    assert code == 0
    doc = json.loads(out)
    assert doc["applied_now"] == []
    assert doc["schema_versions"] == [m.version for m in MIGRATIONS]


def test_console_script_runs_as_a_process(scenario):
    result = subprocess.run(
        [sys.executable, "-m", "airflow_recon_provider.cli", "summary", "--psp", "adyen", *WINDOW],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gateway_count"] == 1


def test_summary_and_report_run_without_importing_airflow(scenario, tmp_path):
    """With the connection in AIRFLOW_CONN_*, ``summary`` and ``report`` read the database
    straight through libpq (hooks/env_connections.py): Airflow is never imported, and the
    figures are those of BillingGatewayHook."""
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation import ReconConfig, Window

    probe = (
        "import sys\n"
        "from airflow_recon_provider.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print('AIRFLOW_MODULES', len(loaded), loaded[:3], file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    outputs = {}
    for command in ("summary", "report"):
        done = subprocess.run(
            [sys.executable, "-c", probe, command, "--psp", "stripe", *WINDOW],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "AIRFLOW_MODULES 0 []" in done.stderr, done.stderr
        outputs[command] = done.stdout
    window = Window.parse(WINDOW[1], WINDOW[3])
    hook = BillingGatewayHook(config=ReconConfig.load())
    assert json.loads(outputs["summary"]) == json.loads(json.dumps(hook.summary("stripe", window).as_dict()))
    expected = [r.as_dict() for r in hook.iter_divergences("stripe", window)]
    assert [json.loads(line) for line in outputs["report"].splitlines()] == expected


def test_a_secrets_backend_sends_the_cli_through_airflow(scenario, tmp_path):
    """A configured secrets backend is asked before the environment: the CLI then goes
    through Airflow's lookup (here a backend that cannot be imported: Airflow's own error)."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__SECRETS__BACKEND": "no.such.Backend"}
    done = subprocess.run(
        [sys.executable, "-m", "airflow_recon_provider.cli", "summary", "--psp", "stripe", *WINDOW],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode != 0 and "no.such" in done.stderr
