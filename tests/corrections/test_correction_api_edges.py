"""The correction API driven directly with its public classes: the sharp edges of issue 15
(item 7). Each refusal changes nothing; the happy path shows what the guard lets through."""

from __future__ import annotations

from dataclasses import replace

import pytest
from correction_data import CYCLE_11, EXPECTED, audit_rows, checksum, log_rows

from airflow_recon_provider.reconciliation.corrections import ProposedCorrection, correction_scope
from airflow_recon_provider.reconciliation.errors import (
    ApprovalRefusedError,
    CorrectionIncidentError,
    CorrectionSetMismatchError,
    SelfApprovalError,
    UnknownPspError,
)
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.window import Window

pytestmark = pytest.mark.integration


def _dry(
    hook, window, artifacts, *, run_id="run-1", requested_by="oncall.ana", incident_id=None, psp="stripe"
):
    scope = correction_scope(incident_id=incident_id, dag_id="billing_gateway_data_correction", run_id=run_id)
    return hook.dry_run(
        psp,
        window,
        ALL_KINDS,
        scope=scope,
        run_id=run_id,
        requested_by=requested_by,
        incident_id=incident_id,
        artifact_dir=artifacts,
    )


def _apply(hook, key, proposals=None, **kwargs):
    kwargs.setdefault("psp", "stripe")
    kwargs.setdefault("requested_by", "oncall.ana")
    kwargs.setdefault("approved_by", "finance.bia")
    kwargs.setdefault("run_id", "run-1")
    return hook.apply(proposals, correction_key=key, **kwargs)


def _refused(seeded, call, error, match):
    before = checksum(seeded)
    with pytest.raises(error, match=match):
        call()
    assert checksum(seeded) == before
    assert audit_rows(seeded) == []


# -- hand-made lists ----------------------------------------------------------------------------


def test_apply_applies_the_stored_set_only(hook, seeded, window, artifacts):
    dry = _dry(hook, window, artifacts)
    stored = hook.load_proposals(dry.correction_key, psp="stripe")
    # a proposal for 104, an amount mismatch the policy never corrects, slipped into the list
    forged = ProposedCorrection(
        transaction_id=104,
        provider_reference="s4",
        transaction_type="capture",
        kind=DivergenceKind.STATUS_MISMATCH,
        before_status="captured",
        before_processed_at=None,
        after_status="settled",
        amount_minor=900,
        currency="BRL",
    )
    for handed, first in (
        ([*stored, forged], 104),  # one row more
        (stored[1:], stored[0].transaction_id),  # one row less
        ([replace(stored[0], after_status="refunded"), *stored[1:]], stored[0].transaction_id),  # altered
        ([replace(p, amount_minor=p.amount_minor + 1) for p in stored], stored[0].transaction_id),
    ):
        _refused(
            seeded,
            lambda handed=handed: _apply(hook, dry.correction_key, handed),
            CorrectionSetMismatchError,
            f"not its stored dry run of {len(stored)} \\(first differing transaction: {first}\\): nothing",
        )
    # the same list in another order is the same set
    result = _apply(hook, dry.correction_key, list(reversed(stored)))
    assert sorted(result.applied) == sorted(EXPECTED)
    assert 104 not in {a[1] for a in audit_rows(seeded)}


def test_apply_without_a_list_reads_the_stored_set(hook, seeded, window, artifacts):
    dry = _dry(hook, window, artifacts)
    result = _apply(hook, dry.correction_key)
    assert sorted(result.applied) == sorted(EXPECTED)
    assert sorted(a[1] for a in audit_rows(seeded)) == sorted(EXPECTED)


# -- unknown PSP ------------------------------------------------------------------------------


def test_unknown_psp_is_an_error_not_conflicts(hook, seeded, window, artifacts):
    dry = _dry(hook, window, artifacts)
    _refused(
        seeded,
        lambda: _apply(hook, dry.correction_key, psp="paypal"),
        UnknownPspError,
        "unknown PSP 'paypal'; configured PSPs: stripe, adyen",
    )
    with pytest.raises(UnknownPspError, match="unknown PSP 'paypal'"):
        _dry(hook, window, artifacts, psp="paypal")
    (count,) = seeded.execute("SELECT count(*) FROM recon.correction_requests").fetchone()
    assert count == 1  # only the stripe dry run asked for anything


# -- the requester, stored with the dry run --------------------------------------------------------


def test_requester_is_stored_with_the_dry_run_and_checked_at_apply(hook, seeded, window, artifacts):
    dry = _dry(hook, window, artifacts, run_id="run-1", requested_by="oncall.ana")
    assert seeded.execute(
        "SELECT correction_key, run_id, requested_by, psp FROM recon.correction_requests"
    ).fetchall() == [(dry.correction_key, "run-1", "oncall.ana", "stripe")]
    # a requester who did not ask for this set cannot be named at apply time
    _refused(
        seeded,
        lambda: _apply(hook, dry.correction_key, requested_by="someone.else", approved_by="finance.bia"),
        ApprovalRefusedError,
        "was requested by oncall.ana, not by someone.else: nothing was applied",
    )
    # the stored requester cannot approve, whatever requester the caller names
    again = _dry(hook, window, artifacts, run_id="run-2", requested_by="oncall.caio")
    assert again.correction_key != dry.correction_key  # scoped to its run: another set
    incident_scope = "INCIDENT-472"
    seeded.execute(
        "INSERT INTO recon.incidents (incident_id, psp, opened_by) VALUES (%s, 'stripe', 'watch')",
        (incident_scope,),
    )
    first = _dry(
        hook, window, artifacts, run_id="run-a", requested_by="oncall.ana", incident_id=incident_scope
    )
    second = _dry(
        hook, window, artifacts, run_id="run-b", requested_by="oncall.caio", incident_id=incident_scope
    )
    assert first.correction_key == second.correction_key  # the incident's set, asked for twice
    _refused(
        seeded,
        lambda: _apply(
            hook,
            first.correction_key,
            requested_by="oncall.ana",
            approved_by="ONCALL.CAIO ",
            incident_id=incident_scope,
        ),
        SelfApprovalError,
        f"ONCALL.CAIO  requested correction set {first.correction_key} and cannot approve it",
    )
    result = _apply(
        hook,
        first.correction_key,
        requested_by="oncall.caio",
        approved_by="finance.bia",
        incident_id=incident_scope,
    )
    assert sorted(result.applied) == sorted(EXPECTED)
    assert {a[4:6] for a in audit_rows(seeded)} == {("oncall.caio", "finance.bia")}


