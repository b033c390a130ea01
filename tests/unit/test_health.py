"""PSP health domain: status mapping, classification of answers and of in-pod curl output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from airflow_recon_provider.reconciliation.errors import ConfigError
from airflow_recon_provider.reconciliation.health import (
    CURL_TRAILER,
    HealthCheck,
    HealthOutcome,
    PodExecTarget,
    classify_response,
    curl_health_argv,
    curl_stdin,
    parse_curl_output,
    redact_url,
    status_mapping,
    transport_outcome,
    wait_and_fail_sets,
)

AT = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
URL = "https://api.psp.example/v1/status"


def classify(code: int, body: str | bytes, **kwargs) -> HealthCheck:
    return classify_response(psp="stripe", http_status=code, body=body, endpoint=URL, checked_at=AT, **kwargs)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("ok", "healthy"),
        ("UP", "healthy"),
        (" Healthy ", "healthy"),
        ("degraded", "degraded"),
        ("partial", "degraded"),
        ("slow", "degraded"),
        ("down", "down"),
        ("outage", "down"),
        ("error", "down"),
        ("maintenance", "unknown_status"),
    ],
)
def test_default_mapping(status, outcome):
    check = classify(200, json.dumps({"status": status, "version": "1"}))
    assert check.outcome == outcome
    assert check.raw_status == status and check.http_status == 200


def test_custom_mapping_is_layered_over_the_defaults():
    mapping = status_mapping({"Maintenance": "degraded", "ok": "down"})
    assert classify(200, '{"status": "maintenance"}', mapping=mapping).outcome == "degraded"
    assert classify(200, '{"status": "ok"}', mapping=mapping).outcome == "down"
    assert classify(200, '{"status": "up"}', mapping=mapping).outcome == "healthy"


@pytest.mark.parametrize("bad", [{"ok": "fine"}, {"ok": "timeout"}, {"": "healthy"}, ["ok"]])
def test_bad_mapping_is_refused(bad):
    with pytest.raises(ConfigError):
        status_mapping(bad)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("<html>502 Bad Gateway</html>", "not JSON"),
        ("", "empty"),
        ('["ok"]', "not an object"),
        ('{"state": "ok"}', "no 'status' field (fields: state)"),
        ('{"status": 1}', "non-empty text"),
        ('{"status": null}', "non-empty text"),
        ('{"status": {"indicator": "none"}}', "non-empty text"),
    ],
)
def test_malformed_bodies(body, fragment):
    check = classify(200, body)
    assert check.outcome is HealthOutcome.MALFORMED_JSON
    assert fragment in check.detail


@pytest.mark.parametrize(
    ("code", "fragment"),
    [(500, "server error, 5xx"), (503, "5xx"), (404, "client error, 4xx"), (401, "API token"), (302, "302")],
)
def test_http_errors_keep_their_code(code, fragment):
    check = classify(code, "upstream exploded")
    assert check.outcome is HealthOutcome.HTTP_ERROR and check.http_status == code
    assert fragment in check.detail


def test_non_2xx_is_never_healthy_but_a_stated_outage_is_down():
    assert classify(503, '{"status": "down"}').outcome is HealthOutcome.DOWN
    assert classify(503, '{"status": "degraded"}').outcome is HealthOutcome.DEGRADED
    assert classify(500, '{"status": "ok"}').outcome is HealthOutcome.HTTP_ERROR


def test_as_dict_is_plain_json_and_round_trips():
    check = classify(200, '{"status": "ok"}', latency_ms=12.345)
    data = check.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "psp": "stripe",
        "outcome": "healthy",
        "http_status": 200,
        "raw_status": "ok",
        "latency_ms": 12.3,
        "detail": "PSP reports status 'ok'",
        "endpoint": URL,
        "via": "http",
        "checked_at": "2026-11-20T10:05:00+00:00",
    }
    assert HealthCheck.from_dict(data) == check
    assert "healthy (HTTP 200, status 'ok', 12.3 ms)" in check.describe()


def test_endpoint_never_carries_credentials():
    assert redact_url("https://user:pw@psp.example:8443/v1/status?token=abc#x") == (
        "https://psp.example:8443/v1/status"
    )
    check = classify_response(psp="stripe", http_status=200, body="{}", endpoint="https://u:p@h/status?k=v")
    assert check.endpoint == "https://h/status"


def test_transport_outcome_follows_the_wrapped_socket_error():
    refused = ConnectionRefusedError(111, "Connection refused")
    try:
        try:
            raise refused
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert transport_outcome(wrapped) == (HealthOutcome.CONNECTION_REFUSED, "Connection refused")
    assert transport_outcome(RuntimeError(TimeoutError("timed out")))[0] is HealthOutcome.TIMEOUT
    assert transport_outcome(RuntimeError(OSError(-2, "Name or service not known"))) == (
        HealthOutcome.UNREACHABLE,
        "Name or service not known",
    )


def test_wait_for_and_fail_on():
    assert wait_and_fail_sets(None, None) == ({HealthOutcome.HEALTHY}, frozenset())
    wait, fail = wait_and_fail_sets(["healthy", "degraded"], "down")
    assert wait == {"healthy", "degraded"} and fail == {"down"}
    with pytest.raises(ConfigError, match="both"):
        wait_and_fail_sets(["healthy"], ["healthy"])
    with pytest.raises(ConfigError, match="not a health outcome"):
        wait_and_fail_sets(["green"], None)
    with pytest.raises(ConfigError, match="at least one"):
        wait_and_fail_sets([], None)


# -- in-pod curl --------------------------------------------------------------------------------
def test_curl_argv_without_headers_is_the_runbook_command_without_a_shell():
    argv = curl_health_argv(URL, timeout_seconds=5)
    assert argv[:2] == ["curl", "-sS"]
    assert argv[argv.index("--max-time") + 1] == "5"
    assert argv[-2:] == ["--url", URL]
    assert "sh" not in argv


def test_curl_argv_with_headers_reads_them_from_stdin_never_from_the_command_line():
    token = "tok-s3cret"
    argv = curl_health_argv(URL, timeout_seconds=2.5, headers_on_stdin=True)
    assert argv[:2] == ["sh", "-c"] and argv[-1] == URL
    assert "--max-time 2.5" in argv[2]
    stdin = curl_stdin({"Authorization": f"Bearer {token}", "X-Api-Version": "2026-01"})
    assert stdin == f"Authorization: Bearer {token}\nX-Api-Version: 2026-01\n\n"
    assert not any(token in part for part in argv)


@pytest.mark.parametrize("headers", [{"X-Evil": "a\r\nHost: b"}, {"Bad Name": "x"}, {"X": "a\nb"}])
def test_header_injection_is_refused(headers):
    with pytest.raises(ConfigError):
        curl_stdin(headers)


def curl_out(body: str, code: int, seconds: float = 0.0123) -> str:
    return f"{body}\n{CURL_TRAILER} http_code={code} time_total={seconds:.6f}\n"


def parse(returncode, stdout="", stderr="", **kwargs) -> HealthCheck:
    return parse_curl_output(
        psp="stripe",
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        endpoint=URL,
        checked_at=AT,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "outcome", "http_status"),
    [
        (0, curl_out('{"status":"ok"}', 200), "", "healthy", 200),
        (0, curl_out('{"status":"degraded"}', 200), "", "degraded", 200),
        (0, curl_out("upstream exploded", 500), "", "http_error", 500),
        (0, curl_out("", 404), "", "http_error", 404),
        (0, curl_out("garbage", 200), "", "malformed_json", 200),
        (0, curl_out('{"x": 1}', 200), "", "malformed_json", 200),
        (0, curl_out('{"status":"ok"}\n' + CURL_TRAILER + " fake", 200), "", "malformed_json", 200),
        (28, curl_out("", 0), "curl: (28) Operation timed out after 1001 milliseconds", "timeout", None),
        (
            7,
            curl_out("", 0),
            "curl: (7) Failed to connect to h port 1: Connection refused",
            "connection_refused",
            None,
        ),
        (6, "", "curl: (6) Could not resolve host: psp.example", "unreachable", None),
        (60, "", "curl: (60) SSL certificate problem", "unreachable", None),
        (127, "", "sh: curl: not found", "probe_error", None),
        (None, "", "", "probe_error", None),
        (0, '{"status":"ok"}', "", "probe_error", None),
        (3, "", "curl: (3) URL using bad/illegal format", "probe_error", None),
    ],
)
def test_curl_output(returncode, stdout, stderr, outcome, http_status):
    check = parse(returncode, stdout, stderr)
    assert check.outcome == outcome and check.via == "pod"
    assert check.http_status == http_status


def test_curl_latency_comes_from_curl_else_from_the_exec():
    assert parse(0, curl_out('{"status":"ok"}', 200, 0.25)).latency_ms == 250.0
    assert parse(None, exec_latency_ms=1500).latency_ms == 1500.0


def test_pod_target():
    target = PodExecTarget()
    assert str(target) == "kubectl exec -n billing-gateway deploy/billing-gateway"
    assert (target.kind, target.name) == ("deployment", "billing-gateway")
    assert PodExecTarget.from_dict(target.as_dict()) == target
    assert PodExecTarget(workload="pod/bg-1", container="app").kind == "pod"
    with pytest.raises(ConfigError, match="deploy/<name>"):
        PodExecTarget(workload="statefulset/x")
