"""PspHook against a local HTTP server: pagination, bearer token, retries, timeouts, errors."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from psp_api_server import paged

from airflow_recon_provider.hooks.psp import PspHook
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError
from airflow_recon_provider.reconciliation.statements import (
    PspRequestError,
    PspUnavailableError,
    StatementFormatError,
)
from airflow_recon_provider.reconciliation.window import Window

CYCLE = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
TOKEN = "tok-s3cret-value"


def lines(n: int) -> list[dict]:
    return [
        {
            "provider_reference": f"r{i}",
            "transaction_type": "capture",
            "status": "captured",
            "amount_minor": 100 * i,
            "currency": "BRL",
            "occurred_at": f"2026-11-20T10:{i:02d}:00Z",
        }
        for i in range(n)
    ]


@pytest.fixture
def psp_conn(httpserver, monkeypatch):
    """Connection psp_stripe (type psp) on the local server, with an API token."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_PSP_STRIPE",
        json.dumps({"conn_type": "psp", "host": httpserver.url_for("/").rstrip("/"), "password": TOKEN}),
    )
    return "psp_stripe"


def fast_hook(**kwargs) -> PspHook:
    return PspHook(**{"backoff_seconds": 0, "timeout": 5, **kwargs})


def test_pages_are_followed_and_bearer_token_sent(psp_api, psp_conn, caplog):
    psp_api.statements["stripe"] = paged("st-42", lines(5), per_page=2)
    caplog.set_level(logging.DEBUG)
    statement = fast_hook().fetch_statement("stripe", CYCLE)
    assert statement.statement_id == "st-42" and statement.pages == 3
    assert [line.provider_reference for line in statement.lines] == [f"r{i}" for i in range(5)]
    assert statement.amount_minor == 1000
    sent = psp_api.requests_for("stripe")
    assert [r.get("page") for r in sent] == [None, "p1", "p2"]
    assert {(r["from"], r["to"]) for r in sent} == {("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")}
    assert {r["authorization"] for r in sent} == {f"Bearer {TOKEN}"}
    assert TOKEN not in caplog.text


def test_no_token_no_authorization_header(psp_api, httpserver, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PSP_ADYEN", httpserver.url_for("/"))
    fast_hook().fetch_statement("adyen", CYCLE)
    assert psp_api.requests_for("adyen")[0]["authorization"] is None


def test_explicit_connection_id(psp_api, psp_conn):
    statement = fast_hook(psp_conn_id=psp_conn).fetch_statement("adyen", CYCLE)
    assert statement.statement_id == "adyen-empty"
    assert psp_api.requests_for("adyen")[0]["authorization"] == f"Bearer {TOKEN}"


def test_5xx_is_retried_a_bounded_number_of_times(psp_api, psp_conn):
    psp_api.failures["stripe"] = 500
    with pytest.raises(PspUnavailableError, match=r"HTTP 500.*gave up after 3 attempts"):
        fast_hook(max_attempts=3).fetch_statement("stripe", CYCLE)
    assert len(psp_api.requests_for("stripe")) == 3


def test_transient_5xx_recovers(psp_api, psp_conn):
    psp_api.statements["stripe"] = paged("st-1", lines(1), per_page=10)
    calls = []

    def flaky(request):
        calls.append(1)
        if len(calls) == 1:
            psp_api.failures["stripe"] = 503
        else:
            psp_api.failures.pop("stripe", None)

    psp_api.before = flaky
    assert len(fast_hook().fetch_statement("stripe", CYCLE)) == 1
    assert len(calls) == 2


def test_4xx_is_not_retried(psp_api, psp_conn):
    psp_api.failures["stripe"] = 401
    with pytest.raises(PspRequestError, match=r"HTTP 401.*API token"):
        fast_hook().fetch_statement("stripe", CYCLE)
    assert len(psp_api.requests_for("stripe")) == 1


def test_timeout_applies(psp_api, psp_conn, caplog):
    psp_api.before = lambda request: time.sleep(1.0)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PspUnavailableError, match=r"did not answer .* within 0\.2 s"):
        fast_hook(timeout=0.2, max_attempts=2).fetch_statement("stripe", CYCLE)
    # the first attempt gave up at the timeout and the retry opened a new connection
    assert caplog.text.count("Starting new HTTP connection") == 2


def test_connection_refused(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", f"http://127.0.0.1:{port}/")
    with pytest.raises(PspUnavailableError, match=r"unreachable.*(?i:connection refused).*2 attempts"):
        fast_hook(max_attempts=2).fetch_statement("stripe", CYCLE)


def test_malformed_json_and_invalid_statement(psp_api, psp_conn):
    psp_api.raw["stripe"] = '{"statement_id": "st-1", "lines": [}'
    with pytest.raises(StatementFormatError, match="not valid JSON"):
        fast_hook().fetch_statement("stripe", CYCLE)
    bad = lines(2)
    bad[1]["amount_minor"] = 12.5
    psp_api.raw.clear()
    psp_api.statements["stripe"] = paged("st-1", bad, per_page=1)
    with pytest.raises(StatementFormatError, match=r"line 2 \(provider_reference 'r1'\).*amount_minor"):
        fast_hook().fetch_statement("stripe", CYCLE)


def test_pagination_loop_is_refused(psp_api, psp_conn):
    psp_api.statements["stripe"] = [
        {"statement_id": "st-1", "lines": [], "next_page": "p1"},
        {"statement_id": "st-1", "lines": [], "next_page": "p1"},
    ]
    with pytest.raises(StatementFormatError, match="loops"):
        fast_hook().fetch_statement("stripe", CYCLE)


def test_missing_connection_says_how_to_define_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PSP_NOPE", raising=False)
    with pytest.raises(ConnectionMissingError, match=r"psp_nope.*AIRFLOW_CONN_PSP_NOPE"):
        fast_hook().fetch_statement("nope", CYCLE)


def test_base_url_defaults_to_https_and_auth_repr_hides_token(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PSP_STRIPE",
        json.dumps({"conn_type": "psp", "host": "api.psp.example", "password": TOKEN}),
    )
    hook = PspHook()
    session = hook._session_for("psp_stripe")
    assert hook.base_url == "https://api.psp.example"
    assert hook.url_from_endpoint("statements") == "https://api.psp.example/statements"
    assert TOKEN not in repr(session.auth)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="timeout"):
        PspHook(timeout=0)
    with pytest.raises(ValueError, match="max_attempts"):
        PspHook(max_attempts=0)
