"""Dependency faults: PostgreSQL restarted under the triggers and under a streaming snapshot,
and a PSP that answers 429 or fails in the middle of a paginated statement.

PostgreSQL here is ``dedicated_pg`` (conftest): a server of this folder alone, stopped and
started by the tests. A restart *during* a poll is made deterministic: the test holds an
``ACCESS EXCLUSIVE`` lock on ``payment_transactions``, sees the trigger's query wait for it
in ``pg_stat_activity``, and only then stops the server. A restart *in the middle of a COPY*
goes through :class:`TcpProxy`, which holds the server's bytes back once part of the CSV has
reached the hook (the backend is then seen in ``ClientWrite``).

The PSP's statements API and billing-gateway-core each fail four ways (HTTP 500, 429 with
Retry-After, slower than the timeout, connection refused), Kafka is unreachable; SMTP down
and Slack refusing its token are in ``test_secrets_and_privileges.py`` (a real DAG run).
The hooks' own folders test more shapes of each (tests/dags/test_psp_hook.py,
tests/remediation/test_billing_core_hook.py, tests/integration/test_reconciliation_events.py,
tests/incidents/).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from reliability_support import FIGURES, TcpProxy, table_checksums, wait_for_backend
from werkzeug import Response

pytestmark = pytest.mark.integration

NOW_CYCLE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
NOW = NOW_CYCLE + timedelta(minutes=5)
RECON_CONFIG = {"psps": ["stripe", "adyen"]}


def _airflow_uri(host: str, port: int, db: str, user: str = "postgres", password: str | None = None) -> str:
    secret = f":{password}" if password else ""
    return f"postgresql://{user}{secret}@{host}:{port}/{db}"


def _logged(capsys) -> str:
    captured = capsys.readouterr()  # Airflow's structured logging writes to stdout
    return captured.out + captured.err


@pytest.fixture
def gateway(dedicated_pg, dedicated_db, monkeypatch):
    """The dedicated server's fresh database as ``billing_gateway_db``; an autocommit
    connection to it (reopened by :func:`reconnect` after a restart)."""
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    monkeypatch.setenv(
        "AIRFLOW_CONN_BILLING_GATEWAY_DB", _airflow_uri("127.0.0.1", dedicated_pg.port, dedicated_db)
    )
    # the recovery trigger also reads the ledger (here in the same database)
    monkeypatch.setenv(
        "AIRFLOW_CONN_PAYMENTS_LEDGER_DB", _airflow_uri("127.0.0.1", dedicated_pg.port, dedicated_db)
    )
    return dedicated_pg.url(dedicated_db)


def _seed_triggers(url: str) -> None:
    """stripe: 6000.00 missing in the PSP statement in the last cycles (alert), reconciled;
    adyen: clean and reconciled (no alert; recovered)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference) VALUES"
            " (1,'stripe','r1'),(2,'adyen','a1')"
        )
        at = NOW_CYCLE - timedelta(minutes=90)
        db.execute(
            "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor,"
            " currency, created_at) VALUES (1,'capture','captured',600000,'BRL',%s),"
            " (2,'capture','captured',100,'BRL',%s)",
            (at, at),
        )
        db.execute(
            "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
            " amount_minor, currency, occurred_at, statement_id)"
            " VALUES ('adyen','a1','capture','captured',100,'BRL',%s,'s')",
            (at,),
        )
        db.execute(
            "INSERT INTO ledger.transactions (psp, provider_reference, status, amount_minor, currency,"
            " occurred_at) VALUES ('stripe','r1','captured',600000,'BRL',%s),"
            " ('adyen','a1','captured',100,'BRL',%s)",
            (at, at),
        )
        for psp in ("stripe", "adyen"):
            for n in range(3, 0, -1):
                start = NOW_CYCLE - timedelta(hours=n)
                db.execute(
                    "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status)"
                    " VALUES (%s, %s, %s, 'success')",
                    (psp, start, start + timedelta(hours=1)),
                )


