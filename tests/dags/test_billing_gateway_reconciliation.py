"""The reference ``billing_gateway_reconciliation`` DAG end to end with ``dag.test()``:
DagBag-loaded DAG, real PostgreSQL, PSP statements from a local HTTP server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from scenario import statement_lines, stripe_adyen

pytestmark = [pytest.mark.dags, pytest.mark.integration]

# a run due at 11:00 reconciles the hourly cycle [10:00, 11:00)
RUN_AT = datetime(2026, 11, 20, 11, tzinfo=UTC)
CYCLE_START = datetime(2026, 11, 20, 10, tzinfo=UTC)
CYCLE_END = datetime(2026, 11, 20, 11, tzinfo=UTC)


def stmt_line(ref, amount, minute, *, ttype="capture", status="captured", currency="BRL"):
    return {
        "provider_reference": ref,
        "transaction_type": ttype,
        "status": status,
        "amount_minor": amount,
        "currency": currency,
        "occurred_at": f"2026-11-20T10:{minute:02d}:00Z",
    }


STRIPE_PAGES = [
    {
        "statement_id": "stripe-2026112010",
        "lines": [stmt_line("r1", 1000, 11), stmt_line("r2", 450, 21)],
        "next_page": "p1",
    },
    {
        "statement_id": "stripe-2026112010",
        "lines": [stmt_line("r9", 300, 40, ttype="refund", status="refunded")],
    },
]
ADYEN_PAGES = [{"statement_id": "adyen-2026112010", "lines": [stmt_line("a1", 100, 30)]}]

# stripe: r2 amount differs by 50, r3 missing in the statement (700), r9 missing in the gateway (300)
STRIPE_DIVERGENT_AMOUNT = 50 + 700 + 300
STRIPE_DIVERGENT_COUNT = 3


@pytest.fixture
def scenario(db, airflow_conns, psp_api, httpserver, monkeypatch):
    """Gateway rows of the cycle, the PSPs' statements, and the connections to both."""
    stripe_adyen(db)
    # a line of the previous cycle: never touched by this cycle's runs
    statement_lines(
        db, [("stripe", "r0", "capture", "captured", 10, "BRL", "2026-11-20T09:59:00Z", "stripe-2026112009")]
    )
    psp_api.statements.update({"stripe": STRIPE_PAGES, "adyen": ADYEN_PAGES})
    for psp in ("stripe", "adyen"):
        monkeypatch.setenv(f"AIRFLOW_CONN_PSP_{psp.upper()}", httpserver.url_for("/"))
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe", "adyen"]}))
    return db


def run(dag, conf=None, logical_date=RUN_AT):
    return dag.test(logical_date=logical_date, run_conf=conf or {})


def task_states(dag_run) -> dict[tuple[str, str], str]:
    """``{(task_id, psp or ""): state}``, mapped instances named by their PSP."""
    tis = dag_run.get_task_instances()
    # a task skipped by its trigger rule never ran to render its map index: use its fetch's
    psp_of = {ti.map_index: ti.rendered_map_index for ti in tis if ti.task_id == "fetch_psp_statements"}
    return {
        (ti.task_id, psp_of.get(ti.map_index, str(ti.map_index)) if ti.map_index >= 0 else ""): ti.state
        for ti in tis
    }


def lines_of(db, psp):
    return db.execute(
        "SELECT id, provider_reference, transaction_type, status, amount_minor, currency, occurred_at,"
        " statement_id FROM psp_statement_lines WHERE psp = %s ORDER BY occurred_at, provider_reference",
        (psp,),
    ).fetchall()


def logs_of(db, psp):
    return db.execute(
        "SELECT status, divergent_amount_minor, divergent_count, notes, cycle_start, cycle_end"
        " FROM payment_reconciliation_logs WHERE psp = %s ORDER BY id",
        (psp,),
    ).fetchall()


def test_dag_shape(reconciliation_dag):
    dag = reconciliation_dag
    assert {"fetch_psp_statements", "match_transactions"} <= set(dag.task_ids)
    assert dag.get_task("match_transactions").upstream_task_ids >= {"fetch_psp_statements"}
    assert dag.catchup is False
    assert dag.timetable.expression == "0 * * * *"
    assert set(dag.params.keys()) == {"psp", "cycle_start", "reprocess"}


@pytest.mark.timeout(180)
def test_hourly_cycle_lands_statements_and_records_divergence(reconciliation_dag, scenario, psp_api):
    db = scenario
    dag_run = run(reconciliation_dag)
    assert dag_run.state == "success", task_states(dag_run)
    states = task_states(dag_run)
    for psp in ("stripe", "adyen"):
        assert states[("fetch_psp_statements", psp)] == "success"
        assert states[("match_transactions", psp)] == "success"

    stripe = lines_of(db, "stripe")
    assert [(r[1], r[4], r[7]) for r in stripe] == [
        ("r0", 10, "stripe-2026112009"),
        ("r1", 1000, "stripe-2026112010"),
        ("r2", 450, "stripe-2026112010"),
        ("r9", 300, "stripe-2026112010"),
    ]
    assert [r[1] for r in lines_of(db, "adyen")] == ["a1"]
    assert [r.get("page") for r in psp_api.requests_for("stripe")] == [None, "p1"]

    ((status, amount, count, notes, start, end),) = logs_of(db, "stripe")
    assert (status, amount, count) == ("success", STRIPE_DIVERGENT_AMOUNT, STRIPE_DIVERGENT_COUNT)
    assert (start, end) == (CYCLE_START, CYCLE_END)
    assert "fetch_psp_statements" in notes and "match_transactions" in notes
    assert [r[:3] for r in logs_of(db, "adyen")] == [("success", 0, 0)]

    # the same cycle again: lines replaced, never duplicated; one more log row for the run
    dag_run = run(reconciliation_dag)
    assert dag_run.state == "success"
    assert [r[1:] for r in lines_of(db, "stripe")] == [r[1:] for r in stripe]
    assert [r[:3] for r in logs_of(db, "stripe")] == [
        ("success", STRIPE_DIVERGENT_AMOUNT, STRIPE_DIVERGENT_COUNT)
    ] * 2


