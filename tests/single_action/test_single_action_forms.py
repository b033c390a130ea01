"""The four single-action DAGs load, offer their forms, are composed from the remediation's
step factories, and refuse bad input: outside the form before a run, or at the ``scope``
step (the remediation's own validation) with nothing changed."""

from __future__ import annotations

import pytest
from remediation_dag_support import WINDOW_END, WINDOW_START, checksum, dag_runs_of, states

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(300)]

CONF = {"psp": "stripe", "window_start": WINDOW_START, "window_end": WINDOW_END}
#: the action a two-action DAG needs in its conf
ACTION = {"billing_gateway_reconciliation_control": "pause", "billing_gateway_release_rollback": "rollback"}
#: each DAG: its steps after ``scope`` (task id -> operator class) and the form's extra fields
EXPECTED = {
    "billing_gateway_reprocess": ({"reprocess": "ReprocessReconciliationOperator"}, []),
    "billing_gateway_data_correction": (
        {"correct_transactions": "TransactionCorrectionOperator"},
        ["divergence_kinds", "dry_run"],
    ),
    "billing_gateway_reconciliation_control": (
        {
            "choose_action": "BranchPythonOperator",
            "pause_reconciliation": "PauseReconciliationOperator",
            "resume_reconciliation": "ResumeReconciliationOperator",
        },
        ["action", "eta_resumption"],
    ),
    "billing_gateway_release_rollback": (
        {
            "choose_action": "BranchPythonOperator",
            "rollback_release": "RollbackDeployOperator",
            "tag_release": "TagReleaseOperator",
        },
        ["action"],
    ),
}


def conf_for(dag, **overrides):
    conf = {**CONF, **overrides}
    if dag.dag_id in ACTION:
        conf.setdefault("action", ACTION[dag.dag_id])
    return conf


def test_the_four_dags_load_without_errors(recon_dags):
    assert not recon_dags.import_errors
    for dag_id in EXPECTED:
        dag = recon_dags.dags[dag_id]
        assert dag.schedule is None and type(dag.timetable).__name__ == "NullTimetable"
        assert "single-action" in dag.tags and dag.doc_md and dag.description
        assert dag.default_args["retries"] == 0


def test_each_form_has_its_fields(single_action_dag):
    dag = single_action_dag
    _, extra = EXPECTED[dag.dag_id]
    schema = {name: dag.params.get_param(name).schema for name in dag.params}
    assert list(schema) == [
        "psp",
        "window_start",
        "window_hours",
        "window_end",
        *[f for f in ("action", "eta_resumption", "divergence_kinds") if f in extra],
        "incident_id",
        *[f for f in ("dry_run",) if f in extra],
        "reason",
    ]
    # the PSP: a pick list of the configured PSPs with their display names
    assert schema["psp"]["enum"] == ["stripe", "adyen"]
    assert schema["psp"]["values_display"] == {"stripe": "Stripe", "adyen": "Adyen"}
    # the window: typed with its zone (no date picker in the UI's time zone), and a duration
    # bounded by the maximum window as the alternative to the end
    from airflow_recon_provider.reconciliation.window import ZONED_TIMESTAMP_PATTERN

    assert schema["window_start"]["pattern"] == schema["window_end"]["pattern"] == ZONED_TIMESTAMP_PATTERN
    assert "format" not in schema["window_start"] and "Z = UTC" in schema["window_start"]["title"]
    assert schema["window_hours"]["minimum"] == 1 and schema["window_hours"]["maximum"] == 31 * 24
    # the incident: INCIDENT-<n>, optional
    assert schema["incident_id"]["pattern"] == r"^INCIDENT-\d+$"
    assert dag.params.get_param("incident_id").value is None
    assert schema["reason"]["maxLength"] == 500
    if "action" in extra:
        action = dag.params.get_param("action")
        assert not action.has_value, "a person must choose the action"
        assert set(schema["action"]["values_display"]) == set(schema["action"]["enum"])
        assert schema["action"]["enum"] == (
            ["pause", "resume"] if dag.dag_id.endswith("control") else ["rollback", "tag"]
        )
    if "eta_resumption" in extra:
        assert schema["eta_resumption"]["format"] == "date-time"
        assert dag.params.get_param("eta_resumption").value is None
    if "dry_run" in extra:
        assert dag.params.get_param("dry_run").value is True
        assert schema["dry_run"]["type"] == "boolean"