def _restart_during(url: str, dedicated_pg, work) -> object:
    """Run ``work`` (a coroutine factory) while the test holds a lock its query needs; once
    the query is seen waiting, stop the server, then start it again. Returns what ``work``
    returned (or the exception it raised)."""
    outcome: dict[str, object] = {}

    def runner() -> None:
        try:
            outcome["value"] = asyncio.run(work())
        except BaseException as exc:  # reported to the test
            outcome["value"] = exc

    monitor = psycopg.connect(url, autocommit=True)
    blocker = psycopg.connect(url)
    blocker.execute("LOCK TABLE payment_transactions IN ACCESS EXCLUSIVE MODE")
    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    try:
        wait_for_backend(monitor, '"payment_transactions"')
        dedicated_pg.stop()  # fast shutdown: every session, the trigger's included, ends
        FIGURES.fault("postgres_restart")
        thread.join(60)
        assert not thread.is_alive(), "the trigger hung after the server went away"
    finally:
        for conn in (monitor, blocker):
            try:
                conn.close()
            except Exception:
                pass
        if not dedicated_pg.running():
            dedicated_pg.start()
    return outcome["value"]


@pytest.mark.timeout(120)
def test_divergence_trigger_never_alerts_on_a_restart_and_alerts_after_it(gateway, dedicated_pg, capsys):
    from airflow_recon_provider.triggers.divergence import DivergenceTrigger

    _seed_triggers(gateway)
    trigger = DivergenceTrigger(psps=["stripe", "adyen"], poll_interval=0.01)

    # server down: no alert, the reason is logged
    dedicated_pg.stop()
    FIGURES.fault("postgres_down")
    try:
        assert asyncio.run(trigger.poll_once(set(), now=NOW)) == []
        logged = _logged(capsys)
        # logged as an outage, not as bad input about a PSP
        assert (
            "divergence check skipped this poll, database unavailable" in logged and "unreachable" in logged
        )
        assert "not checked:" not in logged
    finally:
        dedicated_pg.start()

    # restarted while its classification query runs: no alert either
    payloads = _restart_during(gateway, dedicated_pg, lambda: trigger.poll_once(set(), now=NOW))
    assert payloads == []
    logged = _logged(capsys)
    assert "divergence check failed this poll" in logged or "divergence check skipped this poll" in logged

    # back: the breaching PSP alerts, the clean one does not
    payloads = asyncio.run(trigger.poll_once(set(), now=NOW))
    assert [p["psp"] for p in payloads] == ["stripe"]
    assert payloads[0]["divergent_amount_minor"] == 600000


@pytest.mark.timeout(120)
def test_recovery_trigger_never_says_recovered_on_a_restart_and_does_after_it(gateway, dedicated_pg, capsys):
    from airflow_recon_provider.reconciliation.errors import DatabaseUnavailableError
    from airflow_recon_provider.triggers.recovery import RecoveryTrigger

    _seed_triggers(gateway)
    window = {
        "window_start": (NOW_CYCLE - timedelta(hours=3)).isoformat(),
        "window_end": NOW_CYCLE.isoformat(),
    }
    recovered = RecoveryTrigger(psp="adyen", poll_interval=0.01, **window)
    diverging = RecoveryTrigger(psp="stripe", poll_interval=0.01, **window)

    async def polls_while_down(trigger: RecoveryTrigger, n: int) -> bool:
        """Let ``trigger.run()`` poll ``n`` times against a stopped server; True when it
        yielded an event meanwhile (it must not)."""
        events = trigger.run()
        step = asyncio.ensure_future(anext(events))
        seen = ""
        while seen.count(f"recovery of {trigger.psp} not checked this poll") < n and not step.done():
            await asyncio.sleep(0.02)
            seen += _logged(capsys)
        fired = step.done() and step.exception() is None
        step.cancel()
        try:
            await step
        except asyncio.CancelledError:
            pass
        await events.aclose()
        return fired

    dedicated_pg.stop()
    FIGURES.fault("postgres_down")
    try:
        with pytest.raises(DatabaseUnavailableError, match="'billing_gateway_db' is unreachable"):
            asyncio.run(recovered.check())
        assert asyncio.run(polls_while_down(recovered, 3)) is False
    finally:
        dedicated_pg.start()

    # restarted in the middle of a check: an error, never "recovered"
    result = _restart_during(gateway, dedicated_pg, recovered.check)
    assert isinstance(result, Exception), result

    # back: the clean PSP is recovered at the first poll, the diverging one is not
    async def first_event(trigger: RecoveryTrigger):
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(asyncio.wait_for(first_event(recovered), 60))
    assert payload["status"] == "recovered" and payload["latest_cycle_states"] == ["success", "success"]
    still = asyncio.run(diverging.check())
    assert still["status"] == "not_recovered" and still["divergent_amount_minor"] == 600000


