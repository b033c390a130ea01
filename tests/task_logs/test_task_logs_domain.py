"""The pure part of "coletar logs" (runbook Investigação 2): which runs, which lines, which
secrets — ``reconciliation/task_logs.py``, no Airflow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from task_logs_support import error_detail

from airflow_recon_provider.reconciliation.task_logs import (
    FailedTryLog,
    TaskLogsCollection,
    describe_outcome,
    extract_error_lines,
    mask_secrets,
    render_markdown,
    run_cycle_start,
    runs_for_failed_cycles,
)

C12 = datetime(2026, 11, 20, 12, tzinfo=UTC)
C13 = datetime(2026, 11, 20, 13, tzinfo=UTC)


def test_structured_log_keeps_error_lines_and_traceback_tail():
    content = [
        {"event": "::group::Log message source details", "sources": ["/opt/airflow/logs/x.log"]},
        {"event": "::endgroup::"},
        {"timestamp": "2026-11-20T14:10:01.5Z", "level": "info", "event": "starting", "logger": "task"},
        {"timestamp": "2026-11-20T14:10:02Z", "level": "warning", "event": "slow", "logger": "task"},
        {"timestamp": "2026-11-20T14:10:03Z", "level": "error", "event": "match failed", "logger": "task"},
        {
            "timestamp": "2026-11-20T14:10:04Z",
            "level": "error",
            "event": "Task failed with exception",
            "error_detail": error_detail("classification aborted"),
        },
        {"timestamp": "2026-11-20T14:10:05Z", "level": "info", "event": "Marking task as FAILED."},
    ]
    lines = extract_error_lines(content)
    assert lines[0] == "14:10:03 ERROR match failed"
    assert lines[1] == "14:10:04 ERROR Task failed with exception"
    assert lines[2] == "ConnectionError: server closed the connection"  # the cause first, as Python
    assert lines[-1] == "RuntimeError: classification aborted"
    assert any(line.startswith("  File ") and "in outer" in line for line in lines)
    assert not any("starting" in line or "slow" in line or "FAILED" in line for line in lines)
    # bounded: the end of the log is kept
    assert extract_error_lines(content, max_lines=2) == lines[-2:]
    frames = [line for line in extract_error_lines(content, max_frames=1) if line.startswith("  File")]
    assert len(frames) == 1


def test_plain_text_log_keeps_error_lines_and_last_traceback():
    text = "\n".join(
        [
            "[2026-11-20 14:10:01] INFO - starting",
            "[2026-11-20 14:10:02] ERROR - PSP answered 500",
            "Traceback (most recent call last):",
            '  File "/a.py", line 1, in a',
            "    a()",
            '  File "/b.py", line 2, in b',
            "    b()",
            "ValueError: bad statement",
            "[2026-11-20 14:10:03] INFO - Marking task as FAILED",
        ]
    )
    lines = extract_error_lines([text], max_frames=1)
    assert lines[0] == "[2026-11-20 14:10:02] ERROR - PSP answered 500"
    assert lines[1:] == [
        "Traceback (…):",
        '  File "/b.py", line 2, in b',
        "    b()",
        "ValueError: bad statement",
    ]


@pytest.mark.parametrize("bad", [0, -1, True, "3"])
def test_bounds_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="max_lines"):
        extract_error_lines([], max_lines=bad)
    with pytest.raises(ValueError, match="max_frames"):
        extract_error_lines([], max_frames=bad)


def test_mask_secrets_known_and_generic():
    text = (
        "dsn postgresql://recon:Gw-Db-Passw0rd@db:5432/billing;"
        " Authorization: Bearer sk_live_9fQ2xTOKENabc123;"
        ' {"password": "hunter22"} api_key=AKIA1234567'
        " jwt eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJvbmNhbGwifQ.c2lnbmF0"
        " known Api-Pass-4567 tiny abc"
    )
    masked = mask_secrets(text, ["Api-Pass-4567", "abc", None, ""])
    for secret in (
        "Gw-Db-Passw0rd",
        "sk_live_9fQ2xTOKENabc123",
        "hunter22",
        "AKIA1234567",
        "eyJhbGci",
        "Api-Pass",
    ):
        assert secret not in masked, (secret, masked)
    assert "postgresql://recon:***@db:5432/billing" in masked
    assert "Bearer ***" in masked
    assert "tiny abc" in masked  # too short to replace literally
    assert mask_secrets(masked) == masked  # idempotent
    # ordinary words after "token" or "basic" stay; Basic credentials after Authorization go
    plain = "invalid token provided; basic reconciliation; Authorization: Basic dXNlcjpwYXNzd29yZA=="
    assert mask_secrets(plain) == "invalid token provided; basic reconciliation; Authorization: Basic ***"


def test_runs_of_failed_cycles_scheduled_and_reprocess():
    runs = [
        {"dag_run_id": "scheduled__12", "data_interval_start": "2026-11-20T12:00:00Z", "conf": {}},
        {"dag_run_id": "scheduled__11", "data_interval_start": "2026-11-20T11:00:00Z", "conf": {}},
        {
            "dag_run_id": "reprocess__13",
            "data_interval_start": None,
            "conf": {"cycle_start": "2026-11-20T13:00:00Z"},
        },
        {
            "dag_run_id": "other_psp",
            "data_interval_start": None,
            "conf": {"cycle_start": "2026-11-20T13:00:00Z", "psp": "adyen"},
        },
        {"dag_run_id": "no_interval", "data_interval_start": None, "conf": None},
    ]
    assert run_cycle_start(runs[2]) == C13
    assert run_cycle_start(runs[4]) is None
    found = runs_for_failed_cycles(runs, psp="stripe", failed_cycles=[C13, C12])
    assert [(cycle, run["dag_run_id"]) for cycle, run in found] == [
        (C12, "scheduled__12"),
        (C13, "reprocess__13"),
    ]


def test_outcome_and_markdown_in_pt_br():
    attempt = FailedTryLog(C12, "scheduled__12", "match_transactions", 0, 1, "failed", ("ERROR boom",))
    collected = TaskLogsCollection(
        "stripe", (C12,), "collected", (attempt,), ("scheduled__12",), conn_id="airflow_api"
    )
    outcome = describe_outcome(collected, link="http://x/recon/artifacts/1")
    assert outcome.startswith(
        "Logs das tarefas com falha coletados: 1 tentativa com falha (match_transactions)"
    )
    assert "1 linha de erro" in outcome and outcome.endswith("(http://x/recon/artifacts/1)")
    text = render_markdown(collected, window="[12:00, 14:00)")
    assert "## match_transactions — ciclo 2026-11-20T12:00:00+00:00 — tentativa 1" in text
    assert "```text\nERROR boom\n```" in text
    down = TaskLogsCollection("stripe", (C12,), "unavailable", reason="API do Airflow indisponível: refused")
    assert describe_outcome(down).startswith(
        "Logs das tarefas com falha não coletados (1 ciclo com falha): API"
    )
    assert "## Logs não coletados" in render_markdown(down, window="w")
    assert "Colete à mão: `airflow tasks logs` / UI do Airflow." in render_markdown(down, window="w")
    # the heading in the runbook's own words, the facts in pt-BR
    assert text.startswith("# Investigação — Checar Jobs: logs das tarefas com falha — PSP stripe\n")
    assert "- Janela: [12:00, 14:00)" in text and "- Ciclos com falha: 2026-11-20T12:00:00+00:00" in text
    assert "Execução `scheduled__12`, map_index 0, estado `failed`." in text


def test_markdown_in_english():
    from airflow_recon_provider.reconciliation.i18n import use_language

    attempt = FailedTryLog(C12, "scheduled__12", "match_transactions", 0, 1, "failed", ())
    collected = TaskLogsCollection(
        "stripe", (C12,), "collected", (attempt,), ("scheduled__12",), conn_id="airflow_api"
    )
    down = TaskLogsCollection("stripe", (), "unavailable", reason="Airflow API unavailable: refused")
    with use_language("en"):
        text = render_markdown(collected, window="[12:00, 14:00)")
        not_collected = render_markdown(down, window="w")
    assert text.startswith("# Investigation — Check Jobs: logs of the failed tasks — PSP stripe\n")
    assert "- Window: [12:00, 14:00)" in text and "- Failed cycles: 2026-11-20T12:00:00+00:00" in text
    assert (
        "- Source: Airflow's REST API (connection `airflow_api`), DAG `billing_gateway_reconciliation`"
        in text
    )
    assert "## match_transactions — cycle 2026-11-20T12:00:00+00:00 — try 1" in text
    assert (
        "Run `scheduled__12`, map_index 0, state `failed`." in text
        and "No error line at the end of the log." in text
    )
    assert "## Logs not collected" in not_collected and "- Failed cycles: none" in not_collected
    assert "Reason: Airflow API unavailable: refused" in not_collected
    assert "Ciclos" not in text + not_collected and "tentativa" not in text