def test_each_dag_is_scope_then_the_shared_step(single_action_dag):
    dag = single_action_dag
    steps, _ = EXPECTED[dag.dag_id]
    kinds = {task.task_id: type(task).__name__ for task in dag.tasks}
    # the steps that repeat one of the remediation's take the PSP's remediation lease at scope
    # and give it back in a teardown after every other task; pause/resume stays a free override
    leased = dag.dag_id != "billing_gateway_reconciliation_control"
    release = {"release_lease": "ReleaseRemediationLeaseOperator"} if leased else {}
    assert kinds == {"scope": "ValidateScopeOperator", **steps, **release}
    scope = dag.get_task("scope")
    assert scope.lease is leased
    first = "choose_action" if "choose_action" in steps else next(iter(steps))
    assert scope.downstream_task_ids == {first, *release}
    if first == "choose_action":
        assert dag.get_task("choose_action").downstream_task_ids == set(steps) - {"choose_action"} | set(
            release
        )
    if leased:
        teardown = dag.get_task("release_lease")
        assert teardown.is_teardown and teardown.upstream_task_ids == set(kinds) - {"release_lease"}
        assert teardown.downstream_task_ids == set()
    # every step reads the request the scope validated (never the raw form), and those that
    # do not record themselves put their outcome on the incident of that request
    from airflow_recon_provider.remediation import RecordStep

    for task_id in set(steps) - {"choose_action"}:
        task = dag.get_task(task_id)
        if "psp" in task.template_fields:
            assert "xcom_pull(task_ids='scope')" in task.psp, task.psp
        callbacks = task.on_success_callback or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        for callback in callbacks:
            assert isinstance(callback, RecordStep) and callback.scope_task_id == "scope"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"psp": "paypal"}, "is not one of"),
        ({"incident_id": "INC-472"}, "does not match"),
        ({"window_start": "yesterday at noon"}, "does not match"),
        ({"window_start": "2026-11-20T11:00"}, "does not match"),  # no zone: refused
        ({"window_hours": 745}, "is greater than the maximum of 744"),
        ({"reason": "x" * 501}, "is too long"),
    ],
    ids=["unknown-psp", "incident-id", "not-a-date-time", "no-zone", "window-too-long", "reason-too-long"],
)
def test_the_form_refuses_bad_input_before_any_run(single_action_dag, recon_config, overrides, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=message):
        single_action_dag.test(run_conf=conf_for(single_action_dag, **overrides))


@pytest.mark.parametrize("action", ["stop", None])
def test_the_action_must_be_one_of_the_form(control_dag, recon_config, action):
    from airflow.sdk.exceptions import ParamValidationError

    conf = {**CONF, "action": action} if action else CONF
    with pytest.raises(ParamValidationError):
        control_dag.test(run_conf=conf)


def test_an_inverted_window_fails_at_scope_and_changes_nothing(
    single_action_dag, register_dag, scenario, psp_api, finance_conns, core_api, workdir, db
):
    """The end before the start passes the form (two valid date-times) and is refused by the
    scope step, as in the remediation: nothing paused, re-run, corrected, released or sent."""
    before = checksum(db)
    runs_before = dag_runs_of("billing_gateway_reconciliation")
    dag_run = single_action_dag.test(
        run_conf=conf_for(single_action_dag, window_start=WINDOW_END, window_end=WINDOW_START, dry_run=False)
    )
    task_states = states(dag_run)
    assert dag_run.state == "failed", task_states
    assert task_states["scope"] == "failed"
    # the release_lease teardown runs whatever happened before it; it had nothing to give back
    assert task_states.pop("release_lease", "success") == "success"
    assert {s for t, s in task_states.items() if t != "scope"} <= {"upstream_failed", "None"}, task_states
    assert checksum(db) == before
    assert dag_runs_of("billing_gateway_reconciliation") == runs_before
    assert psp_api.requests == [] and core_api.requests == []
    assert finance_conns["slack"].posts == [] and finance_conns["smtp"].messages == []
    assert not workdir["release"].exists()
