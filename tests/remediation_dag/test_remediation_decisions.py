"""What the remediation does when finance does not approve, when the requester answers
their own request, and when the request itself is wrong.

The decision tests run a DAG composed from the very task groups of
``billing_gateway_remediation`` (``airflow_recon_provider.remediation``) with two settings
shortened for a test: the recovery criteria are checked in poke mode with a 2-second
timeout (a rejected correction leaves the divergence above the recovery thresholds, and
waiting 24 hours is what the real DAG does), and nothing else differs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from remediation_dag_support import (
    WINDOW_END,
    WINDOW_START,
    checksum,
    dag_runs_of,
    run_note,
    states,
    xcom,
)

from airflow_recon_provider.devtools.demo_airflow import HitlAnswerer

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(300)]

REQUESTER = "dag_test"  # what dag.test() records as the triggering user
CONF = {"psp": "stripe", "window_start": WINDOW_START, "window_end": WINDOW_END, "dry_run": False}
PAYMENT_TABLES = ("payment_intents", "payment_transactions", "recon.corrections")


def composed_remediation(dag_id: str):
    from airflow.sdk import DAG

    from airflow_recon_provider.remediation import (
        close_group,
        contain_group,
        investigate_group,
        mitigate_group,
        recover_group,
        remediation_params,
    )

    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1, tzinfo=UTC),
        catchup=False,
        params=remediation_params(),
        default_args={"retries": 0},
    ) as dag:
        (
            investigate_group()
            >> contain_group()
            >> mitigate_group()
            >> recover_group(deferrable=False, mode="poke", poke_interval=0.5, timeout=timedelta(seconds=2))
            >> close_group()
        )
    return dag


def timeline(db, incident_id: str) -> list[tuple[str, str, str]]:
    return db.execute(
        "SELECT step, outcome, actor FROM recon.incident_events WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    ).fetchall()


@pytest.fixture
def decision_conns(scenario, psp_api, finance_conns, core_api, workdir, children_run_by_the_test):
    return scenario


@pytest.mark.parametrize(
    ("dag_id", "chosen", "user"),
    [("remediation_rejected", "Reject", "finance.bia"), ("remediation_self_approved", "Approve", REQUESTER)],
    ids=["rejected", "self-approval"],
)
def test_no_correction_without_someone_elses_approval(
    register_dag, recon_config, decision_conns, db, dag_id, chosen, user
):
    scenario = decision_conns
    payment_before = checksum(db, PAYMENT_TABLES)
    dag = register_dag(composed_remediation(dag_id))
    answerer = HitlAnswerer(dag_id, chosen=chosen, user=user)
    answerer.start()
    dag_run = dag.test(run_conf=CONF)
    answerer.finish()
    task_states = states(dag_run)

    # payment data and the audit trail: exactly as before
    assert checksum(db, PAYMENT_TABLES) == payment_before
    statuses = {
        status
        for (status,) in db.execute(
            "SELECT status FROM payment_transactions WHERE id = ANY(%s)",
            (list(scenario.status_mismatch_ids),),
        )
    }
    assert statuses == {"authorized"}

    incident_id = xcom(dag_run, "investigate.scope")["incident_id"]
    events = timeline(db, incident_id)
    corrections = [
        (outcome, actor) for step, outcome, actor in events if step == "mitigation.data_correction"
    ]
    assert corrections[0] == ("aprovação solicitada ao financeiro", REQUESTER)
    if chosen == "Reject":
        # a decision, not a failure: the step succeeds, says who rejected, nothing applied
        assert task_states["mitigate.correct_transactions"] == "success"
        result = xcom(dag_run, "mitigate.correct_transactions")
        assert result["outcome"] == "rejected" and result["decided_by"] == user
        assert corrections[-1][0] == f"correção recusada por {user}: nada aplicado"
        # the divergence is still there: recovery is not declared, the incident stays open
        assert task_states["recover.recovery_criteria"] == "failed"
    else:
        # the requester cannot approve their own request: the step fails visibly
        assert task_states["mitigate.correct_transactions"] == "failed"
        assert any(outcome.startswith("falhou: SelfApprovalError") for outcome, _ in corrections), corrections
        assert task_states["recover.recovery_criteria"] in {"upstream_failed", "skipped"}
    assert dag_run.state == "failed"
    for task in ("close.mark_recovered", "close.resume_reconciliation", "close.close_incident"):
        assert task_states[task] in {"upstream_failed", "skipped"}, (task, task_states[task])
    state = db.execute("SELECT state FROM recon.incidents WHERE incident_id = %s", (incident_id,)).fetchone()
    assert state == ("mitigating",)
    # containment holds: the PSP stays paused until someone resumes it on purpose
    assert db.execute("SELECT state FROM recon.controls WHERE psp = 'stripe'").fetchone() == ("paused",)


# -- the request itself is wrong -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"window_start": WINDOW_END, "window_end": WINDOW_START},
            "o fim da janela (2026-11-20 11:00 UTC) é anterior ou igual ao início (2026-11-20 14:00 UTC)",
        ),
        ({"window_start": "2025-01-01T00:00:00Z"}, "passa do máximo de 744 h (31 dias)"),
        (
            {"window_end": "2026-11-20T15:00:00Z", "window_hours": 3},
            "o fim da janela (2026-11-20 15:00 UTC) não corresponde à duração de 3 h",
        ),
        ({"incident_id": "INCIDENT-77"}, "is about PSP adyen, not stripe"),
    ],
    ids=["inverted-window", "window-too-large", "end-and-hours-disagree", "incident-of-another-psp"],
)
def test_a_wrong_request_fails_at_scope_and_changes_nothing(
    remediation_dag,
    register_dag,
    scenario,
    psp_api,
    finance_conns,
    core_api,
    workdir,
    db,
    airflow_api,
    overrides,
    message,
    capfd,
):
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.window import Window

    IncidentHook().open_incident(
        "adyen",
        incident_id="INCIDENT-77",
        window=Window.parse(WINDOW_START, WINDOW_END),
        reason="another PSP's incident",
        actor="oncall",
    )
    before = checksum(db)
    runs_before = dag_runs_of("billing_gateway_reconciliation")
    dag_run = remediation_dag.test(run_conf={**CONF, **overrides})
    task_states = states(dag_run)
    assert dag_run.state == "failed"
    assert task_states["investigate.scope"] == "failed"
    # the reason where people look: the run's note (the dashboard's recent runs show it)
    assert run_note(dag_run).startswith("Recusado em Validar Escopo: ") and message in run_note(dag_run)
    assert run_note(dag_run).endswith("Nada foi alterado: corrija o pedido e dispare de novo.")
    # the teardown that gives back the PSP's remediation lease runs anyway (nothing to give back)
    assert task_states.pop("release_lease") == "success"
    assert all(
        state in {"upstream_failed", "skipped", "None"}
        for task, state in task_states.items()
        if task != "investigate.scope"
    ), task_states
    # the specific error is in the task's log (dag.test() writes task logs to the console)
    output = capfd.readouterr()
    assert message in output.out + output.err
    assert checksum(db) == before
    assert dag_runs_of("billing_gateway_reconciliation") == runs_before
    assert psp_api.requests == [] and core_api.requests == []
    assert finance_conns["slack"].posts == [] and finance_conns["smtp"].messages == []


def test_a_window_typed_as_a_start_in_sao_paulo_and_hours_lands_on_its_utc_hours(
    remediation_dag, register_dag, scenario, psp_api, finance_conns, core_api, workdir, db, airflow_api
):
    """The form's start carries its zone (here America/Sao_Paulo's -03:00) and the window a
    duration: the scope reads the UTC hours and echoes them in both zones on the run's note."""
    conf = {**CONF, "window_start": "2026-11-20T08:00-03:00", "window_end": None, "window_hours": 3}
    dag_run = remediation_dag.test(run_conf={**conf, "dry_run": True})
    scope = xcom(dag_run, "investigate.scope")
    assert (scope["window_start"], scope["window_end"]) == (
        "2026-11-20T11:00:00+00:00",
        "2026-11-20T14:00:00+00:00",
    )
    assert run_note(dag_run).startswith(
        "Validar Escopo: PSP Stripe, janela 2026-11-20 11:00 a 2026-11-20 14:00 UTC "
        "(08:00 a 11:00 de 20/11/2026 em America/Sao_Paulo, 3 h); simulação"
    )


def test_a_psp_outside_the_form_is_refused_before_the_run(remediation_dag, recon_config):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="is not one of"):
        remediation_dag.test(run_conf={**CONF, "psp": "paypal"})
