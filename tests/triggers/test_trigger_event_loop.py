"""Every trigger of the package runs without blocking the triggerer's event loop (issue 14).

Each trigger class found in the package gets a case: the real parts it talks to (the
session's PostgreSQL, a local PSP health endpoint, the metadata DB through the Task SDK's
execution API) are set up here, then ``loop_probe.py`` runs the trigger, from its
``serialize()`` output, in a fresh process (like the triggerer's runner: the first poll is
the process's first) with asyncio's debug mode, and reports slow callbacks and blocking
calls on the loop thread. Any of them fails the case.

Thresholds: ``slow_callback_duration`` is 0.1 s, half of the triggerer's own warning
threshold (``[triggerer] blocked_main_thread_warning_threshold``, 0.2 s). A sync connect or
connection lookup against local servers takes far less than that, so the timing-free
detectors of the probe (audit and profile hooks: blocking socket connect, DNS, ``open``,
``time.sleep``, a module import, the Task SDK's sync connection lookup, psycopg's sync
connect, ``ReconConfig.load``) are what catch those, on any machine. On a busy 2-core
machine the scheduler may hold a healthy callback past 0.1 s: a case whose only finding
is a slow callback is run once more, in a new process, and fails only if it is slow again
(a blocking call is slow every time; a scheduling hiccup is not).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug import Request, Response

import airflow_recon_provider.triggers as triggers_package
from airflow_recon_provider.get_provider_info import get_provider_info
from airflow_recon_provider.reconciliation.window import floor_cycle

pytestmark = [pytest.mark.integration]

PROBE = Path(__file__).with_name("loop_probe.py")
SLOW_CALLBACK = 0.1
PSP_TOKEN = "tok-loop-s3cret"


def trigger_classes() -> list[type]:
    """Every ``BaseTrigger`` subclass defined in the package's trigger modules and in the
    modules the provider info registers as triggers."""
    from airflow.triggers.base import BaseTrigger

    modules = {
        f"{triggers_package.__name__}.{info.name}" for info in pkgutil.iter_modules(triggers_package.__path__)
    }
    for entry in get_provider_info().get("triggers", []):
        modules.update(entry.get("python-modules", []))
    found = {}
    for name in sorted(modules):
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseTrigger) and cls.__module__ == name and not inspect.isabstract(cls):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[key] for key in sorted(found)]


TRIGGERS = trigger_classes()


# -- cases: the real parts one trigger talks to, and the trigger built over them ----------


def _reconciled(db, psp: str, now_cycle: datetime, statuses: list[str]) -> None:
    """Reconciliation log rows for the cycles before ``now_cycle``, oldest first."""
    for n, status in enumerate(statuses):
        start = now_cycle - timedelta(hours=len(statuses) - n)
        db.execute(
            "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status)"
            " VALUES (%s, %s, %s, %s)",
            (psp, start, start + timedelta(hours=1), status),
        )


@pytest.fixture
def recon_db(db, airflow_conns, monkeypatch):
    """Two configured PSPs; stripe has R$ 5.000,01 captured and missing from its statement
    90 minutes ago (the alert rule breaches), adyen reconciled and quiet."""
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe", "adyen"]}))
    now_cycle = floor_cycle(datetime.now(UTC))
    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference)"
        " VALUES (1, 'stripe', 'r1'), (2, 'adyen', 'a1')"
    )
    db.execute(
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (1, 'capture', 'captured', 500001, 'BRL', %s)",
        (now_cycle - timedelta(minutes=90),),
    )
    for psp in ("stripe", "adyen"):
        _reconciled(db, psp, now_cycle, ["success"] * 3)
    return now_cycle


def case_divergence(request) -> dict[str, Any]:
    """Watch mode (the AssetWatcher's): fires for stripe on the first poll, then keeps
    polling (stripe already fired, adyen quiet) for a second."""
    from airflow_recon_provider.triggers.divergence import DivergenceTrigger

    request.getfixturevalue("recon_db")
    trigger = DivergenceTrigger(psps=["stripe", "adyen"], poll_interval=0.05, once=False)

    def check(report):
        assert [e["psp"] for e in report["events"]] == ["stripe"]
        assert report["events"][0]["reason"] == "amount"

    return {"trigger": trigger, "min_events": 1, "min_seconds": 1.0, "check": check}


def case_recovery(request) -> dict[str, Any]:
    """adyen over the last three cycles: nothing divergent, its two latest cycles
    succeeded: recovered on the first poll (connection lookup, connect, summary queries)."""
    from airflow_recon_provider.triggers.recovery import RecoveryTrigger

    now_cycle = request.getfixturevalue("recon_db")
    trigger = RecoveryTrigger(
        psp="adyen",
        window_start=(now_cycle - timedelta(hours=3)).isoformat(),
        window_end=now_cycle.isoformat(),
        poll_interval=0.05,
    )

    def check(report):
        assert [e["status"] for e in report["events"]] == ["recovered"]
        assert report["events"][0]["latest_cycle_states"] == ["success", "success"]

    return {"trigger": trigger, "min_events": 1, "min_seconds": 0.0, "check": check}


def case_psp_health(request) -> dict[str, Any]:
    """A local PSP health endpoint that answers "degraded" first, then "ok": two polls
    (connection lookup, TLS settings, HTTP request each), one ``success`` event."""
    from airflow_recon_provider.triggers.psp_health import PspHealthTrigger

    httpserver = request.getfixturevalue("httpserver")
    monkeypatch = request.getfixturevalue("monkeypatch")
    requests_seen = []

    def health(req: Request) -> Response:
        assert req.headers.get("Authorization") == f"Bearer {PSP_TOKEN}"
        requests_seen.append(req.path)  # odd requests: degraded, even: ok (each run polls twice)
        status = "degraded" if len(requests_seen) % 2 else "ok"
        return Response(json.dumps({"status": status}), content_type="application/json")

    httpserver.expect_request("/status").respond_with_handler(health)
    conn = {"conn_type": "psp", "host": httpserver.url_for("/").rstrip("/"), "password": PSP_TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", json.dumps(conn))
    trigger = PspHealthTrigger(psp="stripe", poll_interval=0.05, request_timeout=5.0)

    def check(report):
        assert [e["status"] for e in report["events"]] == ["success"]
        assert report["events"][0]["polls"] == 2

    return {"trigger": trigger, "min_events": 1, "min_seconds": 0.0, "check": check}


def case_reprocess(request) -> dict[str, Any]:
    """Two reconciliation runs in the metadata DB, one succeeded and one failed; the
    trigger reads their states through the Task SDK (the in-process execution API) and
    fires ``done`` on its first poll."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    from airflow_recon_provider.triggers.reprocess import ReconciliationRunsTrigger

    request.getfixturevalue("airflow_db")
    dag_id = f"loop_probe_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    cycles = []
    with create_session() as session:
        for hour, state in ((10, DagRunState.SUCCESS), (11, DagRunState.FAILED)):
            run_id = f"reprocess__stripe__{hour}"
            session.add(
                DagRun(dag_id=dag_id, run_id=run_id, run_type=DagRunType.MANUAL, state=state, run_after=now)
            )
            cycles.append(
                {
                    "cycle_start": f"2026-11-20T{hour}:00:00+00:00",
                    "cycle_end": f"2026-11-20T{hour + 1}:00:00+00:00",
                    "run_id": run_id,
                }
            )
    trigger = ReconciliationRunsTrigger(
        dag_id=dag_id,
        psp="stripe",
        cycles=cycles,
        deadline=(now + timedelta(minutes=5)).isoformat(),
        poll_interval=0.05,
    )

    def check(report):
        assert [e["status"] for e in report["events"]] == ["done"]
        runs = report["events"][0]["runs"]
        assert runs["reprocess__stripe__10"] == {"state": "success", "verify_task_states": []}
        assert runs["reprocess__stripe__11"] == {"state": "failed", "verify_task_states": None}

    return {
        "trigger": trigger,
        "min_events": 1,
        "min_seconds": 0.0,
        "check": check,
        "supervisor": "in_process",
    }


#: trigger class name -> its case; a trigger added to the package without one fails below
CASES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "DivergenceTrigger": case_divergence,
    "RecoveryTrigger": case_recovery,
    "PspHealthTrigger": case_psp_health,
    "ReconciliationRunsTrigger": case_reprocess,
}


