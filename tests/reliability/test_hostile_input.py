"""Hostile input: every bad value gets a specific error, and the database is unchanged.

Surfaces: the ``airflow-recon`` CLI flags, the table mapping and the rest of
``RECON_CONFIG``, connection extras, PSP statement payloads, the remediation DAG's Params
(and its scope step), and the data correction's row cap — including up to 10^6 divergent rows
generated with ``generate_series`` against the cap.

"Unchanged" is :func:`reliability_support.table_checksums` — every table of the gateway
database, ``ledger`` and the ``recon`` schema — equal before and after each case. The CLI
must exit non-zero with one line on stderr and nothing on stdout.

Kafka connection extras that cannot work are covered by
tests/integration/test_reconciliation_events.py (``test_unusable_connection_is_a_config_error``),
a float amount in a whole DAG run by tests/dags/test_billing_gateway_reconciliation.py.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from correction_data import RECON_CONFIG, WINDOW_END, WINDOW_START, seed
from psycopg import sql
from reliability_support import FIGURES, big_rows, changed_tables, table_checksums

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"
WINDOW = ["--window-start", "2026-11-20T10:00:00Z", "--window-end", "2026-11-20T12:00:00Z"]


@pytest.fixture(scope="module")
def hostile_db(pg_url, template_db):
    """One seeded database for the read-only cases of this module (each case checks its
    own before/after checksums)."""
    name = "recon_hostile_" + datetime.now(UTC).strftime("%H%M%S%f")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        seed(conn)
        conn.execute(
            "INSERT INTO recon.incidents (incident_id, psp, opened_by)"
            " VALUES ('INCIDENT-472', 'stripe', 'watch')"
        )
    yield url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def hostile(hostile_db, monkeypatch):
    """The seeded database as ``billing_gateway_db`` / ``payments_ledger_db``, an autocommit
    connection to it, and RECON_CONFIG with stripe and adyen."""
    info = psycopg.conninfo.conninfo_to_dict(hostile_db)
    host, port = info.get("host") or "127.0.0.1", info.get("port") or 5432
    uri = f"postgresql://{info.get('user') or 'postgres'}@{host}:{port}/{info['dbname']}"
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", uri)
    monkeypatch.setenv("AIRFLOW_CONN_PAYMENTS_LEDGER_DB", uri)
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    with psycopg.connect(hostile_db, autocommit=True) as conn:
        yield conn


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    from airflow_recon_provider.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- CLI flags ----------------------------------------------------------------------------------

CLI_CASES = [
    # (id, argv, exit status, fragment of the one stderr line)
    (
        "psp-sql-injection",
        ["summary", "--psp", "stripe'; DROP TABLE payment_transactions; --", *WINDOW],
        2,
        "not a valid PSP name",
    ),
    ("psp-or-1-1", ["report", "--psp", "stripe' OR '1'='1", *WINDOW], 2, "not a valid PSP name"),
    ("psp-homoglyph-cyrillic-i", ["summary", "--psp", "str\u0456pe", *WINDOW], 2, "not a valid PSP name"),
    ("psp-rtl-override", ["summary", "--psp", "\u202eepirts", *WINDOW], 2, "not a valid PSP name"),
    ("psp-nul-byte", ["report", "--psp", "stri\x00pe", *WINDOW], 2, "not a valid PSP name"),
    ("psp-zero-width-space", ["summary", "--psp", "stri\u200bpe", *WINDOW], 2, "not a valid PSP name"),
    (
        "psp-full-width",
        ["summary", "--psp", "\uff53\uff54\uff52\uff49\uff50\uff45", *WINDOW],
        2,
        "not a valid PSP name",
    ),
    ("psp-trailing-newline", ["summary", "--psp", "stripe\n", *WINDOW], 2, "not a valid PSP name"),
    ("psp-upper-case", ["summary", "--psp", "STRIPE", *WINDOW], 2, "not a valid PSP name"),
    ("psp-unknown", ["summary", "--psp", "paypal", *WINDOW], 2, "unknown PSP 'paypal'"),
    (
        "window-inverted",
        [
            "summary",
            "--psp",
            "stripe",
            "--window-start",
            "2026-11-20T12:00:00Z",
            "--window-end",
            "2026-11-20T10:00:00Z",
        ],
        2,
        "must be after its start",
    ),
    (
        "window-empty",
        [
            "report",
            "--psp",
            "stripe",
            "--window-start",
            "2026-11-20T10:00:00Z",
            "--window-end",
            "2026-11-20T10:00:00Z",
        ],
        2,
        "must be after its start",
    ),
    (
        "window-huge",
        [
            "summary",
            "--psp",
            "stripe",
            "--window-start",
            "1970-01-01T00:00:00Z",
            "--window-end",
            "2026-11-20T10:00:00Z",
        ],
        2,
        "larger than the maximum",
    ),
    (
        "window-naive",
        [
            "summary",
            "--psp",
            "stripe",
            "--window-start",
            "2026-11-20T10:00:00",
            "--window-end",
            "2026-11-20T11:00:00Z",
        ],
        2,
        "has no timezone",
    ),
    (
        "window-sql-injection",
        [
            "report",
            "--psp",
            "stripe",
            "--window-start",
            "2026-11-20T10:00:00Z' OR '1'='1",
            "--window-end",
            "2026-11-20T11:00:00Z",
        ],
        2,
        "not an ISO 8601 timestamp",
    ),
    (
        "window-full-width-digits",
        [
            "summary",
            "--psp",
            "stripe",
            "--window-start",
            "\uff12\uff10\uff12\uff16-11-20T10:00:00Z",
            "--window-end",
            "2026-11-20T11:00:00Z",
        ],
        2,
        "not an ISO 8601 timestamp",
    ),
    (
        "window-calendar-start",
        [
            "summary",
            "--psp",
            "stripe",
            "--window-start",
            "0001-01-01T00:00:00Z",
            "--window-end",
            "0001-01-01T01:00:00Z",
        ],
        2,
        "limits of the calendar",
    ),
    (
        "window-calendar-end",
        [
            "report",
            "--psp",
            "stripe",
            "--window-start",
            "9999-12-31T22:00:00Z",
            "--window-end",
            "9999-12-31T23:00:00Z",
        ],
        2,
        "limits of the calendar",
    ),
    (
        "kinds-sql-injection",
        [
            "report",
            "--psp",
            "stripe",
            *WINDOW,
            "--kinds",
            "status_mismatch'); DROP TABLE recon.corrections; --",
        ],
        2,
        "unknown divergence kind",
    ),
    (
        "kinds-homoglyph",
        ["summary", "--psp", "stripe", *WINDOW, "--kinds", "st\u0430tus_mismatch"],
        2,
        "unknown divergence kind",
    ),
    (
        "kinds-zero-width",
        ["report", "--psp", "stripe", *WINDOW, "--kinds", "amount_mismatch\u200b"],
        2,
        "unknown divergence kind",
    ),
    (
        "format-unknown",
        ["report", "--psp", "stripe", *WINDOW, "--format", "xml; rm -rf /"],
        2,
        "invalid choice",
    ),
    (
        "conn-id-injection",
        ["summary", "--psp", "stripe", *WINDOW, "--conn-id", "billing_gateway_db' OR '1'='1"],
        1,
        "is not defined",
    ),
    (
        "seed-psps-injection",
        ["seed", "--psps", "stripe,adyen'; DROP TABLE payment_intents; --", "--yes-i-know-this-truncates"],
        2,
        "not a valid PSP name",
    ),
    ("seed-without-consent", ["seed", "--psps", "stripe"], 2, "--yes-i-know-this-truncates"),
    (
        "seed-rate-nan",
        ["seed", "--psps", "stripe", "--rate", "stripe=nan", "--yes-i-know-this-truncates"],
        2,
        "must be a fraction",
    ),
    (
        "seed-rows-huge",
        ["seed", "--psps", "stripe", "--rows", str(10**12), "--yes-i-know-this-truncates"],
        2,
        "rows_per_psp must be at most",
    ),
    (
        "seed-hours-negative",
        ["seed", "--psps", "stripe", "--hours", "-5", "--yes-i-know-this-truncates"],
        2,
        "hours must be",
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("argv", "status", "fragment"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_flags(hostile, capsys, argv, status, fragment):
    before = table_checksums(hostile)
    code, out, err = _cli(capsys, argv)
    FIGURES.bad_input("cli flags")
    assert (code, out) == (status, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert changed_tables(before, table_checksums(hostile)) == []


# -- RECON_CONFIG and its table mapping -----------------------------------------------------------


def _mapping(section: str, **names: str) -> dict:
    return {**RECON_CONFIG, "mapping": {section: names}}


CONFIG_CASES = [
    (
        "mapping-table-injection",
        _mapping("payment_transactions", table="payment_transactions; DROP TABLE payment_intents"),
        "is not a plain SQL identifier",
    ),
    (
        "mapping-column-quote",
        _mapping("payment_transactions", amount_minor='amount_minor" FROM pg_shadow --'),
        "is not a plain SQL identifier",
    ),
    (
        "mapping-three-part-name",
        _mapping("psp_statement_lines", table="db.public.psp_statement_lines"),
        "must be 'table' or 'schema.table'",
    ),
    (
        "mapping-homoglyph-table",
        _mapping("payment_intents", table="p\u0430yment_intents"),
        "is not a plain SQL identifier",
    ),
    (
        "mapping-trailing-newline",
        _mapping("payment_reconciliation_logs", notes="notes\n"),
        "is not a plain SQL identifier",
    ),
    (
        "mapping-unknown-section",
        {**RECON_CONFIG, "mapping": {"pg_shadow": {"table": "pg_shadow"}}},
        "unknown mapping section",
    ),
    ("mapping-unknown-column", _mapping("payment_transactions", passwd="x"), "unknown column key"),
    (
        "config-psp-injection",
        {"psps": ["stripe", "adyen'; DROP TABLE recon.incidents; --"]},
        "not a valid PSP name",
    ),
    (
        "config-status-mapping-not-text",
        {"psps": [{"name": "stripe", "status_mapping": {"SETTLED": 1}}]},
        "must map strings to strings",
    ),
    (
        "config-work-mem-injection",
        {**RECON_CONFIG, "work_mem": "256MB'; SET ROLE postgres; --"},
        "must look like 256MB",
    ),
    ("config-max-window-bool", {**RECON_CONFIG, "max_window_days": True}, "must be a non-negative integer"),
    ("config-not-json", "{'psps': ['stripe']", "not valid JSON"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("config", "fragment"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_recon_config_and_table_mapping(hostile, capsys, monkeypatch, config, fragment):
    monkeypatch.setenv("RECON_CONFIG", config if isinstance(config, str) else json.dumps(config))
    before = table_checksums(hostile)
    code, out, err = _cli(capsys, ["summary", "--psp", "stripe", *WINDOW])
    FIGURES.bad_input("RECON_CONFIG / table mapping")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and fragment in err, err
    assert changed_tables(before, table_checksums(hostile)) == []


# -- connection extras --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_connection_extras(hostile, capsys, monkeypatch):
    from airflow_recon_provider.hooks.psp import PspHook
    from airflow_recon_provider.reconciliation.errors import ConfigError
    from airflow_recon_provider.reconciliation.window import Window

    before = table_checksums(hostile)
    cycle = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")

    # a header extra with a line break (header injection): refused before any request,
    # naming the connection and the header, never echoing the value
    monkeypatch.setenv(
        "AIRFLOW_CONN_PSP_STRIPE",
        json.dumps(
            {"conn_type": "psp", "host": "http://127.0.0.1:9", "extra": {"X-Trace": "a\r\nX-Injected: evil"}}
        ),
    )
    with pytest.raises(ConfigError) as refused:
        PspHook(max_attempts=1).fetch_statement("stripe", cycle)
    assert "psp_stripe" in str(refused.value) and "X-Trace" in str(refused.value)
    assert "X-Injected" not in str(refused.value)
    health = PspHook().check_health("stripe")
    assert (
        health.outcome.value == "probe_error"
        and "X-Trace" in health.detail
        and "X-Injected" not in health.detail
    )
    FIGURES.bad_input("connection extras", 2)

    # a health endpoint that is not http(s): a probe error, nothing fetched
    monkeypatch.setenv(
        "AIRFLOW_CONN_PSP_STRIPE",
        json.dumps(
            {
                "conn_type": "psp",
                "host": "http://127.0.0.1:9",
                "extra": {"health_endpoint": "file:///etc/passwd"},
            }
        ),
    )
    health = PspHook().check_health("stripe")
    assert health.outcome.value == "probe_error" and "health endpoint URL is invalid" in health.detail
    FIGURES.bad_input("connection extras")

    # libpq options smuggled in a database connection's extras: a specific error, exit 1
    monkeypatch.setenv(
        "AIRFLOW_CONN_BILLING_GATEWAY_DB",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "schema": "x",
                "extra": {"sslmode": "disable' host=evil.example"},
            }
        ),
    )
    code, out, err = _cli(capsys, ["summary", "--psp", "stripe", *WINDOW])
    assert code == 1 and out == "" and "billing_gateway_db" in err and "invalid sslmode value" in err
    FIGURES.bad_input("connection extras")
    assert changed_tables(before, table_checksums(hostile)) == []


# -- PSP statement payloads ------------------------------------------------------------------------


def _line(**overrides):
    line = {
        "provider_reference": "s1",
        "transaction_type": "capture",
        "status": "captured",
        "amount_minor": 1000,
        "currency": "BRL",
        "occurred_at": "2026-11-20T10:05:00Z",
    }
    return {**line, **overrides}


STATEMENT_CASES = [
    (
        "amount-float",
        json.dumps({"statement_id": "st", "lines": [_line(amount_minor=10.5)]}),
        "amount_minor must be a whole number",
    ),
    (
        "amount-text",
        json.dumps({"statement_id": "st", "lines": [_line(amount_minor="1050")]}),
        "amount_minor must be a whole number",
    ),
    (
        "amount-1e3",
        '{"statement_id": "st", "lines": [' + json.dumps(_line()).replace("1000", "1e3") + "]}",
        "amount_minor must be a whole number",
    ),
    (
        "amount-bool",
        json.dumps({"statement_id": "st", "lines": [_line(amount_minor=True)]}),
        "amount_minor must be a whole number",
    ),
    (
        "amount-beyond-bigint",
        json.dumps({"statement_id": "st", "lines": [_line(amount_minor=2**63)]}),
        "out of the bigint range",
    ),
    (
        "amount-below-bigint",
        json.dumps({"statement_id": "st", "lines": [_line(amount_minor=-(2**63) - 1)]}),
        "out of the bigint range",
    ),
    (
        "amount-nan",
        '{"statement_id": "st", "lines": [' + json.dumps(_line()).replace("1000", "NaN") + "]}",
        "amount_minor must be a whole number",
    ),
    (
        "reference-nul",
        json.dumps({"statement_id": "st", "lines": [_line(provider_reference="s1\x00; DROP")]}),
        "contains a NUL character",
    ),
    (
        "currency-trailing-newline",
        json.dumps({"statement_id": "st", "lines": [_line(currency="BRL\n")]}),
        "3-letter ISO 4217 code",
    ),
    (
        "currency-homoglyph",
        json.dumps({"statement_id": "st", "lines": [_line(currency="BR\u039b")]}),
        "3-letter ISO 4217 code",
    ),
    (
        "type-homoglyph",
        json.dumps({"statement_id": "st", "lines": [_line(transaction_type="c\u0430pture")]}),
        "transaction_type",
    ),
    (
        "occurred-full-width",
        json.dumps(
            {"statement_id": "st", "lines": [_line(occurred_at="\uff12\uff10\uff12\uff16-11-20T10:05:00Z")]}
        ),
        "not an ISO 8601 timestamp",
    ),
    (
        "occurred-outside-cycle",
        json.dumps({"statement_id": "st", "lines": [_line(occurred_at="2026-11-20T09:59:59Z")]}),
        "outside the reconciliation cycle",
    ),
    ("statement-id-nul", json.dumps({"statement_id": "st\x00", "lines": []}), "statement_id contains a NUL"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "fragment"), [c[1:] for c in STATEMENT_CASES], ids=[c[0] for c in STATEMENT_CASES]
)
def test_psp_statement_payloads(hostile, httpserver, monkeypatch, body, fragment):
    from airflow_recon_provider.hooks.psp import PspHook
    from airflow_recon_provider.reconciliation.statements import StatementFormatError
    from airflow_recon_provider.reconciliation.window import Window

    httpserver.expect_request("/statements").respond_with_data(body, content_type="application/json")
    monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", httpserver.url_for("/"))
    before = table_checksums(hostile)
    with pytest.raises(StatementFormatError) as refused:
        PspHook(max_attempts=1).fetch_statement(
            "stripe", Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
        )
    FIGURES.bad_input("PSP statement payloads")
    assert fragment in str(refused.value) and "PSP stripe statement" in str(refused.value)
    assert changed_tables(before, table_checksums(hostile)) == []


@pytest.mark.timeout(60)
def test_duplicated_statement_payloads(db, airflow_conns, httpserver, monkeypatch):
    """The same statement delivered twice (a retried upload, a re-run) lands once; the same
    page served again by the pagination, or pages of two statements mixed, are refused."""
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.psp import PspHook
    from airflow_recon_provider.reconciliation.statements import StatementFormatError
    from airflow_recon_provider.reconciliation.window import Window

    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    seed(db)
    cycle = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    page = {"statement_id": "st-10", "lines": [_line(), _line(provider_reference="s2", amount_minor=2500)]}
    httpserver.expect_request("/statements").respond_with_json(page)
    monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", httpserver.url_for("/"))
    psp, gateway = PspHook(max_attempts=1), BillingGatewayHook()

    def content():
        return db.execute(
            "SELECT psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at,"
            " statement_id FROM psp_statement_lines ORDER BY 1, 2, 7, 8"
        ).fetchall()

    gateway.replace_statement_lines("stripe", cycle, psp.fetch_statement("stripe", cycle))
    once = content()
    gateway.replace_statement_lines("stripe", cycle, psp.fetch_statement("stripe", cycle))
    assert content() == once
    FIGURES.bad_input("duplicated statement payloads")

    before = table_checksums(db)
    httpserver.clear()
    looping = {**page, "next_page": "p1"}
    httpserver.expect_request("/statements").respond_with_json(looping)
    with pytest.raises(StatementFormatError, match="pagination loops"):
        psp.fetch_statement("stripe", cycle)
    httpserver.clear()
    pages = iter([{**page, "next_page": "p1"}, {"statement_id": "st-10-v2", "lines": []}])
    httpserver.expect_request("/statements").respond_with_handler(
        lambda request: __import__("werkzeug").Response(
            json.dumps(next(pages)), content_type="application/json"
        )
    )
    with pytest.raises(StatementFormatError, match="statement changed while it was being read"):
        psp.fetch_statement("stripe", cycle)
    FIGURES.bad_input("duplicated statement payloads", 2)
    assert changed_tables(before, table_checksums(db)) == []


# -- the remediation DAG's Params and its scope step --------------------------------------------------


@pytest.fixture(scope="module")
def remediation_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
        bag = DagBag(dag_folder=str(DAGS / "billing_gateway_remediation.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["billing_gateway_remediation"]


GOOD_CONF = {
    "psp": "stripe",
    "window_start": WINDOW_START,
    "window_end": WINDOW_END,
    "divergence_kinds": ["status_mismatch"],
    "incident_id": "INCIDENT-472",
    "dry_run": True,
}
# (id, conf overrides, where it must be refused: "param" = the form, "scope" = the scope step)
PARAM_CASES = [
    ("psp-not-configured", {"psp": "paypal"}, "param", "is not one of"),
    ("psp-sql-injection", {"psp": "stripe'; DROP TABLE payment_transactions; --"}, "param", "is not one of"),
    ("psp-homoglyph", {"psp": "str\u0456pe"}, "param", "is not one of"),
    ("psp-rtl-override", {"psp": "\u202estripe"}, "param", "is not one of"),
    ("psp-not-text", {"psp": ["stripe"]}, "param", "is not of type"),
    # the window is typed text with its zone (the form's pattern), not a date picker
    ("window-not-date-time", {"window_start": "yesterday"}, "param", "does not match"),
    ("window-without-zone", {"window_start": "2026-11-20T10:00:00"}, "param", "does not match"),
    (
        "window-sql-injection",
        {"window_end": "2026-11-20T12:00:00Z'; DROP TABLE x; --"},
        "param",
        "does not match",
    ),
    (
        "window-full-width-digits",
        {"window_start": "\uff12\uff10\uff12\uff16-11-20T10:00:00Z"},
        "scope",
        "is not an ISO 8601 timestamp",
    ),
    (
        "window-inverted",
        {"window_start": WINDOW_END, "window_end": WINDOW_START},
        "scope",
        "must be after its start",
    ),
    ("window-huge", {"window_start": "2001-01-01T00:00:00Z"}, "scope", "larger than the maximum"),
    ("kinds-unknown", {"divergence_kinds": ["status_mismatch", "everything"]}, "param", "is not one of"),
    ("kinds-empty", {"divergence_kinds": []}, "param", "should be non-empty"),
    ("incident-malformed", {"incident_id": "INC-472"}, "param", "does not match"),
    (
        "incident-sql-injection",
        {"incident_id": "INCIDENT-472'; DELETE FROM recon.incidents; --"},
        "param",
        "does not match",
    ),
    ("incident-full-width-digits", {"incident_id": "INCIDENT-\uff14\uff17\uff12"}, "scope", "is malformed"),
    ("incident-trailing-newline", {"incident_id": "INCIDENT-472\n"}, "scope", "is malformed"),
    ("incident-zero-width", {"incident_id": "INCIDENT-472\u200b"}, "param", "does not match"),
    ("dry-run-not-bool", {"dry_run": "yes"}, "param", "is not of type 'boolean'"),
    ("reason-huge", {"reason": "x" * 100_000}, "param", "is too long"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("overrides", "where", "fragment"), [c[1:] for c in PARAM_CASES], ids=[c[0] for c in PARAM_CASES]
)
def test_remediation_params(hostile, remediation_dag, overrides, where, fragment):
    """The form refuses what it can describe; what it lets through (a full-width digit
    matches ``\\d``, ``$`` matches before a final newline) the scope step refuses."""
    from airflow.sdk.exceptions import ParamValidationError

    from airflow_recon_provider.reconciliation.errors import ReconError
    from airflow_recon_provider.reconciliation.remediation import RemediationRequest

    before = table_checksums(hostile)
    conf = {**GOOD_CONF, **overrides}
    params = copy.deepcopy(remediation_dag.params)
    FIGURES.bad_input("remediation DAG params")
    try:
        params.update(conf)
        values = params.validate()
    except ParamValidationError as exc:
        assert where == "param", f"the form refused it: {exc}"
        assert fragment in str(exc)
    else:
        assert where == "scope", "the form let it through"
        with pytest.raises(ReconError) as refused:
            RemediationRequest.parse(
                psp=values["psp"],
                window_start=values["window_start"],
                window_end=values["window_end"],
                kinds=values["divergence_kinds"],
                incident_id=values["incident_id"],
                dry_run=values["dry_run"],
            )
        assert fragment in str(refused.value)
    assert changed_tables(before, table_checksums(hostile)) == []


@pytest.mark.dags
@pytest.mark.timeout(300)
def test_remediation_run_with_an_id_the_form_lets_through_fails_at_scope(hostile, remediation_dag):
    """A whole run with ``INCIDENT-`` and full-width digits 472 (they pass the form's ``\\d``): the scope
    step fails with the specific error, nothing after it runs, nothing is written."""
    before = table_checksums(hostile)
    run = remediation_dag.test(run_conf={**GOOD_CONF, "incident_id": "INCIDENT-\uff14\uff17\uff12"})
    FIGURES.bad_input("remediation DAG run")
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["investigate.scope"] == "failed"
    assert all(
        state in (None, "upstream_failed", "skipped", "removed")
        for tid, state in states.items()
        if tid not in ("investigate.scope", "release_lease")
    )
    assert states["release_lease"] == "success"  # the teardown: nothing was taken, nothing given back
    assert changed_tables(before, table_checksums(hostile)) == []


# -- the correction's row cap -------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cap", ["1e3", "-1", "0", "1000.5", "\uff11\uff10", True, "1000; DROP TABLE x"])
def test_row_cap_values(cap):
    from airflow_recon_provider.reconciliation.corrections import parse_row_cap
    from airflow_recon_provider.reconciliation.errors import ReconError

    with pytest.raises(ReconError, match="must be a positive integer"):
        parse_row_cap(cap)
    FIGURES.bad_input("correction row cap")


@pytest.mark.timeout(600)
def test_mass_divergent_rows_against_the_row_cap(db, airflow_conns, monkeypatch, tmp_path):
    """``RECON_RELIABILITY_BIG_ROWS`` status divergences of one PSP (generated by PostgreSQL;
    50,000 by default, 10^6 for the figures of docs/reliability.md): the dry run says the set
    is over the cap, and every way to apply it is refused before a row is touched."""
    from airflow_recon_provider.hooks.corrections import CorrectionsHook
    from airflow_recon_provider.reconciliation.corrections import (
        DEFAULT_ROW_CAP,
        ProposedCorrection,
        correction_scope,
    )
    from airflow_recon_provider.reconciliation.errors import RowCapExceededError
    from airflow_recon_provider.reconciliation.kinds import DivergenceKind
    from airflow_recon_provider.reconciliation.window import Window

    n = big_rows()
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference)"
        " SELECT g, 'stripe', 'big-' || g FROM generate_series(1, %s) AS g",
        (n,),
    )
    db.execute(
        """INSERT INTO payment_transactions (id, intent_id, transaction_type, status, amount_minor, currency,
               created_at) SELECT g, g, 'capture', 'authorized', 100, 'BRL',
               timestamptz '2026-11-20 10:00Z' + (g %% 3600000) * interval '1 ms'
           FROM generate_series(1, %s) AS g""",
        (n,),
    )
    db.execute(
        """INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,
               currency, occurred_at, statement_id) SELECT 'stripe', 'big-' || g, 'capture', 'captured', 100,
               'BRL', timestamptz '2026-11-20 10:00Z' + (g %% 3600000) * interval '1 ms', 'big'
           FROM generate_series(1, %s) AS g""",
        (n,),
    )
    db.execute("ANALYZE")
    db.execute(
        "INSERT INTO recon.incidents (incident_id, psp, opened_by) VALUES ('INCIDENT-9', 'stripe', 'watch')"
    )
    hook = CorrectionsHook()
    window = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    dry = hook.dry_run(
        "stripe",
        window,
        (DivergenceKind.STATUS_MISMATCH,),
        scope=correction_scope(incident_id="INCIDENT-9", dag_id="d", run_id="r"),
        run_id="r",
        requested_by="oncall.ana",
        artifact_dir=tmp_path,
        row_cap=DEFAULT_ROW_CAP,
    )
    assert dry.proposal_count == n and dry.row_cap_exceeded
    before = table_checksums(db)

    # the operator (same incident, so the same correction set): refused before anyone is asked
    from types import SimpleNamespace

    from airflow_recon_provider.operators.corrections import TransactionCorrectionOperator

    operator = TransactionCorrectionOperator(
        task_id="correct_transactions",
        psp="stripe",
        window_start="2026-11-20T10:00:00Z",
        window_end="2026-11-20T11:00:00Z",
        divergence_kinds="status_mismatch",
        incident_id="INCIDENT-9",
        artifacts_dir=str(tmp_path / "op"),
    )
    pushed: dict = {}
    ti = SimpleNamespace(
        dag_id="d",
        run_id="r",
        task_id="correct_transactions",
        map_index=-1,
        xcom_push=lambda key, value: pushed.update({key: value}),
    )
    context = {
        "ti": ti,
        "run_id": "r",
        "dag_run": SimpleNamespace(triggering_user_name="oncall.ana"),
        "dag": None,
    }
    with pytest.raises(
        RowCapExceededError, match=f"{n:,} transactions, more than this run's row cap of 1,000"
    ):
        operator.execute(context)
    assert pushed["dry_run"]["correction_key"] == dry.correction_key

    # the resumed task's load, and the hook's apply, each refuse on their own
    with pytest.raises(RowCapExceededError, match="nothing was applied"):
        hook.load_proposals(dry.correction_key, psp="stripe", row_cap=DEFAULT_ROW_CAP)
    rows = db.execute(
        "SELECT transaction_id, provider_reference, transaction_type, kind, before_status,"
        " before_processed_at, after_status, amount_minor, currency FROM recon.correction_proposals"
        " WHERE correction_key = %s ORDER BY position LIMIT %s",
        (dry.correction_key, DEFAULT_ROW_CAP + 1),
    ).fetchall()
    proposals = [
        ProposedCorrection(
            transaction_id=r[0],
            provider_reference=r[1],
            transaction_type=r[2],
            kind=DivergenceKind(r[3]),
            before_status=r[4],
            before_processed_at=r[5],
            after_status=r[6],
            amount_minor=r[7],
            currency=r[8],
        )
        for r in rows
    ]
    with pytest.raises(RowCapExceededError, match="nothing was applied"):
        hook.apply(
            proposals,
            psp="stripe",
            correction_key=dry.correction_key,
            requested_by="oncall.ana",
            approved_by="finance.bia",
            run_id="r",
            row_cap=DEFAULT_ROW_CAP,
        )
    FIGURES.bad_input(f"correction row cap ({n:,} divergent rows)", 3)
    # the operator's dry run publishes its CSV (evidence of the refused set) and puts the
    # refusal on the incident's timeline: those are the only writes
    assert changed_tables(before, table_checksums(db)) == ["recon.artifacts", "recon.incident_events"]
    assert db.execute(
        "SELECT details->>'decision' FROM recon.incident_events WHERE incident_id = 'INCIDENT-9'"
    ).fetchall() == [("row_cap_exceeded",)]
    (published,) = db.execute("SELECT kind FROM recon.artifacts").fetchall()
    assert published == ("dry_run",)
    (untouched,) = db.execute(
        "SELECT count(*) FROM payment_transactions WHERE status = 'authorized'"
    ).fetchone()
    assert untouched == n