def _seed_snapshot(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference)"
            " SELECT g, 'stripe', 'ref-' || g FROM generate_series(1, %s) AS g",
            (rows,),
        )
        db.execute(
            """INSERT INTO payment_transactions
               (intent_id, transaction_type, status, amount_minor, currency, created_at, processed_at)
               SELECT g, 'capture', 'captured', 1000 + g, 'BRL',
                      timestamptz '2026-11-20 10:00Z' + g * interval '10 ms', NULL
               FROM generate_series(1, %s) AS g""",
            (rows,),
        )


@pytest.mark.timeout(180)
def test_snapshot_interrupted_by_a_restart_fails_clearly_and_leaves_no_file(
    gateway, dedicated_pg, dedicated_db, monkeypatch, tmp_path
):
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation.errors import DatabaseUnavailableError
    from airflow_recon_provider.reconciliation.window import Window

    rows = 40_000
    _seed_snapshot(gateway, rows)
    window = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    out_dir = tmp_path / "artifacts"
    target = out_dir / "snapshot_stripe.csv"

    def leftovers() -> list[Path]:
        return sorted(out_dir.iterdir()) if out_dir.exists() else []

    # the server is down before the snapshot starts: a clear error, no file
    dedicated_pg.stop()
    FIGURES.fault("postgres_down")
    try:
        with pytest.raises(DatabaseUnavailableError, match="'billing_gateway_db' is unreachable"):
            BillingGatewayHook().snapshot_to_csv("stripe", window, target)
        assert leftovers() == []
    finally:
        dedicated_pg.start()

    # restarted in the middle of the stream
    proxy = TcpProxy("127.0.0.1", dedicated_pg.port)
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", _airflow_uri("127.0.0.1", proxy.port, dedicated_db))
    outcome: dict[str, object] = {}

    def snapshot() -> None:
        try:
            outcome["value"] = BillingGatewayHook().snapshot_to_csv("stripe", window, target)
        except BaseException as exc:  # reported to the test
            outcome["value"] = exc

    proxy.hold_after(256 * 1024)
    thread = threading.Thread(target=snapshot, daemon=True)
    thread.start()
    try:
        with psycopg.connect(gateway, autocommit=True) as monitor:
            wait_for_backend(monitor, "COPY", wait_event_type="Client")  # ClientWrite: mid-stream
            assert proxy.held.wait(30)
            parts = [p for p in leftovers() if p.name.endswith(".part")]
            assert len(parts) == 1 and parts[0].stat().st_size > 0  # half a CSV, not in place
            dedicated_pg.stop()
            FIGURES.fault("postgres_restart")
        proxy.release()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        proxy.close()
        if not dedicated_pg.running():
            dedicated_pg.start()

    error = outcome["value"]
    assert isinstance(error, DatabaseUnavailableError), repr(error)
    assert "billing_gateway_db" in str(error)
    assert leftovers() == []  # neither the partial .part file nor a partial snapshot

    # and after the restart the same snapshot is whole
    monkeypatch.setenv(
        "AIRFLOW_CONN_BILLING_GATEWAY_DB", _airflow_uri("127.0.0.1", dedicated_pg.port, dedicated_db)
    )
    assert BillingGatewayHook().snapshot_to_csv("stripe", window, target) == rows
    assert [p.name for p in leftovers()] == [target.name]


# -- the PSP ------------------------------------------------------------------------------------


def _line(ref: str, amount: int, minute: int) -> dict:
    return {
        "provider_reference": ref,
        "transaction_type": "capture",
        "status": "captured",
        "amount_minor": amount,
        "currency": "BRL",
        "occurred_at": f"2026-11-20T10:{minute:02d}:00Z",
    }