def run_probe(trigger, *, min_events: int, min_seconds: float, supervisor: str | None, tmp_path) -> dict:
    classpath, kwargs = trigger.serialize()
    spec = {
        "classpath": classpath,
        "kwargs": kwargs,
        "min_events": min_events,
        "min_seconds": min_seconds,
        "timeout": 60.0,
        "slow_callback": SLOW_CALLBACK,
        "supervisor": supervisor,
    }
    name = uuid.uuid4().hex[:8]
    spec_path, report_path = tmp_path / f"spec-{name}.json", tmp_path / f"report-{name}.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(PROBE), str(spec_path), str(report_path)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0 and report_path.exists(), (
        f"the probe of {classpath} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    )
    return json.loads(report_path.read_text())


def describe(report: dict) -> str:
    lines = [f"outcome {report['outcome']} after {report['seconds']} s, {len(report['events'])} event(s)"]
    for finding in report["blocking_calls"]:
        lines.append(f"blocking call on the event loop: {finding['kind']}: {finding['detail']}")
        lines.extend(f"    {frame}" for frame in finding["stack"][-12:])
    lines.extend(f"slow callback: {message[:600]}" for message in report["slow_callbacks"])
    return "\n".join(lines)


def test_every_trigger_has_a_case():
    assert TRIGGERS, "no trigger class found in the package"
    missing = sorted({cls.__name__ for cls in TRIGGERS} - set(CASES))
    assert not missing, f"trigger(s) without an event-loop case in {Path(__file__).name}: {missing}"


@pytest.mark.timeout(420)
@pytest.mark.parametrize("trigger_class", TRIGGERS, ids=lambda cls: cls.__name__)
def test_trigger_never_blocks_the_event_loop(trigger_class, request, tmp_path):
    make_case = CASES.get(trigger_class.__name__)
    assert make_case is not None, (
        f"{trigger_class.__module__}.{trigger_class.__name__} has no event-loop case: add one to CASES"
    )
    case = make_case(request)
    assert type(case["trigger"]) is trigger_class

    def probe() -> dict:
        return run_probe(
            case["trigger"],
            min_events=case["min_events"],
            min_seconds=case["min_seconds"],
            supervisor=case.get("supervisor"),
            tmp_path=tmp_path,
        )

    report = probe()
    assert not report["blocking_calls"], describe(report)
    if report["slow_callbacks"]:  # timing only: see the module docstring
        first = describe(report)
        report = probe()
        assert not report["blocking_calls"] and not report["slow_callbacks"], (
            f"slow again on a second run:\n{describe(report)}\nfirst run:\n{first}"
        )
    assert report["outcome"] in {"run() ended", "ran long enough"}, describe(report)
    case["check"](report)
