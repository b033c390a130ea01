"""PSP health (runbook, Investigação 4) against a local HTTP server: PspHook.check_health
(requests) and acheck_health (httpx), PspHealthTrigger driven with asyncio, PspHealthSensor
under ``dag.test()``, and the in-pod curl path without a cluster (its command run locally).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from werkzeug import Request, Response

from airflow_recon_provider.hooks.pod_exec import ExecResult, PodExec, PodExecError, select_exec_pod
from airflow_recon_provider.hooks.psp import PspHook
from airflow_recon_provider.reconciliation.errors import ConfigError, ConnectionMissingError
from airflow_recon_provider.reconciliation.health import (
    HealthCheck,
    HealthOutcome,
    PodExecTarget,
    curl_health_argv,
    curl_stdin,
    parse_curl_output,
)
from airflow_recon_provider.triggers.psp_health import PspHealthTrigger

TOKEN = "tok-health-s3cret"
SHORT = 0.3  # seconds: the request timeout of the "PSP too slow" case
SLOW = 1.5  # seconds the slow handler sleeps


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_conn(monkeypatch, psp: str, host: str, **extra) -> None:
    conn = {"conn_type": "psp", "host": host, "password": TOKEN}
    if extra:
        conn["extra"] = extra
    monkeypatch.setenv(f"AIRFLOW_CONN_PSP_{psp.upper()}", json.dumps(conn))


@pytest.fixture
def psp(httpserver, monkeypatch) -> str:
    """PSP ``stripe`` whose connection points at the local server, with an API token."""
    set_conn(monkeypatch, "stripe", httpserver.url_for("/").rstrip("/"))
    return "stripe"


_slow_in_flight: list[threading.Event] = []


def slow(request: Request) -> Response:
    done = threading.Event()
    _slow_in_flight.append(done)
    try:
        time.sleep(SLOW)
        return Response('{"status": "ok"}', content_type="application/json")
    finally:
        done.set()


@pytest.fixture(autouse=True)
def _server_idle_after_slow_answers():
    """The test server answers one request at a time: let a slow answer finish before the
    next test talks to it."""
    yield
    while _slow_in_flight:
        _slow_in_flight.pop().wait(timeout=30)


# scenario -> (how the server answers /status, expected outcome, expected HTTP status)
SCENARIOS = {
    "ok": ({"json": {"status": "ok"}}, HealthOutcome.HEALTHY, 200),
    "degraded": ({"json": {"status": "degraded"}}, HealthOutcome.DEGRADED, 200),
    "down": ({"json": {"status": "outage"}}, HealthOutcome.DOWN, 200),
    "unknown": ({"json": {"status": "maintenance"}}, HealthOutcome.UNKNOWN_STATUS, 200),
    "500": ({"data": "upstream exploded", "status": 500}, HealthOutcome.HTTP_ERROR, 500),
    "404": ({"data": "no such page", "status": 404}, HealthOutcome.HTTP_ERROR, 404),
    "garbage": ({"data": "<html>hello</html>", "status": 200}, HealthOutcome.MALFORMED_JSON, 200),
    "no-status": ({"json": {"state": "ok"}}, HealthOutcome.MALFORMED_JSON, 200),
    "slow": ({"handler": slow}, HealthOutcome.TIMEOUT, None),
    "refused": (None, HealthOutcome.CONNECTION_REFUSED, None),
}


def serve(httpserver, monkeypatch, scenario: str) -> None:
    answer = SCENARIOS[scenario][0]
    if answer is None:  # nothing listens on the connection's port
        set_conn(monkeypatch, "stripe", f"http://127.0.0.1:{free_port()}")
        return
    request = httpserver.expect_request("/status")
    if "json" in answer:
        request.respond_with_json(answer["json"])
    elif "handler" in answer:
        request.respond_with_handler(answer["handler"])
    else:
        request.respond_with_data(answer["data"], status=answer["status"])


def check_sync(psp: str, **kwargs) -> HealthCheck:
    return PspHook().check_health(psp, timeout=SHORT, **kwargs)


def check_async(psp: str, **kwargs) -> HealthCheck:
    return asyncio.run(PspHook().acheck_health(psp, timeout=SHORT, **kwargs))


def _logged(capsys, caplog) -> str:
    # Airflow's structured logging writes to stdout, not only to the logging module's handlers
    captured = capsys.readouterr()
    return captured.out + captured.err + caplog.text


@pytest.mark.parametrize("check", [check_sync, check_async], ids=["requests", "httpx"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_answer_is_its_own_outcome(check, scenario, psp, httpserver, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    serve(httpserver, monkeypatch, scenario)
    result = check(psp)
    _, outcome, http_status = SCENARIOS[scenario]
    assert result.outcome is outcome, result.describe()
    assert result.http_status == http_status
    assert result.psp == "stripe" and result.via == "http"
    assert result.endpoint.endswith("/status") and result.detail
    assert result.latency_ms is not None and result.latency_ms >= 0
    data = result.as_dict()
    assert json.loads(json.dumps(data)) == data and data["outcome"] == outcome.value
    assert TOKEN not in json.dumps(data) + result.describe() + _logged(capsys, caplog)


def test_outcomes_are_distinct_and_details_say_why(psp, httpserver, monkeypatch):
    details = {}
    for scenario in SCENARIOS:
        httpserver.clear()
        set_conn(monkeypatch, "stripe", httpserver.url_for("/").rstrip("/"))
        serve(httpserver, monkeypatch, scenario)
        details[scenario] = check_sync(psp)
    failures = {"500", "404", "garbage", "slow", "refused"}
    assert len({details[s].outcome for s in failures}) == len(failures) - 1  # 500 and 404: http_error
    assert "5xx" in details["500"].detail and "4xx" in details["404"].detail
    assert "not JSON" in details["garbage"].detail
    assert "no 'status' field" in details["no-status"].detail
    assert "0.3 s" in details["slow"].detail
    assert "refused" in details["refused"].detail.lower()
    assert "maintenance" in details["unknown"].detail


def test_bearer_token_and_health_endpoint_extra(httpserver, monkeypatch):
    seen = []

    def record(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response('{"status": "UP"}', content_type="application/json")

    httpserver.expect_request("/v1/health").respond_with_handler(record)
    set_conn(
        monkeypatch,
        "adyen",
        httpserver.url_for("/v1"),
        health_endpoint="health",
        **{"X-Api-Version": "2026-01"},
    )
    sync, async_ = check_sync("adyen"), check_async("adyen")
    assert sync.outcome is async_.outcome is HealthOutcome.HEALTHY
    assert sync.endpoint == async_.endpoint == httpserver.url_for("/v1/health")
    for headers in seen:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["X-Api-Version"] == "2026-01"
        assert "Health_endpoint" not in headers and "health_endpoint" not in headers


def test_custom_status_mapping(psp, httpserver):
    httpserver.expect_request("/status").respond_with_json({"status": "maintenance"})
    assert check_sync(psp).outcome is HealthOutcome.UNKNOWN_STATUS
    assert check_sync(psp, status_mapping={"maintenance": "degraded"}).outcome is HealthOutcome.DEGRADED
    assert check_async(psp, status_mapping={"maintenance": "down"}).outcome is HealthOutcome.DOWN
    with pytest.raises(ConfigError):
        check_sync(psp, status_mapping={"maintenance": "meh"})


def test_missing_connection_says_how_to_define_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PSP_NOPE", raising=False)
    with pytest.raises(ConnectionMissingError, match="AIRFLOW_CONN_PSP_NOPE"):
        check_sync("nope")
    with pytest.raises(ConnectionMissingError, match="AIRFLOW_CONN_PSP_NOPE"):
        check_async("nope")


# -- trigger ------------------------------------------------------------------------------------
class Sequence_:
    """Answers /status with the given (body, status) pairs in turn, the last one forever."""

    def __init__(self, *answers: tuple[str, int]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, request: Request) -> Response:
        body, status = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if body == "SLOW":
            return slow(request)
        return Response(body, status=status, content_type="application/json")


def first_event(trigger: PspHealthTrigger):
    async def run():
        async for event in trigger.run():
            return event
        return None

    return asyncio.run(asyncio.wait_for(run(), timeout=60))


def test_trigger_waits_through_degraded_until_healthy(psp, httpserver):
    answers = Sequence_(('{"status": "degraded"}', 200), ('{"status": "ok"}', 200))
    httpserver.expect_request("/status").respond_with_handler(answers)
    event = first_event(PspHealthTrigger(psp=psp, poll_interval=0.01, request_timeout=5))
    assert event.payload["status"] == "success" and event.payload["polls"] == 2
    check = HealthCheck.from_dict(event.payload["check"])
    assert check.outcome is HealthOutcome.HEALTHY and check.raw_status == "ok"
    assert answers.calls == 2
    json.dumps(event.payload)


def test_trigger_logs_every_failure_and_keeps_polling(psp, httpserver, capsys, caplog):
    answers = Sequence_(
        ("upstream exploded", 500),
        ("garbage", 200),
        ("SLOW", 200),
        ('{"status": "ok"}', 200),
    )
    httpserver.expect_request("/status").respond_with_handler(answers)
    trigger = PspHealthTrigger(psp=psp, poll_interval=0.01, request_timeout=SHORT)
    event = first_event(trigger)
    # the server answers one request at a time: polls made while it sleeps time out too
    assert event.payload["status"] == "success" and event.payload["polls"] >= 4
    logged = _logged(capsys, caplog)
    for outcome in ("http_error", "malformed_json", "timeout", "healthy"):
        assert f": {outcome} (" in logged, outcome
    assert TOKEN not in logged


def test_trigger_fail_on_ends_with_a_failed_event(psp, httpserver):
    httpserver.expect_request("/status").respond_with_json({"status": "down"}, status=503)
    event = first_event(PspHealthTrigger(psp=psp, fail_on=["down"], poll_interval=0.01))
    assert event.payload["status"] == "failed"
    assert event.payload["check"]["outcome"] == "down" and event.payload["check"]["http_status"] == 503


def test_trigger_survives_a_missing_connection_and_a_refused_port(monkeypatch, capsys, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_PSP_GHOST", raising=False)
    trigger = PspHealthTrigger(psp="ghost", poll_interval=0.01)
    assert asyncio.run(trigger.check_once()) is None
    assert "'psp_ghost' is not defined" in _logged(capsys, caplog)
    set_conn(monkeypatch, "ghost", f"http://127.0.0.1:{free_port()}")
    assert asyncio.run(trigger.check_once()).outcome is HealthOutcome.CONNECTION_REFUSED


@pytest.mark.parametrize("via", ["http", "pod"])
def test_trigger_serialize_round_trip(via):
    trigger = PspHealthTrigger(
        psp="stripe",
        conn_id="psp_stripe_eu",
        wait_for=["healthy", "degraded"],
        fail_on=["down"],
        status_mapping={"maintenance": "degraded"},
        poll_interval=30,
        request_timeout=5,
        via=via,
        pod={"namespace": "billing-gateway", "workload": "deploy/billing-gateway", "container": "app"},
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_recon_provider.triggers.psp_health.PspHealthTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    again = PspHealthTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert (kwargs["pod"] is None) == (via == "http")


def test_trigger_refuses_bad_settings():
    with pytest.raises(ConfigError):
        PspHealthTrigger(psp="stripe", wait_for=["healthy"], fail_on=["healthy"])
    with pytest.raises(ConfigError):
        PspHealthTrigger(psp="stripe", via="kubectl")
    with pytest.raises(ConfigError):
        PspHealthTrigger(psp="stripe", status_mapping={"ok": "perfect"})


# -- sensor under dag.test() ------------------------------------------------------------------
def health_dag(dag_id: str, **sensor_kwargs):
    from airflow.sdk import DAG

    from airflow_recon_provider.sensors.psp_health import PspHealthSensor

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 11, 1, tzinfo=UTC), catchup=False) as dag:
        PspHealthSensor(task_id="psp_health", psp="stripe", poke_interval=0.05, timeout=120, **sensor_kwargs)
    return dag


@pytest.mark.timeout(180)
def test_sensor_defers_and_returns_the_health_check(psp, httpserver, register_dag):
    # first check (the poke before deferring) and the trigger's first poll: degraded; then ok
    answers = Sequence_(
        ('{"status": "degraded"}', 200), ('{"status": "degraded"}', 200), ('{"status": "ok"}', 200)
    )
    httpserver.expect_request("/status").respond_with_handler(answers)
    dag = register_dag(health_dag("psp_health_deferrable"))
    run = dag.test()
    ti = run.get_task_instance("psp_health")
    assert ti.state == "success"
    assert answers.calls == 3  # the first poke did not succeed, the trigger polled twice
    value = ti.xcom_pull(task_ids="psp_health")
    assert value["outcome"] == "healthy" and value["raw_status"] == "ok" and value["http_status"] == 200
    assert value["psp"] == "stripe" and value["via"] == "http" and value["endpoint"].endswith("/status")
    assert ti.xcom_pull(task_ids="psp_health", key="health_check") == value


@pytest.mark.timeout(180)
def test_sensor_poke_mode_fail_on_fails_with_the_outcome_in_xcom(psp, httpserver, register_dag):
    httpserver.expect_request("/status").respond_with_data("upstream exploded", status=500)
    dag = register_dag(health_dag("psp_health_fail_on", deferrable=False, fail_on=["http_error"]))
    run = dag.test()
    ti = run.get_task_instance("psp_health")
    assert ti.state == "failed"
    seen = ti.xcom_pull(task_ids="psp_health", key="health_check")
    assert seen["outcome"] == "http_error" and seen["http_status"] == 500


def test_execute_complete_checks_the_event():
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from airflow_recon_provider.sensors.psp_health import PspHealthSensor

    sensor = PspHealthSensor(task_id="t", psp="stripe", fail_on=["down"])
    pushed = []
    context = {"ti": SimpleNamespace(xcom_push=lambda key, value: pushed.append((key, value)))}
    healthy = HealthCheck(psp="stripe", outcome="healthy", detail="ok", checked_at=datetime.now(UTC))
    down = HealthCheck(psp="stripe", outcome="down", detail="outage", checked_at=datetime.now(UTC))
    for event in (None, {"status": "success"}, {"status": "error", "check": healthy.as_dict()}):
        with pytest.raises(AirflowException, match="without a health check"):
            sensor.execute_complete(context, event)
    assert (
        sensor.execute_complete(context, {"status": "success", "check": healthy.as_dict()})
        == healthy.as_dict()
    )
    with pytest.raises(AirflowFailException, match="down, one of fail_on"):
        sensor.execute_complete(context, {"status": "failed", "check": down.as_dict()})
    assert [value["outcome"] for _, value in pushed] == ["healthy", "down"]
    with pytest.raises(ConfigError):
        PspHealthSensor(task_id="t2", psp="stripe", wait_for=["green"])


# -- in-pod mode, without a cluster -------------------------------------------------------------
needs_curl = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("sh")), reason="needs curl and sh")


def run_locally(argv, stdin=None, timeout=30.0) -> ExecResult:
    """What the pod exec does, on this machine: same argv, same stdin."""
    started = time.monotonic()
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    return ExecResult("local", "local", done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@needs_curl
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_curl_in_pod_classifies_like_the_http_path(scenario, psp, httpserver, monkeypatch):
    serve(httpserver, monkeypatch, scenario)
    url = PspHook().health_request(PspHook().get_psp_connection(psp)).url
    result = run_locally(curl_health_argv(url, timeout_seconds=SHORT))
    check = parse_curl_output(
        psp=psp,
        returncode=result.returncode,
        stdout=result.stdout,
        stderr=result.stderr,
        endpoint=url,
        timeout_seconds=SHORT,
    )
    _, outcome, http_status = SCENARIOS[scenario]
    assert check.outcome is outcome, check.describe()
    assert check.http_status == http_status and check.via == "pod"


@needs_curl
def test_hook_pod_mode_passes_headers_on_stdin(httpserver, monkeypatch):
    seen = []

    def record(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response('{"status": "degraded"}', content_type="application/json")

    httpserver.expect_request("/status").respond_with_handler(record)
    set_conn(monkeypatch, "stripe", httpserver.url_for("/").rstrip("/"), **{"X-Api-Version": "2026-01"})
    calls = []

    class LocalExec:
        def __init__(self, target):
            self.target = target

        def run(self, argv, *, stdin=None, timeout):
            calls.append({"argv": argv, "stdin": stdin, "target": self.target})
            return run_locally(argv, stdin, timeout)

    hook = PspHook()
    monkeypatch.setattr(hook, "_pod_exec", LocalExec)
    check = hook.check_health_from_pod("stripe", timeout=5)
    assert check.outcome is HealthOutcome.DEGRADED and check.via == "pod" and check.http_status == 200
    (call,) = calls
    assert call["target"] == PodExecTarget()
    assert not any(TOKEN in part for part in call["argv"])
    assert call["stdin"] == f"X-Api-Version: 2026-01\nAuthorization: Bearer {TOKEN}\n\n"
    assert seen[0]["Authorization"] == f"Bearer {TOKEN}" and seen[0]["X-Api-Version"] == "2026-01"
    assert seen[0]["Accept"] == "application/json"


def test_hook_pod_mode_exec_failure_is_probe_error(psp, monkeypatch):
    class BrokenExec:
        def __init__(self, target):
            pass

        def run(self, argv, *, stdin=None, timeout):
            raise PodExecError(
                "deployment billing-gateway in namespace billing-gateway has no running, ready pod"
            )

    hook = PspHook()
    monkeypatch.setattr(hook, "_pod_exec", BrokenExec)
    check = hook.check_health_from_pod(psp, timeout=5)
    assert check.outcome is HealthOutcome.PROBE_ERROR and check.via == "pod"
    assert check.detail.startswith("kubectl exec -n billing-gateway deploy/billing-gateway: deployment")


# Kubernetes objects built with the official client's models, and a stand-in for its exec
# stream with the same methods (is_open, update, peek/read_stdout/stderr, write_stdin,
# close_channel, returncode, close): no cluster is involved.
def k8s_pod(name, *, phase="Running", ready_since=None, deleting=False, containers=("app",), default=None):
    from kubernetes.client import (
        V1Container,
        V1ObjectMeta,
        V1Pod,
        V1PodCondition,
        V1PodSpec,
        V1PodStatus,
    )

    conditions = [V1PodCondition(type="Ready", status="True" if ready_since else "False")]
    if ready_since:
        conditions[0].last_transition_time = ready_since
    return V1Pod(
        metadata=V1ObjectMeta(
            name=name,
            deletion_timestamp=datetime(2026, 1, 1, tzinfo=UTC) if deleting else None,
            annotations={"kubectl.kubernetes.io/default-container": default} if default else None,
        ),
        spec=V1PodSpec(containers=[V1Container(name=c) for c in containers]),
        status=V1PodStatus(phase=phase, conditions=conditions),
    )


def test_select_exec_pod_picks_a_ready_running_pod_like_kubectl():
    early, late = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    pods = [
        k8s_pod("bg-pending", phase="Pending"),
        k8s_pod("bg-not-ready"),
        k8s_pod("bg-new", ready_since=late),
        k8s_pod("bg-old-terminating", ready_since=early, deleting=True),
        k8s_pod("bg-old", ready_since=early),
    ]
    assert select_exec_pod(pods).metadata.name == "bg-old"
    assert select_exec_pod(pods[:2]) is None


class FakeExecStream:
    def __init__(self, stdout: str, stderr: str, returncode: int) -> None:
        self.out, self.err, self.rc = [stdout], [stderr], returncode
        self.stdin: list[str] = []
        self.closed_channels: list[int] = []
        self.updates = 0
        self.closed = False

    def is_open(self):
        return self.updates < 2

    def update(self, timeout=0):
        self.updates += 1

    def peek_stdout(self, timeout=0):
        return bool(self.out and self.out[0])

    def read_stdout(self, timeout=None):
        return self.out.pop()

    def peek_stderr(self, timeout=0):
        return bool(self.err and self.err[0])

    def read_stderr(self, timeout=None):
        return self.err.pop()

    def write_stdin(self, data):
        self.stdin.append(data)

    def close_channel(self, channel):
        self.closed_channels.append(channel)

    @property
    def returncode(self):
        return self.rc

    def close(self):
        self.closed = True


def test_pod_exec_resolves_the_deployment_and_runs_the_command(monkeypatch):
    from kubernetes.client import (
        V1Deployment,
        V1DeploymentSpec,
        V1LabelSelector,
        V1PodList,
        V1PodTemplateSpec,
    )

    ready = datetime(2026, 11, 1, tzinfo=UTC)
    calls = {}

    class Apps:
        def read_namespaced_deployment(self, name, namespace):
            calls["deployment"] = (name, namespace)
            return V1Deployment(
                spec=V1DeploymentSpec(
                    selector=V1LabelSelector(match_labels={"app": "billing-gateway"}),
                    template=V1PodTemplateSpec(),
                )
            )

    class Core:
        def list_namespaced_pod(self, namespace, label_selector):
            calls["selector"] = label_selector
            pod = k8s_pod("bg-1", ready_since=ready, containers=("istio-proxy", "app"), default="app")
            return V1PodList(items=[pod])

        def connect_get_namespaced_pod_exec(self, *args, **kwargs):  # called through stream()
            raise AssertionError("stream() is replaced in this test")

    stream = FakeExecStream('{"status":"ok"}\n__recon_psp_health__ http_code=200 time_total=0.01\n', "", 0)

    def fake_stream(api_method, **kwargs):
        calls["exec"] = kwargs
        return stream

    monkeypatch.setattr("kubernetes.stream.stream", fake_stream)
    pod_exec = PodExec(PodExecTarget())
    pod_exec.__dict__["hook"] = SimpleNamespace(core_v1_client=Core(), apps_v1_client=Apps())
    argv = curl_health_argv("https://psp.example/status", timeout_seconds=5, headers_on_stdin=True)
    result = pod_exec.run(argv, stdin=curl_stdin({"Authorization": "Bearer x"}), timeout=20)
    assert calls["deployment"] == ("billing-gateway", "billing-gateway")
    assert calls["selector"] == "app=billing-gateway"
    assert calls["exec"] == {
        "name": "bg-1",
        "namespace": "billing-gateway",
        "container": "app",
        "command": argv,
        "stdin": True,
        "stdout": True,
        "stderr": True,
        "tty": False,
        "_preload_content": False,
    }
    assert stream.stdin == ["Authorization: Bearer x\n\n"] and stream.closed_channels == [0]
    assert (result.pod, result.container, result.returncode) == ("bg-1", "app", 0)
    assert result.stdout.startswith('{"status":"ok"}') and stream.closed
