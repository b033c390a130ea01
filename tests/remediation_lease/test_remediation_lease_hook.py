"""One real remediation per PSP at a time: the lease rule (pure) and ``RemediationLeaseHook`` on
real PostgreSQL — two claims in the same second from two connections, a claim 50 s later,
take-over of a run that is no longer running, release. Moments are explicit timestamps, the
holder's Airflow state an explicit answer (the DAG tests read it through the Task SDK)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.remediation_lease import (
    Lease,
    LeaseError,
    LeaseOutcome,
    RemediationInProgressError,
    decide_lease,
)

DAG = "billing_gateway_remediation"
T0 = datetime(2026, 11, 20, 14, 5, 0, tzinfo=UTC)


# -- the rule ----------------------------------------------------------------------------------


def _held(run_id: str = "manual__a", dag_id: str = DAG) -> Lease:
    return Lease("stripe", dag_id, run_id, "INCIDENT-7", "oncall", T0)


@pytest.mark.parametrize(
    ("held", "state", "expected"),
    [
        (None, None, LeaseOutcome.ACQUIRED),
        (_held("manual__b"), "running", LeaseOutcome.REENTERED),
        (_held(), "running", LeaseOutcome.REFUSED),
        (_held(), "queued", LeaseOutcome.REFUSED),
        (_held(), "failed", LeaseOutcome.TAKEN_OVER),
        (_held(), "success", LeaseOutcome.TAKEN_OVER),
        (_held(), None, LeaseOutcome.TAKEN_OVER),
        # the same run id in another DAG is another run
        (_held("manual__b", dag_id="billing_gateway_reprocess"), "running", LeaseOutcome.REFUSED),
    ],
    ids=["free", "own", "running", "queued", "failed", "success", "absent", "other-dag"],
)
def test_the_rule(held, state, expected):
    assert decide_lease(held, dag_id=DAG, run_id="manual__b", holder_state=state) is expected


def test_an_unknown_holder_state_is_refused_clearly():
    with pytest.raises(LeaseError, match="unknown state 'up_for_retry'"):
        decide_lease(_held(), dag_id=DAG, run_id="manual__b", holder_state="up_for_retry")


def test_the_refusal_names_the_running_run_and_its_incident():
    error = RemediationInProgressError("stripe", _held(), "running", dag_id=DAG, run_id="manual__b")
    text = str(error)
    assert isinstance(error, ReconError)
    assert f"{DAG} run manual__a" in text and "incident INCIDENT-7" in text
    assert "started by oncall" in text and "2026-11-20 14:05:00 UTC" in text
    assert "manual__b was refused and changes nothing" in text and "dry run is never refused" in text


# -- the hook on PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def hook(db, airflow_conns):
    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    return RemediationLeaseHook(lock_timeout=30)


def states(**by_run: str | None):
    """The holder's Airflow state as the Task SDK would answer, per run id."""

    def read(dag_id: str, run_id: str) -> str | None:
        return by_run.get(run_id)

    return read


def events(hook, psp: str = "stripe") -> list[tuple]:
    return [
        (e["event"], e["run_id"], e["incident_id"], e["holder_run_id"], e["holder_state"])
        for e in hook.history(psp)
    ]


