"""The demo command, as a user runs it without a terminal: the headless demo end to end.

One run of ``airflow-recon demo --headless`` in a fresh data directory: embedded
PostgreSQL, the demo stand-ins, the package's real DAGs in-process (watch -> remediation ->
reprocess runs -> approval by the demo approver -> recovery -> closure), then the report.
The assertions read the report and, after the run, the demo's own database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def _demo(data_dir, *extra: str) -> subprocess.CompletedProcess[str]:
    # the demo sets its own Airflow home, metadata DB and connections: none of the test session's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECON_"))}
    return subprocess.run(
        [sys.executable, "-m", "airflow_recon_provider.cli", "demo", "--data-dir", str(data_dir), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        stdin=subprocess.DEVNULL,
    )


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


@pytest.fixture
def data_dir():
    # not under pytest's basetemp: another pytest session resets its permissions, and the
    # embedded PostgreSQL runs as its own system user when the tests run as root
    path = Path(tempfile.mkdtemp(prefix="recon-demo-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_headless_demo_runs_the_runbook_to_closure(data_dir):
    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

    result = _demo(data_dir, "--headless")
    out = result.stdout
    server = EmbeddedPostgres(data_dir / "postgres")
    try:
        assert result.returncode == 0, result.stderr[-3000:] + out[-3000:]

        # detection: stripe breaches the alert rule, the healthy PSPs do not
        detection = _section(out, "Detecção — what the alert", "Airflow metadata database")
        # each currency in its own units, the total in reais converted with the recorded rates
        assert re.search(
            r"│ stripe\s+│\s+721\s+│\s+19\s+│ BRL: 16 key\(s\), R\$\s+│ R\$ 164\.740,52 "
            r".*YES \(amount, lag\)",
            detection,
        )
        assert "stripe: totals in BRL, converted with 1 EUR = 6,2875 BRL" in detection
        for psp in ("adyen", "pagseguro"):
            assert re.search(rf"│ {psp}\s+│\s+720\s+│\s+0\s+│ -\s+│ R\$ 0,00 .*│ no", detection), psp

        # the watch started the remediation, which ran every section to success
        match = re.search(r"started billing_gateway_remediation run (watch__INCIDENT-\d+)", out)
        assert match, out[-3000:]
        run_id = match.group(1)
        assert f"remediation run {run_id}: success" in out
        for task in (
            "investigate.snapshot",
            "contain.pause_reconciliation",
            "mitigate.reprocess",
            "mitigate.correct_transactions",
            "recover.recovery_criteria",
            "close.close_incident",
            "close.final_communication",
        ):
            assert re.search(rf"✓ {re.escape(task)} success", out), task
        assert out.count("match_transactions success") == 3  # one reprocess run per cycle
        assert "mitigate.correct_transactions awaits finance's approval" in out
        assert "approval answered 'Approve' by demo-approver" in out

        # the report: status mismatches corrected, the small remainder left for the PSP ticket
        report = _section(out, "Divergence by kind, before and after", "Steps executed")
        assert re.search(
            r"│ stripe\s+│ status_mismatch\s+│ 12\s+│ R\$ 164\.659,70\s+│ 0\s+│ R\$ 0,00", report
        )
        assert re.search(r"│ stripe\s+│ total\s+│ 19\s+│ R\$ 164\.740,52\s+│ 7\s+│ R\$ 80,81", report)
        # all seven kinds of divergence are in the report; only status_mismatch is corrected
        for kind in ("duplicate_in_gateway", "duplicate_in_statement", "missing_in_statement",
                     "missing_in_gateway", "currency_mismatch", "amount_mismatch"):  # fmt: skip
            assert re.search(rf"│ stripe\s+│ {kind}\s+│ [12]\s+│ R\$ [0-9.,]+\s+│ [12]\s+│", report), kind
        assert "stripe after: 7 key(s), R$ 80,81 converted (0,0040%), lag 0 cycle(s), alert: no" in out
        assert "stripe by currency, before: BRL: 16 key(s), R$ 104.197,55; EUR: 3 key(s), EUR 9.629,10" in out
        assert "stripe by currency, after: BRL: 5 key(s), R$ 22,34; EUR: 2 key(s), EUR 9,30" in out
        incident = run_id.removeprefix("watch__")
        assert f"Incident {incident} (stripe): closed" in out
        assert out.count("authorized -> ") == 12
        assert "12 transações — 11 em BRL: R$ 104.175,21; 1 em EUR: EUR 9.619,80" in out
        assert "E-mails to finance" in out and "reconciliação de stripe normalizada" in out
        # Encerramento 4: the closing e-mail carries the review's invitation (.ics read back)
        flat = " ".join(out.split())
        assert re.search(
            r"Review with finance: INCIDENT-\d+-revisao-financeiro\.ics \(text/calendar; method=REQUEST\) "
            r"\d{4}-\d\d-\d\dT10:00:00-03:00 to \d{4}-\d\d-\d\dT11:00:00-03:00 TZID=America/Sao_Paulo, "
            r"UID incident-\d+-revisao-financeiro@airflow-recon-provider, "
            r"attendees finance@platform\.io, oncall@platform\.io",
            flat,
        ), flat[-3000:]
        assert "reconciliação de stripe retomada por" in out
        # Detecção 1: the alert in the PagerDuty stand-in, one incident from trigger to resolve
        assert "PagerDuty events (stand-in)" in out
        # ... finance's report (low urgency) added to that open alert, which stays high urgency
        assert (
            f"PagerDuty incident #1 billing_gateway-reconciliation:stripe:{incident}: resolved "
            "(trigger, trigger (deduplicated), acknowledge, resolve); severity error, high urgency"
        ) in flat
        assert (
            f"PagerDuty trigger enviado (info): billing_gateway-reconciliation:stripe:{incident} — relato "
            "FIN-88: anexado ao alerta já aberto no PagerDuty (error)"
        ) in flat

        # Detecção 2: FIN-88 on the incident the watch opened, its dry run's findings
        report_run = re.search(r"dry run (finance_report__FIN-88__\S+): success", out)
        assert report_run, out[-3000:]
        assert f"FIN-88 attached to {incident}" in out
        assert f"Finance report FIN-88 by dag_test (dag.test's user): attached to {incident}" in flat
        assert "plantão avisado no Slack (#billing-incidents) do relato FIN-88" in flat
        findings = _section(out, "FIN-88: divergence by kind and currency", "Investigação 2")
        assert re.search(r"│ BRL\s+│ status divergente\s+│ 11\s+│ R\$ 104\.175,21", findings), findings
        assert re.search(r"│ EUR\s+│ total\s+│ 3\s+│ EUR 9\.629,10", findings), findings
        # ledger vs gateway vs statement per status and currency, each amount in its currency
        assert re.search(
            r"│ captured\s+│ USD\s+│ 39 / USD 54\.825,60\s+│ 39 / USD 54\.825,60\s+"
            r"│ 39 / USD 54\.825,60\s+│ agree",
            findings,
        ), findings
        assert re.search(
            r"│ authorized\s+│ BRL\s+│ \d+ / R\$ [0-9.,]+\s+│ \d+ / R\$ [0-9.,]+\s+│ .*differ", findings
        )

        # the break, for real: stripe's statement service down, each window cycle's reconciliation
        # run by the LocalExecutor fails in fetch_psp_statements (its log written by Airflow)
        broke = _section(out, "The break — billing_gateway_reconciliation", "Detecção — billing_gateway")
        failed_runs = re.findall(
            r"✗ billing_gateway_reconciliation run (manual__\S+) \(cycle \d\d:00 UTC\): failed, "
            r"failed: fetch_psp_statements",
            broke,
        )
        assert len(set(failed_runs)) == 3, broke
        assert "error_detail" not in broke  # the task processes' own output went to the task log

        # Investigação 2: the investigation collected those tries' error lines through the
        # REST API of Airflow's api-server (connection airflow_api), onto the timeline
        logs = _section(out, "Investigação 2 — failed-task logs", "Recovery criterion 1.")
        assert (
            f"run {run_id}: collected — Logs das tarefas com falha coletados: 3 tentativas com falha "
            "(fetch_psp_statements) em 3 ciclos"
        ) in logs, logs
        collected = logs[logs.index(f"what run {run_id} collected") :]
        for failed_run in failed_runs:
            assert f"{failed_run} fetch_psp_statements [0] try 1 (failed):" in collected, failed_run
        assert collected.count("ERROR Task failed with exception") == 3
        assert collected.count("PspUnavailableError: PSP API http://127.0.0.1:") == 3
        assert (
            collected.count("answered HTTP 503 Service Unavailable to statements page 1 of PSP stripe") == 3
        )
        assert "Bearer ey" not in out  # the api-server's JWT never leaves the hook

        # Critérios de Recuperação 3: the ledger's figures beside the statement's and the gateway's
        assert "Recovery criterion 3. Relatório financeiro alinhado com extratos PSP: atendido" in flat
        ledger = _section(out, "Critérios de Recuperação 3 — ledger.transactions", "Corrections applied")
        assert re.search(
            r"│ authorized\s+│ EUR\s+│ 26 / EUR 39\.958,18\s+│ 27 / EUR 39\.967,35\s+"
            r"│ 26 / EUR 39\.958,18\s+│ differs",
            ledger,
        ), ledger
        assert ledger.count("aligned") >= 9

        # Comunicação 3: the PSP's ticket number, in the closing e-mail
        assert "PSP ticket number STRIPE-8812 given by demo-oncall" in out
        assert re.search(r"Ticket do PSP:\s+STRIPE-8812", out)  # the closing e-mail (pt-BR)
        assert "demo-pagerduty-routing-key-00032" not in out

        # the demo's database after the run (the server is left running for --ui: attach to it)
        uri = server.start()
        with psycopg.connect(uri.rsplit("/", 1)[0] + "/billing_gateway", autocommit=True) as conn:
            audit = conn.execute(
                "SELECT count(*), min(approved_by), min(requested_by), min(run_id) FROM recon.corrections"
            ).fetchone()
            assert audit[0] == 12 and audit[1] == "demo-approver (finance)" and audit[3] == run_id
            assert audit[2] != audit[1]
            assert conn.execute("SELECT state FROM recon.incidents").fetchall() == [("closed",)]
            assert conn.execute("SELECT state FROM recon.controls WHERE psp = 'stripe'").fetchone() == (
                "active",
            )
            # the error lines on the incident's timeline and in the snapshot's artifact
            ((tries, status),) = conn.execute(
                "SELECT details -> 'tries', details ->> 'status' FROM recon.incident_events"
                " WHERE step = 'investigation.task_logs' AND run_id = %s",
                (run_id,),
            ).fetchall()
            assert status == "collected" and sorted(t["run_id"] for t in tries) == sorted(failed_runs)
            assert all(t["lines"][-1].startswith("PspUnavailableError: PSP API") for t in tries), tries
            (url,) = conn.execute(
                "SELECT url FROM recon.artifacts WHERE run_id = %s AND name = 'failed_task_logs_stripe.md'"
                " AND kind = 'snapshot'",
                (run_id,),
            ).fetchone()
            text = Path(url.removeprefix("file://")).read_text()
            for t in tries:
                assert t["run_id"] in text and t["lines"][-1] in text
    finally:
        server.start()  # attaches to the demo's server (as its system user), to stop it
        server.stop()