@pytest.mark.timeout(60)
def test_psp_429_with_retry_after_is_retried_then_reported(httpserver, monkeypatch):
    from werkzeug import Response

    from airflow_recon_provider.hooks.psp import PspHook
    from airflow_recon_provider.reconciliation.statements import PspUnavailableError
    from airflow_recon_provider.reconciliation.window import Window

    cycle = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    answers = [429, 200]
    seen: list[int] = []

    def handler(request):
        status = answers.pop(0) if answers else 429
        seen.append(status)
        if status == 429:
            return Response("slow down", status=429, headers={"Retry-After": "1"})
        body = {"statement_id": "st-1", "lines": [_line("r1", 1000, 5)]}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/statements").respond_with_handler(handler)
    monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", httpserver.url_for("/"))
    hook = PspHook(max_attempts=3, backoff_seconds=0.01)
    statement = hook.fetch_statement("stripe", cycle)
    assert seen == [429, 200] and [line.provider_reference for line in statement.lines] == ["r1"]
    FIGURES.fault("psp_http_429", 1)

    answers.clear()
    with pytest.raises(PspUnavailableError) as gave_up:
        hook.fetch_statement("stripe", cycle)
    assert "answered HTTP 429" in str(gave_up.value) and "gave up after 3 attempts" in str(gave_up.value)
    FIGURES.fault("psp_http_429", 3)