@pytest.mark.integration
@pytest.mark.parametrize("round_", range(8))
def test_two_claims_in_the_same_second_exactly_one_wins(hook, round_):
    """Two scope steps on two workers, released together by a barrier, same timestamp."""
    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    psp = f"psp_{round_}"
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def scope(run_id: str, incident_id: str) -> None:
        own = RemediationLeaseHook(lock_timeout=30)  # its own connection, as on another worker
        barrier.wait()
        try:
            outcomes[run_id] = own.acquire(
                psp,
                dag_id=DAG,
                run_id=run_id,
                actor="oncall",
                incident_id=incident_id,
                run_state=states(manual__1="running", manual__2="running"),
                at=T0,
            )
        except Exception as exc:
            outcomes[run_id] = exc

    threads = [
        threading.Thread(target=scope, args=("manual__1", "INCIDENT-1")),
        threading.Thread(target=scope, args=("manual__2", "INCIDENT-2")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    refused = {run: o for run, o in outcomes.items() if isinstance(o, Exception)}
    won = {run: o for run, o in outcomes.items() if not isinstance(o, Exception)}
    assert len(won) == 1 and len(refused) == 1, outcomes
    (winner, claim), (loser, error) = next(iter(won.items())), next(iter(refused.items()))
    assert claim.outcome is LeaseOutcome.ACQUIRED
    assert isinstance(error, RemediationInProgressError), error
    assert f"{DAG} run {winner}" in str(error) and f"incident {claim.incident_id}" in str(error)
    assert f"{DAG} run {loser} was refused" in str(error)
    lease = hook.current(psp)
    assert (lease.run_id, lease.incident_id, lease.acquired_at) == (winner, claim.incident_id, T0)
    assert events(hook, psp) == [
        ("acquired", winner, claim.incident_id, None, None),
        ("refused", loser, f"INCIDENT-{loser[-1]}", winner, "running"),
    ]


@pytest.mark.integration
def test_a_claim_waiting_for_the_scope_learns_the_incident_it_chose(hook):
    """The second scope comes while the first is still choosing its incident: it waits for the
    first to finish, then is refused naming the incident the first one opened."""
    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    inside, leave = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def first() -> None:
        with hook.claim("stripe", dag_id=DAG, run_id="manual__1", actor="oncall", at=T0) as claim:
            inside.set()
            leave.wait(timeout=60)
            claim.incident_id = "INCIDENT-41"  # what the scope just opened

    def second() -> None:
        try:
            RemediationLeaseHook(lock_timeout=60).acquire(
                "stripe",
                dag_id=DAG,
                run_id="manual__2",
                actor="finance.bia",
                run_state=states(manual__1="running"),
                at=T0,
            )
        except Exception as exc:
            result["error"] = exc

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(timeout=60)
    two = threading.Thread(target=second)
    two.start()
    _wait_until_a_lease_claim_waits(hook)
    leave.set()
    one.join()
    two.join()
    error = result["error"]
    assert isinstance(error, RemediationInProgressError), error
    assert "run manual__1 (incident INCIDENT-41" in str(error)


def _wait_until_a_lease_claim_waits(hook) -> None:
    """Until another connection waits on an advisory lock (the second claim is blocked)."""
    import time

    with hook.connect(autocommit=True) as conn:
        for _ in range(600):
            waiting = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the second claim never waited for the first")


@pytest.mark.integration
def test_a_claim_50_seconds_later_is_refused_while_the_holder_runs(hook):
    first = hook.acquire(
        "stripe", dag_id=DAG, run_id="manual__1", actor="oncall", incident_id="INCIDENT-9", at=T0
    )
    later = T0 + timedelta(seconds=50)
    with pytest.raises(RemediationInProgressError) as refused:
        hook.acquire(
            "stripe",
            dag_id=DAG,
            run_id="manual__2",
            actor="oncall",
            run_state=states(manual__1="running"),
            at=later,
        )
    text = str(refused.value)
    assert (
        f"{DAG} run manual__1 (incident INCIDENT-9" in text
        and "holding since 2026-11-20 14:05:00 UTC" in text
    )
    # a single step of the PSP (the same lease) is refused too
    with pytest.raises(RemediationInProgressError, match=r"run manual__1 \(incident INCIDENT-9"):
        hook.acquire(
            "stripe",
            dag_id="billing_gateway_release_rollback",
            run_id="manual__3",
            actor="oncall",
            run_state=states(manual__1="queued"),
            at=later,
        )
    lease = hook.current("stripe")
    assert (lease.run_id, lease.acquired_at, first.outcome) == ("manual__1", T0, LeaseOutcome.ACQUIRED)
    history = hook.history("stripe")
    assert [(e["event"], e["created_at"]) for e in history] == [
        ("acquired", T0),
        ("refused", later),
        ("refused", later),
    ]
    # another PSP is not concerned
    assert (
        hook.acquire("adyen", dag_id=DAG, run_id="manual__2", actor="oncall").outcome is LeaseOutcome.ACQUIRED
    )


@pytest.mark.integration
@pytest.mark.parametrize("holder_state", ["failed", "success", None], ids=["failed", "success", "absent"])
def test_a_run_no_longer_running_is_taken_over(hook, holder_state):
    hook.acquire("stripe", dag_id=DAG, run_id="manual__1", actor="oncall", incident_id="INCIDENT-9", at=T0)
    later = T0 + timedelta(minutes=5)
    claim = hook.acquire(
        "stripe",
        dag_id=DAG,
        run_id="manual__2",
        actor="finance.bia",
        incident_id="INCIDENT-9",
        run_state=states(manual__1=holder_state),
        at=later,
    )
    assert claim.outcome is LeaseOutcome.TAKEN_OVER
    assert claim.as_dict()["taken_over_from"]["run_id"] == "manual__1"
    assert claim.as_dict()["taken_over_from"]["state"] == (holder_state or "absent")
    lease = hook.current("stripe")
    assert (lease.run_id, lease.actor, lease.acquired_at) == ("manual__2", "finance.bia", later)
    assert events(hook)[-1] == (
        "taken_over",
        "manual__2",
        "INCIDENT-9",
        "manual__1",
        holder_state or "absent",
    )


@pytest.mark.integration
def test_the_holders_scope_running_again_keeps_its_lease(hook):
    hook.acquire("stripe", dag_id=DAG, run_id="manual__1", actor="oncall", incident_id="INCIDENT-9", at=T0)

    def never(dag_id: str, run_id: str) -> str | None:
        raise AssertionError("its own state is not read")

    again = hook.acquire("stripe", dag_id=DAG, run_id="manual__1", actor="oncall", run_state=never)
    assert again.outcome is LeaseOutcome.REENTERED and again.incident_id == "INCIDENT-9"
    lease = hook.current("stripe")
    assert (lease.acquired_at, lease.incident_id) == (T0, "INCIDENT-9")


@pytest.mark.integration
def test_release_gives_the_psp_back_once(hook):
    hook.acquire("stripe", dag_id=DAG, run_id="manual__1", actor="oncall", incident_id="INCIDENT-9", at=T0)
    assert hook.release(dag_id=DAG, run_id="manual__2", actor="oncall") is None  # not the holder
    released = hook.release(dag_id=DAG, run_id="manual__1", actor="oncall", at=T0 + timedelta(hours=2))
    assert (released.psp, released.incident_id) == ("stripe", "INCIDENT-9")
    assert hook.current("stripe") is None
    assert hook.release(dag_id=DAG, run_id="manual__1", actor="oncall") is None  # idempotent
    assert events(hook) == [
        ("acquired", "manual__1", "INCIDENT-9", None, None),
        ("released", "manual__1", "INCIDENT-9", None, None),
    ]
    # the next real run takes it at once, without asking about the previous one
    assert (
        hook.acquire("stripe", dag_id=DAG, run_id="manual__3", actor="oncall").outcome
        is LeaseOutcome.ACQUIRED
    )


@pytest.mark.integration
def test_a_scope_that_fails_inside_the_claim_keeps_nothing(hook):
    with pytest.raises(ReconError, match="incident could not be opened"):
        with hook.claim("stripe", dag_id=DAG, run_id="manual__1", actor="oncall"):
            raise ReconError("incident could not be opened")
    assert hook.current("stripe") is None and hook.history("stripe") == []


@pytest.mark.integration
def test_an_unreadable_holder_state_refuses_rather_than_risk_two_runs(hook):
    hook.acquire("stripe", dag_id=DAG, run_id="manual__1", actor="oncall", incident_id="INCIDENT-9", at=T0)

    def unreachable(dag_id: str, run_id: str) -> str | None:
        raise ConnectionError("api-server unreachable")

    with pytest.raises(LeaseError, match=r"run manual__1 \(incident INCIDENT-9.*api-server unreachable"):
        hook.acquire("stripe", dag_id=DAG, run_id="manual__2", actor="oncall", run_state=unreachable)
    assert hook.current("stripe").run_id == "manual__1"
    # outside a task there is no Task SDK supervisor to ask: said as such
    with pytest.raises(LeaseError, match="no Task SDK supervisor"):
        hook.acquire("stripe", dag_id=DAG, run_id="manual__2", actor="oncall")


@pytest.mark.integration
def test_a_claim_blocked_too_long_says_so(hook, db_url):
    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    with psycopg.connect(db_url) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended('recon.remediation_lease:stripe', 0))")
        with pytest.raises(
            LeaseError, match=r"deciding the remediation lease of PSP stripe for more than 0\.2 s"
        ):
            RemediationLeaseHook(lock_timeout=0.2).acquire(
                "stripe", dag_id=DAG, run_id="manual__1", actor="oncall"
            )
    assert hook.current("stripe") is None


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"psp": "Stripe Inc"}, "PSP name"),
        ({"incident_id": "INC-9"}, "malformed"),
        ({"run_id": " "}, "run_id is required"),
        ({"at": datetime(2026, 11, 20, 14, 5)}, "with a time zone"),
    ],
    ids=["psp", "incident", "run-id", "naive-time"],
)
def test_bad_input_is_refused_before_anything_is_written(hook, kwargs, message):
    request = {"psp": "stripe", "dag_id": DAG, "run_id": "manual__1", "actor": "oncall", **kwargs}
    with pytest.raises(ReconError, match=message):
        hook.acquire(request.pop("psp"), **request)
    assert hook.history("stripe") == []


def test_lock_timeout_must_be_positive():
    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    with pytest.raises(LeaseError, match="positive number of seconds"):
        RemediationLeaseHook(lock_timeout=0)