def test_dry_run_needs_a_requester(hook, seeded, window, artifacts):
    before = checksum(seeded)
    with pytest.raises(ApprovalRefusedError, match="needs its requester"):
        _dry(hook, window, artifacts, requested_by="  ")
    assert checksum(seeded) == before
    assert seeded.execute("SELECT count(*) FROM recon.correction_proposals").fetchone() == (0,)


# -- no failed cycle from a correction ----------------------------------------------------------


def test_a_correction_never_writes_a_cycle_row(hook, seeded, window, artifacts):
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

    gateway = BillingGatewayHook()
    reference = CYCLE_11.replace(hour=13)
    lag_before = gateway.lag_cycles("stripe", reference)
    cycles_before = gateway.cycle_statuses("stripe", window)
    logs_before = [(start, status) for start, status, _ in log_rows(seeded)]

    dry = _dry(hook, window, artifacts)
    result = _apply(hook, dry.correction_key)
    assert result.notes_pending_cycles == (CYCLE_11,)  # 108 was created at 11:15, a cycle with no row

    assert gateway.lag_cycles("stripe", reference) == lag_before
    assert [(c.cycle_start, c.status) for c in gateway.cycle_statuses("stripe", window)] == [
        (c.cycle_start, c.status) for c in cycles_before
    ]
    assert [(start, status) for start, status, _ in log_rows(seeded)] == logs_before
    assert "failed" not in {status for start, status, _ in log_rows(seeded) if start == CYCLE_11}

    # the reconciliation records cycle 11: the waiting line goes into that row, once
    cycle = Window.parse("2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")
    gateway.record_cycle("stripe", cycle, "running")
    gateway.record_cycle("stripe", cycle, "success")
    rows = [r for r in log_rows(seeded) if r[0] == CYCLE_11]
    assert [r[1] for r in rows] == ["success"]
    lines = rows[0][2].splitlines()
    assert len(lines) == 1 and lines[0].split()[4] == "108" and dry.correction_key in lines[0]
    assert seeded.execute(
        "SELECT count(*) FROM recon.corrections WHERE note_pending IS NOT NULL"
    ).fetchone() == (0,)
    gateway.record_cycle("stripe", cycle, "success")  # a re-run of the cycle: the line is not repeated
    assert sum(r[2].count(dry.correction_key) for r in log_rows(seeded) if r[0] == CYCLE_11) == 1


# -- the incident ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (None, "incident INCIDENT-9 does not exist: nothing was proposed"),
        (
            "INSERT INTO recon.incidents (incident_id, psp, opened_by) VALUES ('INCIDENT-9', 'adyen', 'x')",
            "incident INCIDENT-9 is of PSP adyen, not stripe: nothing was proposed",
        ),
        (
            "INSERT INTO recon.incidents (incident_id, psp, opened_by, state, closed_at)"
            " VALUES ('INCIDENT-9', 'stripe', 'x', 'closed', now())",
            "incident INCIDENT-9 is closed: nothing was proposed",
        ),
    ],
)
def test_dry_run_refuses_an_incident_that_is_not_the_psps_open_one(
    hook, seeded, window, artifacts, setup, match
):
    if setup:
        seeded.execute(setup)
    before = checksum(seeded)
    with pytest.raises(CorrectionIncidentError, match=match):
        _dry(hook, window, artifacts, incident_id="INCIDENT-9")
    assert checksum(seeded) == before
    assert seeded.execute("SELECT count(*) FROM recon.correction_proposals").fetchone() == (0,)


def test_apply_checks_the_incident_again(hook, seeded, window, artifacts, incident):
    dry = _dry(hook, window, artifacts, incident_id=incident)
    # another incident than the dry run's, or none
    seeded.execute(
        "INSERT INTO recon.incidents (incident_id, psp, opened_by) VALUES ('INCIDENT-500', 'adyen', 'x')"
    )
    for other in ("INCIDENT-500", None):
        _refused(
            seeded,
            lambda other=other: _apply(hook, dry.correction_key, incident_id=other),
            CorrectionIncidentError,
            f"was proposed for {incident}, not for {other or 'no incident'}: nothing was applied",
        )
    # closed while the approval waited
    seeded.execute(
        "UPDATE recon.incidents SET state = 'closed', closed_at = now() WHERE incident_id = %s", (incident,)
    )
    _refused(
        seeded,
        lambda: _apply(hook, dry.correction_key, incident_id=incident),
        CorrectionIncidentError,
        f"incident {incident} is closed: nothing was applied",
    )