@pytest.mark.timeout(180)
def test_paused_psp_is_skipped_and_untouched(reconciliation_dag, scenario, psp_api):
    db = scenario
    db.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) VALUES"
        " ('stripe','kept','capture','captured',77,'BRL','2026-11-20T10:05:00Z','before-pause')"
    )
    db.execute(
        "INSERT INTO recon.controls (psp, state, reason, actor) VALUES"
        " ('stripe', 'paused', 'INCIDENT-472', 'oncall@platform.io')"
    )
    before = lines_of(db, "stripe")
    dag_run = run(reconciliation_dag)
    states = task_states(dag_run)
    assert states[("fetch_psp_statements", "stripe")] == "skipped"
    assert states[("match_transactions", "stripe")] == "skipped"
    assert states[("match_transactions", "adyen")] == "success"
    assert dag_run.state == "success"
    assert lines_of(db, "stripe") == before
    assert logs_of(db, "stripe") == []
    assert psp_api.requests_for("stripe") == []
    assert [r[:3] for r in logs_of(db, "adyen")] == [("success", 0, 0)]


@pytest.mark.timeout(180)
def test_psp_500_fails_the_run_and_records_failed(reconciliation_dag, scenario, psp_api):
    db = scenario
    psp_api.failures["stripe"] = 500
    dag_run = run(reconciliation_dag)
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states[("fetch_psp_statements", "stripe")] == "failed"
    assert states[("match_transactions", "stripe")] == "upstream_failed"
    assert states[("match_transactions", "adyen")] == "success"  # one PSP does not stop the others
    ((status, amount, count, notes, *_),) = logs_of(db, "stripe")
    assert (status, amount, count) == ("failed", 0, 0)
    assert "PspUnavailableError" in notes and "HTTP 500" in notes and "gave up after 3 attempts" in notes
    assert [r[1] for r in lines_of(db, "stripe")] == ["r0"]
    assert len(psp_api.requests_for("stripe")) == 3


@pytest.mark.timeout(180)
def test_float_amount_is_rejected_and_nothing_written(reconciliation_dag, scenario, psp_api):
    db = scenario
    bad = json.loads(json.dumps(STRIPE_PAGES))
    bad[1]["lines"][0]["amount_minor"] = 300.0
    psp_api.statements["stripe"] = bad
    before = lines_of(db, "stripe")
    dag_run = run(reconciliation_dag)
    assert dag_run.state == "failed"
    assert task_states(dag_run)[("fetch_psp_statements", "stripe")] == "failed"
    assert lines_of(db, "stripe") == before
    ((status, _, _, notes, *_),) = logs_of(db, "stripe")
    assert status == "failed"
    assert (
        "StatementFormatError" in notes and "line 3" in notes and "'r9'" in notes and "amount_minor" in notes
    )


@pytest.mark.timeout(180)
def test_params_pick_one_psp_and_one_cycle(reconciliation_dag, scenario, psp_api):
    db = scenario
    # a run due on another day, asked to redo the 10:00 cycle of stripe only
    dag_run = run(
        reconciliation_dag,
        {"psp": "stripe", "cycle_start": "2026-11-20T07:00:00-03:00"},
        logical_date=datetime(2026, 11, 21, 5, tzinfo=UTC),
    )
    assert dag_run.state == "success", task_states(dag_run)
    assert {r["psp"] for r in psp_api.requests} == {"stripe"}
    assert {(r["from"], r["to"]) for r in psp_api.requests} == {
        ("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    }
    assert [r[:3] for r in logs_of(db, "stripe")] == [
        ("success", STRIPE_DIVERGENT_AMOUNT, STRIPE_DIVERGENT_COUNT)
    ]
    assert logs_of(db, "adyen") == []


@pytest.mark.timeout(180)
def test_without_psp_list_every_psp_of_payment_intents(reconciliation_dag, scenario, psp_api, monkeypatch):
    monkeypatch.delenv("RECON_CONFIG")
    dag_run = run(reconciliation_dag)
    assert dag_run.state == "success", task_states(dag_run)
    assert {r["psp"] for r in psp_api.requests} == {"stripe", "adyen"}


@pytest.mark.timeout(180)
def test_unknown_psp_fails_the_scope(reconciliation_dag, scenario, psp_api):
    dag_run = run(reconciliation_dag, {"psp": "paypal"})
    assert dag_run.state == "failed"
    assert task_states(dag_run)[("scope_cycle", "")] == "failed"
    assert psp_api.requests == []


@pytest.mark.timeout(180)
def test_cycle_start_must_be_on_the_hour(reconciliation_dag, scenario):
    with pytest.raises(Exception, match=r"cycle_start|does not match"):
        run(reconciliation_dag, {"cycle_start": "2026-11-20T10:30:00Z"})
