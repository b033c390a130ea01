"""BillingCoreHook against a local billing-gateway-core (pytest-httpserver): the runbook's
``POST /payments/reconciliation`` with a bearer token, an idempotency key, bounded
retries on 5xx/429/timeouts and no retry on other 4xx."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime

import pytest
from core_api_server import Scripted
from remediation_helpers import CORE_TOKEN

from airflow_recon_provider.hooks.billing_core import BillingCoreHook, parse_retry_after
from airflow_recon_provider.reconciliation.errors import (
    BillingCoreRequestError,
    BillingCoreUnavailableError,
    ConnectionMissingError,
)
from airflow_recon_provider.reconciliation.window import Cycle

CYCLE = Cycle(datetime(2026, 11, 20, 10, tzinfo=UTC))
KEY = "recon-reprocess:stripe:20261120T1000Z:0123456789ab"


def make_hook(**kwargs) -> tuple[BillingCoreHook, list[float]]:
    """A hook whose waits between attempts are recorded instead of slept."""
    waits: list[float] = []
    hook = BillingCoreHook(**{"backoff_seconds": 0.5, "max_backoff_seconds": 4.0, **kwargs})
    hook._sleep = waits.append
    return hook, waits


@pytest.fixture
def logs(caplog, capsys):
    """Everything logged so far: stdlib logging (DEBUG and up) and Airflow's structlog
    output, which goes to stdout."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def read() -> str:
        captured = capsys.readouterr()
        seen.append(caplog.text + captured.out + captured.err)
        return "".join(seen)

    return read


def assert_token_not_logged(logs, *values):
    text = logs()
    assert "Bearer" not in text and CORE_TOKEN not in text
    for value in values:
        assert CORE_TOKEN not in repr(value) and CORE_TOKEN not in str(value)


def test_accepted_request_carries_body_bearer_and_idempotency_key(core_api, core_conn, logs):
    hook, waits = make_hook()
    job = hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert job.as_dict() == {
        "psp": "stripe",
        "cycle_start": "2026-11-20T10:00:00Z",
        "cycle_end": "2026-11-20T11:00:00Z",
        "http_status": 202,
        "status": "queued",
        "job_id": "job-1",
        "idempotency_key": KEY,
    }
    (request,) = core_api.requests
    assert request["method"] == "POST" and request["path"] == "/payments/reconciliation"
    assert request["authorization"] == f"Bearer {CORE_TOKEN}"
    assert request["idempotency_key"] == KEY
    assert request["content_type"] == "application/json"
    assert request["json"] == {
        "psp": "stripe",
        "cycle_start": "2026-11-20T10:00:00Z",
        "cycle_end": "2026-11-20T11:00:00Z",
    }
    assert waits == []
    assert_token_not_logged(logs, job, hook)


def test_500_then_200_is_retried_with_the_same_idempotency_key(core_api, core_conn, logs):
    core_api.script = [Scripted(500, {"error": "db down"}), Scripted(200, {"id": 42, "status": "running"})]
    hook, waits = make_hook()
    job = hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert (job.http_status, job.job_id, job.status) == (200, "42", "running")
    assert [r["idempotency_key"] for r in core_api.requests] == [KEY, KEY]
    assert [r["authorization"] for r in core_api.requests] == [f"Bearer {CORE_TOKEN}"] * 2
    assert waits == [0.5]  # exponential backoff, first step
    text = logs()
    assert "HTTP 500" in text and "attempt 1 of 5" in text
    assert_token_not_logged(logs, job)


def test_429_retry_after_is_honoured(core_api, core_conn, logs):
    core_api.script = [
        Scripted(429, {"error": "slow down"}, headers={"Retry-After": "7"}),
        Scripted(503, {"error": "busy"}),
        Scripted(202, {"job_id": "j-9"}),
    ]
    hook, waits = make_hook()
    job = hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert job.job_id == "j-9"
    assert waits == [7.0, 1.0]  # Retry-After first, then the backoff's second step
    assert len(core_api.requests) == 3
    assert_token_not_logged(logs, job)


def test_retry_after_longer_than_the_limit_gives_up_at_once(core_api, core_conn, logs):
    core_api.script = [Scripted(429, {}, headers={"Retry-After": "3600"})]
    hook, waits = make_hook(max_retry_after_seconds=60)
    with pytest.raises(BillingCoreUnavailableError, match=r"retry after 3600 s, longer than the 60 s") as err:
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert err.value.retryable is False and err.value.retry_after == 3600
    assert len(core_api.requests) == 1 and waits == []
    assert_token_not_logged(logs, err.value)


def test_400_is_a_request_error_and_never_retried(core_api, core_conn, logs):
    core_api.script = [Scripted(400, {"error": "cycle_start must be on the hour"})]
    hook, waits = make_hook()
    with pytest.raises(BillingCoreRequestError, match=r"refused .* HTTP 400 .*on the hour") as err:
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert err.value.status_code == 400
    assert len(core_api.requests) == 1 and waits == []
    assert_token_not_logged(logs, err.value)


def test_401_names_the_token_without_showing_it(core_api, core_conn, logs):
    core_api.script = [Scripted(401, {"error": "bad token"})]
    hook, _ = make_hook()
    with pytest.raises(BillingCoreRequestError, match="check the API token") as err:
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert err.value.status_code == 401
    assert_token_not_logged(logs, err.value)


def test_5xx_gives_up_after_the_bounded_attempts(core_api, core_conn, logs):
    core_api.script = [Scripted(502, "bad gateway")] * 3
    hook, waits = make_hook(max_attempts=3)
    with pytest.raises(BillingCoreUnavailableError, match=r"HTTP 502 .*gave up after 3 attempts") as err:
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert len(core_api.requests) == 3 and waits == [0.5, 1.0]
    assert_token_not_logged(logs, err.value)


def test_timeout_is_retried_then_reported(core_api, core_conn, logs):
    core_api.script = [Scripted(202, {}, delay=0.6), Scripted(202, {}, delay=0.6)]
    hook, waits = make_hook(timeout=0.1, max_attempts=2)
    with pytest.raises(
        BillingCoreUnavailableError, match=r"did not answer .* within 0.1 s .*2 attempts"
    ) as err:
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert waits == [0.5]
    assert_token_not_logged(logs, err.value)


def test_missing_connection_says_how_to_define_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_BILLING_GATEWAY_CORE", raising=False)
    hook, _ = make_hook()
    with pytest.raises(ConnectionMissingError, match="AIRFLOW_CONN_BILLING_GATEWAY_CORE"):
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)


def test_bad_arguments_are_refused_before_any_request(core_api, core_conn):
    hook, _ = make_hook()
    with pytest.raises(ValueError, match="idempotency_key"):
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key="")
    with pytest.raises(Exception, match="not a valid PSP name"):
        hook.trigger_reconciliation("Stripe; DROP", CYCLE, idempotency_key=KEY)
    assert core_api.requests == []


def test_parse_retry_after():
    now = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Fri, 20 Nov 2026 10:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Fri, 20 Nov 2026 09:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_unreachable_core_is_retried_then_reported(monkeypatch, logs):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "password": CORE_TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_CORE", json.dumps(conn))
    hook, waits = make_hook(max_attempts=2)
    with pytest.raises(BillingCoreUnavailableError, match=r"is unreachable .*refused.*2 attempts") as err:
        hook.trigger_reconciliation("stripe", CYCLE, idempotency_key=KEY)
    assert waits == [0.5]
    assert_token_not_logged(logs, err.value)
