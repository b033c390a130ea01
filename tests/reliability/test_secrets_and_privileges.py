"""Secrets and least privilege, against real runs.

The gateway database is ``dedicated_pg`` (conftest), whose ``pg_hba.conf`` asks every role
but ``postgres`` for a SCRAM password. The provider connects as ``recon_app``, a login role
made by :func:`airflow_recon_provider.schema.privileges.grant_least_privilege` (the grants
are ``airflow_recon_provider/schema/least_privilege.sql``) with a password made up for this
session.

- the role does the provider's work — dry run and apply of a correction with its audit,
  notes and incident event, the summary, a statement load and a cycle record — and is
  refused everything else (amounts, inserts and deletes of payments, DDL), with the
  database unchanged;
- secrets — the database password, the billing-core bearer token, the Slack token — are
  made up per session and searched, after real runs (successful and failing), in
  everything a person or another system could see: log output (stdlib logging and
  Airflow's structured log on stdout/stderr), error messages, return values, the
  correction artifacts, every table of the gateway database (``recon.notifications``'
  errors and responses included) and the whole Airflow home — the metadata database with
  its XComs and the task log files.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from core_api_server import FakeBillingCore, Scripted
from correction_data import (
    EXPECTED,
    RECON_CONFIG,
    WINDOW_END,
    WINDOW_START,
    audit_rows,
    correction_lines,
    seed,
)
from psycopg import errors as pg_errors
from reliability_support import FIGURES, changed_tables, scan_database, scan_tree, table_checksums

pytestmark = pytest.mark.integration

ROLE = "recon_app"
#: made up per session: a hit in a scan can only come from this run
SECRETS = {
    "database password": "pw-" + secrets.token_hex(12),
    "billing-core bearer token": "core-" + secrets.token_hex(12),
    "slack token": "xoxb-" + secrets.token_hex(12),
}
DB_PASSWORD = SECRETS["database password"]
CORE_TOKEN = SECRETS["billing-core bearer token"]
SLACK_TOKEN = SECRETS["slack token"]
INCIDENT = "INCIDENT-472"


def _uri(dedicated_pg, database: str, user: str = ROLE, password: str | None = DB_PASSWORD) -> str:
    secret = f":{password}" if password else ""
    return f"postgresql://{user}{secret}@127.0.0.1:{dedicated_pg.port}/{database}"


class Seen:
    """Everything visible so far: log records (all levels), stdout/stderr, and the text of
    the values and errors the test hands it."""

    def __init__(self, caplog, capfd) -> None:
        self.caplog, self.capfd = caplog, capfd
        caplog.set_level(logging.DEBUG)
        self.parts: list[str] = []

    def add(self, *values) -> None:
        for value in values:
            self.parts += [str(value), repr(value)]
            cause = getattr(value, "__cause__", None) or getattr(value, "__context__", None)
            if cause is not None:
                self.parts += [str(cause), repr(cause)]

    def text(self) -> str:
        out, err = self.capfd.readouterr()
        self.parts += [out, err, self.caplog.text]
        return "\n".join(self.parts)


def _assert_no_secret(where: str, text: str) -> None:
    found = sorted(name for name, value in SECRETS.items() if value in text)
    for name in found:  # say where, so a leak is found without a debugger
        at = text.index(SECRETS[name])
        found[found.index(name)] = f"{name} (...{text[max(0, at - 200) : at]!r}...)"
    FIGURES.secrets_scanned[where] += 1
    assert found == [], f"{', '.join(found)} found in {where}"


def _assert_tree_clean(where: str, root: Path) -> None:
    FIGURES.secrets_scanned[where] += 1
    assert scan_tree(root, SECRETS) == {}, where


@pytest.fixture
def least_privileged(dedicated_pg, dedicated_db, monkeypatch):
    """The dedicated database seeded with the correction scenario (as ``postgres``), the
    ``recon_app`` role granted, and ``billing_gateway_db`` / ``payments_ledger_db`` pointing
    at it as ``recon_app`` with its password. Yields an autocommit ``postgres`` connection."""
    from airflow_recon_provider.schema.privileges import grant_least_privilege

    with psycopg.connect(dedicated_pg.url(dedicated_db), autocommit=True) as admin:
        seed(admin)
        admin.execute(
            "INSERT INTO recon.incidents (incident_id, psp, opened_by) VALUES (%s, 'stripe', 'watch')",
            (INCIDENT,),
        )
        grant_least_privilege(admin, ROLE, DB_PASSWORD)
        grant_least_privilege(admin, ROLE, DB_PASSWORD)  # idempotent
        monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
        monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", _uri(dedicated_pg, dedicated_db))
        monkeypatch.setenv("AIRFLOW_CONN_PAYMENTS_LEDGER_DB", _uri(dedicated_pg, dedicated_db))
        yield admin


# -- least privilege ---------------------------------------------------------------------------

#: (what, SQL) the role must be refused
FORBIDDEN = [
    ("update an amount", "UPDATE payment_transactions SET amount_minor = 1 WHERE id = 101"),
    ("update a currency", "UPDATE payment_transactions SET currency = 'USD' WHERE id = 101"),
    ("update a reference", "UPDATE payment_intents SET provider_reference = 'x' WHERE id = 1"),
    (
        "insert a payment",
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (1, 'capture', 'captured', 1, 'BRL', now())",
    ),
    ("delete a payment", "DELETE FROM payment_transactions WHERE id = 105"),
    ("truncate payments", "TRUNCATE payment_transactions"),
    ("delete a cycle log", "DELETE FROM payment_reconciliation_logs"),
    ("move a cycle", "UPDATE payment_reconciliation_logs SET cycle_start = cycle_start - interval '1 day'"),
    ("rename a PSP's cycles", "UPDATE payment_reconciliation_logs SET psp = 'other'"),
    ("forge a statement line's amount", "UPDATE psp_statement_lines SET amount_minor = 0"),
    ("write the ledger", "UPDATE ledger.transactions SET amount_minor = 0"),
    ("create a table in public", "CREATE TABLE public.x (id int)"),
    ("create a table in recon", "CREATE TABLE recon.x (id int)"),
    ("drop the audit", "DROP TABLE recon.corrections"),
    ("alter the audit", "ALTER TABLE recon.corrections ADD COLUMN x int"),
    ("alter a payment table", "ALTER TABLE payment_transactions DROP COLUMN processed_at"),
    ("create a role", "CREATE ROLE intruder"),
]


@pytest.mark.timeout(180)
def test_least_privilege_role_does_the_work_and_nothing_more(
    least_privileged, dedicated_pg, dedicated_db, tmp_path, caplog, capfd
):
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.corrections import CorrectionsHook
    from airflow_recon_provider.reconciliation.corrections import correction_scope
    from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
    from airflow_recon_provider.reconciliation.statements import PspStatement
    from airflow_recon_provider.reconciliation.window import Window

    admin = least_privileged
    seen = Seen(caplog, capfd)
    as_role = psycopg.conninfo.make_conninfo(dedicated_pg.url(dedicated_db), user=ROLE, password=DB_PASSWORD)
    with psycopg.connect(as_role) as probe:
        assert probe.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (
            ROLE,
            False,
        )

    # the provider's work, as recon_app
    window = Window.parse(WINDOW_START, WINDOW_END)
    hook = CorrectionsHook()
    dry = hook.dry_run(
        "stripe",
        window,
        ALL_KINDS,
        scope=correction_scope(incident_id=INCIDENT, dag_id="d", run_id="r"),
        run_id="r",
        requested_by="oncall.ana",
        incident_id=INCIDENT,
        artifact_dir=tmp_path / "artifacts",
    )
    result = hook.apply(
        hook.load_proposals(dry.correction_key, psp="stripe"),
        psp="stripe",
        correction_key=dry.correction_key,
        requested_by="oncall.ana",
        approved_by="finance.bia",
        run_id="r",
        incident_id=INCIDENT,
    )
    assert sorted(result.applied) == sorted(EXPECTED)
    assert sorted(a[1] for a in audit_rows(admin)) == sorted(EXPECTED) and len(correction_lines(admin)) == 4
    gateway = BillingGatewayHook()
    assert gateway.summary("stripe", window).divergent_count >= 1
    cycle = Window.parse("2026-11-20T13:00:00Z", "2026-11-20T14:00:00Z")
    assert (
        gateway.replace_statement_lines(
            "adyen", cycle, PspStatement(psp="adyen", cycle=cycle, statement_id="ad-13", lines=())
        )
        == 0
    )
    gateway.record_cycle("adyen", cycle, "success")
    seen.add(dry.as_dict(), result.as_dict())

    # and nothing else: each refused by PostgreSQL, the database unchanged
    before = table_checksums(admin)
    with psycopg.connect(as_role, autocommit=True) as role:
        allowed = []
        for what, statement in FORBIDDEN:
            try:
                role.execute(statement)
                allowed.append(what)
            except pg_errors.InsufficientPrivilege as refused:
                seen.add(refused)
                assert "permission denied" in str(refused) or "must be owner" in str(refused), what
    assert allowed == []
    FIGURES.bad_input("privilege_escalation", len(FORBIDDEN))
    assert changed_tables(before, table_checksums(admin)) == []

    # a role without the hourly DAG's grants cannot replace statement lines
    from airflow_recon_provider.schema.privileges import grant_least_privilege

    grant_least_privilege(admin, "recon_app_remediation_only", DB_PASSWORD, reconciliation_writer=False)
    remediation_only = psycopg.conninfo.make_conninfo(as_role, user="recon_app_remediation_only")
    with psycopg.connect(remediation_only, autocommit=True) as role:
        with pytest.raises(pg_errors.InsufficientPrivilege):
            role.execute("DELETE FROM psp_statement_lines WHERE psp = 'adyen'")
        assert role.execute("SELECT count(*) FROM psp_statement_lines").fetchone()[0] > 0

    _assert_no_secret("logs and results of the least-privilege run", seen.text())
    _assert_tree_clean("correction artifacts", tmp_path)


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_database_password_never_shows_in_errors_or_logs(
    least_privileged, dedicated_pg, dedicated_db, monkeypatch, caplog, capfd
):
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation.errors import DatabaseUnavailableError
    from airflow_recon_provider.reconciliation.window import Window

    seen = Seen(caplog, capfd)
    window = Window.parse(WINDOW_START, WINDOW_END)
    assert BillingGatewayHook().summary("stripe", window).divergent_count >= 1

    # a wrong password (the real one with a character changed): refused, the error names the
    # connection and the role, never the password tried
    wrong = DB_PASSWORD[:-1] + ("0" if DB_PASSWORD[-1] != "0" else "1")
    SECRETS_TRIED = {"wrong password": wrong}
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", _uri(dedicated_pg, dedicated_db, password=wrong))
    with pytest.raises(DatabaseUnavailableError) as refused:
        BillingGatewayHook().summary("stripe", window)
    message = str(refused.value)
    assert "'billing_gateway_db'" in message and "password authentication failed" in message
    assert wrong not in message
    seen.add(refused.value)
    FIGURES.fault("database_wrong_password")

    # the server down: the error names the connection, not its password
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", _uri(dedicated_pg, dedicated_db))
    dedicated_pg.stop()
    FIGURES.fault("postgres_down")
    try:
        with pytest.raises(DatabaseUnavailableError, match="'billing_gateway_db' is unreachable") as down:
            BillingGatewayHook().summary("stripe", window)
        seen.add(down.value)
    finally:
        dedicated_pg.start()

    text = seen.text()
    _assert_no_secret("database errors and logs", text)
    assert SECRETS_TRIED["wrong password"] not in text


@pytest.mark.timeout(120)
def test_bearer_token_never_shows_in_results_errors_or_logs(httpserver, monkeypatch, caplog, capfd):
    from airflow_recon_provider.hooks.billing_core import BillingCoreHook
    from airflow_recon_provider.reconciliation.errors import (
        BillingCoreRequestError,
        BillingCoreUnavailableError,
    )
    from airflow_recon_provider.reconciliation.window import Cycle, Window

    seen = Seen(caplog, capfd)
    core = FakeBillingCore()
    httpserver.expect_request("/payments/reconciliation", method="POST").respond_with_handler(core)
    conn = {
        "conn_type": "http",
        "host": httpserver.host,
        "port": httpserver.port,
        "schema": "http",
        "password": CORE_TOKEN,
    }
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_CORE", json.dumps(conn))
    cycle = Cycle(Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z").start)
    hook = BillingCoreHook(max_attempts=2, backoff_seconds=0.01, timeout=0.5)
    hook._sleep = lambda seconds: None

    job = hook.trigger_reconciliation("stripe", cycle, idempotency_key="k-1")
    seen.add(job.as_dict(), json.dumps(job.as_dict()), hook)
    assert core.requests[-1]["authorization"] == f"Bearer {CORE_TOKEN}"  # it was sent, to the core only

    # the core echoes the token back in its error bodies: the hook's errors must not repeat it
    core.script = [Scripted(500, f"upstream failed for Bearer {CORE_TOKEN}")] * 2
    with pytest.raises(BillingCoreUnavailableError, match=r"HTTP 500.*Bearer \*\*\*") as failed:
        hook.trigger_reconciliation("stripe", cycle, idempotency_key="k-2")
    core.script = [Scripted(401, {"error": f"token {CORE_TOKEN} expired"})]
    with pytest.raises(BillingCoreRequestError) as refused:
        hook.trigger_reconciliation("stripe", cycle, idempotency_key="k-3")
    core.script = [Scripted(429, "slow down", headers={"Retry-After": "0"})] * 2
    with pytest.raises(BillingCoreUnavailableError) as throttled:
        hook.trigger_reconciliation("stripe", cycle, idempotency_key="k-4")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_CORE", json.dumps({**conn, "port": port}))
    with pytest.raises(BillingCoreUnavailableError) as unreachable:
        BillingCoreHook(max_attempts=1).trigger_reconciliation("stripe", cycle, idempotency_key="k-5")
    # the PSP's statements API, with the same token, echoing it in its errors
    from werkzeug import Response

    from airflow_recon_provider.hooks.psp import PspHook
    from airflow_recon_provider.reconciliation.statements import PspRequestError, PspUnavailableError

    answers = [(f"no statement for Bearer {CORE_TOKEN}", 500), (f"token {CORE_TOKEN} not allowed", 403)]
    httpserver.expect_request("/statements").respond_with_handler(
        lambda request: Response(*answers.pop(0)) if answers else Response("{}", 200)
    )
    monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", json.dumps({**conn, "password": CORE_TOKEN}))
    psp = PspHook(max_attempts=1, backoff_seconds=0.01)
    window = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    with pytest.raises(PspUnavailableError, match=r"HTTP 500.*\*\*\*") as psp_failed:
        psp.fetch_statement("stripe", window)
    with pytest.raises(PspRequestError, match=r"HTTP 403.*\*\*\*") as psp_refused:
        psp.fetch_statement("stripe", window)
    FIGURES.fault("psp_http_500")
    FIGURES.fault("psp_http_403")
    for error in (
        failed.value,
        refused.value,
        throttled.value,
        unreachable.value,
        psp_failed.value,
        psp_refused.value,
    ):
        seen.add(error)
    FIGURES.fault("billing_core_http_500", 2)
    FIGURES.fault("billing_core_http_401")
    FIGURES.fault("billing_core_http_429", 2)
    FIGURES.fault("billing_core_refused")
    _assert_no_secret("billing-core results, errors and logs", seen.text())


@pytest.mark.dags
@pytest.mark.timeout(300)
def test_incident_updates_run_with_least_privilege_and_leak_nothing_through_an_outage(
    least_privileged, airflow_db, httpserver, monkeypatch, caplog, capfd
):
    """The ``billing_gateway_incident_updates`` DAG (``dag.test()``) as ``recon_app``: SMTP
    down and Slack refusing its token — the run fails visibly, each channel's error is on
    its delivery row — then both back: the pending update is delivered once. Then the
    secrets are searched in the logs, the gateway's tables and the whole Airflow home
    (metadata database with the XComs, log files)."""
    from airflow.dag_processing.dagbag import DagBag
    from incident_support import UPDATES_DAG_FILE, FakeSlack, SmtpServer, next_slot, smtp_conn_json

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.window import Window

    admin = least_privileged
    seen = Seen(caplog, capfd)
    smtp = SmtpServer()
    slack = FakeSlack()
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(slack)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_FINANCE", smtp_conn_json(smtp.port))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_INCIDENTS",
        json.dumps(
            {
                "conn_type": "slack",
                "password": SLACK_TOKEN,
                "extra": {"base_url": httpserver.url_for("/api/")},
            }
        ),
    )
    bag = DagBag(dag_folder=str(UPDATES_DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["billing_gateway_incident_updates"]

    hook = IncidentHook()
    window = Window.parse(WINDOW_START, WINDOW_END)
    admin.execute("DELETE FROM recon.incidents WHERE incident_id = %s", (INCIDENT,))  # a fresh one below
    incident_id = hook.open_incident(
        "stripe",
        window=window,
        reason="divergence above the alert threshold",
        actor="divergence-watch",
        run_id="watch__1",
        figures=hook.gateway.summary("stripe", window),
    )
    t0 = next_slot()

    # both channels down: SMTP refuses connections, Slack refuses the token
    slack.error = "invalid_auth"
    outage = dag.test(logical_date=t0)
    FIGURES.fault("smtp_down")
    FIGURES.fault("slack_refuses")
    assert outage.state == "failed"
    failed = {d.channel: d for d in hook.deliveries(incident_id)}
    assert failed["email"].status == "failed" and failed["email"].last_error.startswith(
        "ConnectionRefusedError"
    )
    assert failed["slack"].status == "failed" and "invalid_auth" in failed["slack"].last_error
    seen.add(failed["email"].last_error, failed["slack"].last_error)

    # both back: the pending update is delivered, once per channel
    slack.error = None
    smtp.start()
    try:
        back = dag.test(logical_date=t0 + timedelta(minutes=30))
        assert back.state == "success"
        assert len(smtp.messages) == 1 and len(slack.posts) == 1
        again = dag.test(logical_date=t0 + timedelta(minutes=30))  # a re-run sends nothing twice
        assert again.state == "success" and (len(smtp.messages), len(slack.posts)) == (1, 1)
        bodies = [m.as_string() for m in smtp.messages] + [json.dumps(p) for p in slack.posts]
    finally:
        smtp.stop()
    statuses = sorted((d.channel, d.status) for d in hook.deliveries(incident_id))
    assert statuses == [
        ("email", "sent"),
        ("email", "superseded"),
        ("slack", "sent"),
        ("slack", "superseded"),
    ]
    # the token went to Slack in the Authorization header, and nowhere else
    assert set(slack.authorizations) == {f"Bearer {SLACK_TOKEN}"}

    _assert_no_secret("task logs (stdout, stderr, logging)", seen.text())
    _assert_no_secret("messages sent (email, Slack)", "\n".join(bodies))
    FIGURES.secrets_scanned["gateway database tables"] += 1
    assert scan_database(admin, SECRETS) == {}
    _assert_tree_clean(
        "Airflow home (metadata DB with XCom, task log files)", Path(os.environ["AIRFLOW_HOME"])
    )
