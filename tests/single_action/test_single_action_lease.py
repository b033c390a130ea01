"""The single-action DAGs that repeat a remediation step take the PSP's remediation lease: a
real tag of the release (``billing_gateway_release_rollback``) is refused at scope while a real
``billing_gateway_remediation`` of the PSP runs — nothing tagged twice — and takes over the
lease of a run that no longer exists, giving it back at its end. The holding run's state is
read through the Task SDK under ``dag.test()``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from remediation_dag_support import WINDOW_END, WINDOW_START, forget_run, lease_holder, states, xcom

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(300)]

CONF = {"psp": "stripe", "window_start": WINDOW_START, "window_end": WINDOW_END, "action": "tag"}
REMEDIATION = "billing_gateway_remediation"


def lease_events(db) -> list[tuple]:
    return db.execute(
        "SELECT event, dag_id, run_id, holder_run_id, holder_state"
        " FROM recon.remediation_lease_events ORDER BY id"
    ).fetchall()


def test_a_tag_is_refused_while_a_remediation_runs(release_dag, register_dag, scenario, workdir, db, capfd):
    acquired_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=50)
    holder = lease_holder(
        "running", run_id="manual__remediating_stripe", incident_id=None, acquired_at=acquired_at
    )
    try:
        dag_run = release_dag.test(run_conf=CONF)
    finally:
        forget_run(REMEDIATION, holder)
    assert dag_run.state == "failed", states(dag_run)
    assert states(dag_run) == {
        "scope": "failed",
        "choose_action": "upstream_failed",
        "rollback_release": "upstream_failed",
        "tag_release": "upstream_failed",
        "release_lease": "success",
    }
    captured = capfd.readouterr()
    assert f"real remediation running: {REMEDIATION} run {holder} (no incident" in captured.out + captured.err
    assert not workdir["release"].exists()  # nothing tagged
    assert lease_events(db) == [
        ("acquired", REMEDIATION, holder, None, None),
        ("refused", release_dag.dag_id, dag_run.run_id, holder, "running"),
    ]


def test_a_tag_takes_over_the_lease_of_a_run_that_no_longer_exists(
    release_dag, register_dag, scenario, workdir, db
):
    gone = lease_holder(
        None,
        run_id="manual__deleted_since",
        incident_id=None,
        acquired_at=datetime(2026, 11, 20, 14, tzinfo=UTC),
    )
    dag_run = release_dag.test(run_conf=CONF)
    assert dag_run.state == "success", states(dag_run)
    lease = xcom(dag_run, "scope")["lease"]
    assert lease["outcome"] == "taken_over"
    assert (lease["taken_over_from"]["run_id"], lease["taken_over_from"]["state"]) == (gone, "absent")
    assert xcom(dag_run, "tag_release")["action"] == "tag"
    assert xcom(dag_run, "release_lease")["released"] is True
    assert db.execute("SELECT count(*) FROM recon.remediation_leases").fetchone() == (0,)
    assert lease_events(db) == [
        ("acquired", REMEDIATION, gone, None, None),
        ("taken_over", release_dag.dag_id, dag_run.run_id, gone, "absent"),
        ("released", release_dag.dag_id, dag_run.run_id, None, None),
    ]