@pytest.mark.dags
@pytest.mark.timeout(180)
def test_psp_failing_on_page_2_keeps_the_previous_statement_and_records_the_failure(
    airflow_db, db, airflow_conns, httpserver, monkeypatch
):
    """A statement whose second page never comes: nothing of it is written, the cycle's
    earlier lines stay as they were, the cycle is logged ``failed`` with the reason, and the
    other PSP of the run is reconciled."""
    from airflow.dag_processing.dagbag import DagBag
    from werkzeug import Response

    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference)"
        " VALUES (1,'stripe','r1'),(2,'adyen','a1')"
    )
    db.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) VALUES"
        " ('stripe','r1','capture','captured',1000,'BRL','2026-11-20T10:05Z','stripe-previous')"
    )

    def handler(request):
        psp, page = request.args.get("psp"), request.args.get("page")
        if psp == "stripe" and page == "p1":
            return Response("upstream exploded", status=500)
        if psp == "stripe":
            body = {"statement_id": "stripe-new", "lines": [_line("r1", 999, 5)], "next_page": "p1"}
        else:
            body = {"statement_id": "adyen-new", "lines": [_line("a1", 100, 6)]}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/statements").respond_with_handler(handler)
    for psp in ("stripe", "adyen"):
        monkeypatch.setenv(f"AIRFLOW_CONN_PSP_{psp.upper()}", httpserver.url_for("/"))
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    stripe_lines = db.execute("SELECT * FROM psp_statement_lines WHERE psp = 'stripe'").fetchall()

    bag = DagBag(
        dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "billing_gateway_reconciliation.py")
    )
    dag = bag.dags["billing_gateway_reconciliation"]
    dag_run = dag.test(logical_date=datetime(2026, 11, 20, 11, tzinfo=UTC), run_conf={})
    FIGURES.fault("psp_http_500_mid_pagination", 3)

    assert dag_run.state == "failed"
    assert db.execute("SELECT * FROM psp_statement_lines WHERE psp = 'stripe'").fetchall() == stripe_lines
    (adyen_lines,) = db.execute("SELECT count(*) FROM psp_statement_lines WHERE psp = 'adyen'").fetchone()
    assert adyen_lines == 1
    status, notes = db.execute(
        "SELECT status, notes FROM payment_reconciliation_logs WHERE psp = 'stripe' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert status == "failed"
    assert "PspUnavailableError" in notes and "HTTP 500" in notes and "statements page 2" in notes
    assert table_checksums(db)["public.psp_statement_lines"]  # the table is there, untouched for stripe


# -- the HTTP services and Kafka: each fault, its specific error -----------------------------------

HTTP_FAULTS = {
    # fault -> (how the stand-in answers, fragment of the error)
    "http_500": (lambda: Response("exploded", status=500), r"answered HTTP 500 .*gave up after 2 attempts"),
    "http_429_retry_after": (
        lambda: Response("slow down", status=429, headers={"Retry-After": "0"}),
        r"answered HTTP 429 .*gave up after 2 attempts",
    ),
    "slow_past_timeout": (None, r"did not answer .* within 0\.3 s .*gave up after 2 attempts"),
    "connection_refused": (None, r"is unreachable .*(?i:refused).*gave up after 2 attempts"),
}


def _refused_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("service", ["psp", "billing_core"])
@pytest.mark.parametrize("fault", sorted(HTTP_FAULTS))
def test_http_dependency_faults_end_in_a_specific_error(httpserver, monkeypatch, service, fault):
    """The PSP's statements API and billing-gateway-core, each failing four ways: bounded
    retries, then an error naming the service, the connection and the fault. The core gets
    the same ``Idempotency-Key`` on every attempt, so a retry cannot start a second
    reconciliation (nothing duplicated); nothing is written before the statement is whole."""
    from airflow_recon_provider.hooks.billing_core import BillingCoreHook
    from airflow_recon_provider.hooks.psp import PspHook
    from airflow_recon_provider.reconciliation.errors import BillingCoreUnavailableError
    from airflow_recon_provider.reconciliation.statements import PspUnavailableError
    from airflow_recon_provider.reconciliation.window import Cycle, Window

    answer, expected = HTTP_FAULTS[fault]
    seen: list[dict] = []
    release = threading.Event()

    def handler(request):
        seen.append({"idempotency_key": request.headers.get("Idempotency-Key")})
        if fault == "slow_past_timeout":
            release.wait(5)  # past the client's timeout; released at the end of the test
            return Response("{}", content_type="application/json")
        return answer()

    path = "/statements" if service == "psp" else "/payments/reconciliation"
    httpserver.expect_request(path).respond_with_handler(handler)
    port = _refused_port() if fault == "connection_refused" else httpserver.port
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http", "password": "t0ken"}
    window = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    try:
        if service == "psp":
            monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", json.dumps(conn))
            hook = PspHook(timeout=0.3, max_attempts=2, backoff_seconds=0.01)
            with pytest.raises(PspUnavailableError, match=expected) as failed:
                hook.fetch_statement("stripe", window)
            assert "PSP API" in str(failed.value) and "psp_stripe" in str(failed.value)
        else:
            monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_CORE", json.dumps(conn))
            core = BillingCoreHook(timeout=0.3, max_attempts=2, backoff_seconds=0.01)
            core._sleep = lambda seconds: None
            with pytest.raises(BillingCoreUnavailableError, match=expected) as failed:
                core.trigger_reconciliation("stripe", Cycle(window.start), idempotency_key="recon-k-1")
            assert "billing-gateway-core" in str(failed.value) and "billing_gateway_core" in str(failed.value)
            assert {s["idempotency_key"] for s in seen} <= {"recon-k-1"}
    finally:
        release.set()
    assert "t0ken" not in str(failed.value)
    if fault == "slow_past_timeout":
        assert seen  # the stand-in serves one request at a time: the retry may wait behind the first
    else:
        assert len(seen) == (0 if fault == "connection_refused" else 2)
    FIGURES.fault(f"{service}_{fault}", 2)


@pytest.mark.timeout(120)
def test_kafka_unreachable_is_a_clear_error_and_the_investigation_goes_on(monkeypatch):
    """No broker behind ``reconciliation_kafka``: the hook says which servers and which
    connection; the snapshot operator's Kafka check reports it as a finding (status
    ``unavailable``) instead of failing the investigation."""
    from airflow_recon_provider.hooks.reconciliation_events import ReconciliationEventsHook
    from airflow_recon_provider.operators.investigation import _optional
    from airflow_recon_provider.reconciliation.events import KafkaUnavailableError
    from airflow_recon_provider.reconciliation.window import Window

    port = _refused_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_RECONCILIATION_KAFKA",
        json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": f"127.0.0.1:{port}"}}),
    )
    window = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    with pytest.raises(KafkaUnavailableError) as caught:
        ReconciliationEventsHook().inspect("stripe", window, timeout_s=20)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "'reconciliation_kafka'" in message and "unreachable" in message
    FIGURES.fault("kafka_unreachable")

    import logging

    finding = _optional(
        "Kafka events",
        lambda: ReconciliationEventsHook().inspect("stripe", window, timeout_s=20).as_dict(),
        logging.getLogger(__name__),
    )
    assert finding["status"] == "unavailable" and "KafkaUnavailableError" in finding["detail"]
    FIGURES.fault("kafka_unreachable")
