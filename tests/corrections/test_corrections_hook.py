"""CorrectionsHook against real PostgreSQL: the dry run changes nothing, the apply touches
only approved rows still in their "before" state, in one transaction, once."""

from __future__ import annotations

import csv
import threading
from datetime import timedelta

import psycopg
import pytest
from correction_data import (
    CYCLE_10,
    CYCLE_11,
    EXPECTED,
    EXPECTED_BY_CURRENCY,
    EXPECTED_CURRENCY,
    EXPECTED_MANUAL,
    SUCCESS_LOG_NOTES,
    audit_rows,
    checksum,
    correction_lines,
    log_rows,
    payment_rows,
    statuses,
)

from airflow_recon_provider.reconciliation.corrections import CorrectionPolicy, correction_scope
from airflow_recon_provider.reconciliation.errors import (
    CorrectionConflictError,
    CorrectionLockedError,
    CorrectionSetNotFoundError,
    RowCapExceededError,
    SelfApprovalError,
)
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-20T12:30:00+00:00"
SCOPE = correction_scope(incident_id=None, dag_id="billing_gateway_data_correction", run_id=RUN_ID)


def dry_run(hook, window, artifacts, **kwargs):
    kwargs.setdefault("scope", SCOPE)
    kwargs.setdefault("requested_by", "oncall.ana")
    return hook.dry_run("stripe", window, ALL_KINDS, run_id=RUN_ID, artifact_dir=artifacts, **kwargs)


def apply(hook, key, **kwargs):
    kwargs.setdefault("requested_by", "oncall.ana")
    kwargs.setdefault("approved_by", "finance.bia")
    kwargs.setdefault("run_id", RUN_ID)
    return hook.apply(hook.load_proposals(key, psp="stripe"), psp="stripe", correction_key=key, **kwargs)


def test_dry_run_writes_artifact_and_changes_nothing(hook, seeded, window, artifacts):
    before = checksum(seeded)
    dry = dry_run(hook, window, artifacts, row_cap=10, sample_size=2)

    assert checksum(seeded) == before
    assert dry.proposal_count == len(EXPECTED)
    # amounts per currency, never one sum of reais and dollars
    assert {c: (t.count, t.amount_minor) for c, t in dry.by_currency.items()} == EXPECTED_BY_CURRENCY
    assert {
        k.value: {c: (t.count, t.amount_minor) for c, t in by_currency.items()}
        for k, by_currency in dry.by_kind.items()
    } == {"status_mismatch": EXPECTED_BY_CURRENCY}
    assert {
        k.value: {c: a.amount_minor for c, a in t.by_currency.items()} for k, t in dry.manual_by_kind.items()
    } == EXPECTED_MANUAL
    # no rate for USD in recon.fx_rates: named, left out of the converted total, never zero
    assert dry.unconverted_currencies == ["USD"] and dry.fx_rates == {}
    out = dry.as_dict()
    assert "proposal_amount_minor" not in out and "manual_amount_minor" not in out
    assert out["by_currency"] == {
        "BRL": {"exponent": 2, "count": 3, "amount_minor": 3650},
        "USD": {"exponent": 2, "count": 1, "amount_minor": 700},
    }
    assert (out["reporting_currency"], out["proposal_converted_amount_minor"]) == ("BRL", 3650)
    assert out["unconverted_currencies"] == ["USD"] and out["fx_rates"] == {}
    assert "duplicate in the gateway" in next(
        iter(dry.manual_by_kind[DivergenceKind.DUPLICATE_IN_GATEWAY].reasons)
    )
    assert [p.transaction_id for p in dry.sample] == [101, 102]
    assert not dry.row_cap_exceeded

    with open(dry.artifact, newline="") as f:
        rows = list(csv.DictReader(f))
    assert dry.artifact.endswith(f"correction_{dry.correction_key}.csv")
    assert {int(r["transaction_id"]): (r["before_status"], r["after_status"]) for r in rows} == EXPECTED
    assert {r["kind"] for r in rows} == {"status_mismatch"}
    # integers plus the currency code, per row
    assert {int(r["transaction_id"]): r["currency"] for r in rows} == EXPECTED_CURRENCY
    by_currency: dict[str, tuple[int, int]] = {}
    for r in rows:
        n, a = by_currency.get(r["currency"], (0, 0))
        by_currency[r["currency"]] = (n + 1, a + int(r["amount_minor"]))
    assert by_currency == EXPECTED_BY_CURRENCY
    assert rows[0]["before_processed_at"] == "2026-11-20T10:06:01.123456+00:00"
    assert not list(artifacts.glob(".*part"))

    stored = hook.load_proposals(dry.correction_key, psp="stripe")
    assert [p.transaction_id for p in stored] == [101, 102, 103, 108]
    assert stored[1].after_status == "settled"  # the PSP's SETTLED through the status mapping
    assert "row" not in str(dry.as_dict()["by_kind"])  # figures only, never the rows
    assert "sample" not in dry.as_dict()


def test_same_scope_and_rows_give_the_same_key(hook, seeded, window, artifacts):
    first = dry_run(hook, window, artifacts)
    again = dry_run(hook, window, artifacts)
    assert again.correction_key == first.correction_key
    (count,) = seeded.execute("SELECT count(*) FROM recon.correction_proposals").fetchone()
    assert count == len(EXPECTED)
    other_run = dry_run(hook, window, artifacts, scope="run:other/run")
    assert other_run.correction_key != first.correction_key
    seeded.execute("UPDATE payment_transactions SET processed_at = now() WHERE id = 103")
    assert dry_run(hook, window, artifacts).correction_key != first.correction_key


def test_apply_corrects_audits_and_notes_once(hook, seeded, window, artifacts, incident):
    dry = dry_run(hook, window, artifacts, incident_id=incident)
    result = apply(hook, dry.correction_key, incident_id=incident)

    assert sorted(result.applied) == sorted(EXPECTED)
    assert (result.already_applied, result.conflicts, result.skipped) == ((), (), ())
    assert {c: (t.count, t.amount_minor) for c, t in result.applied_by_currency.items()} == (
        EXPECTED_BY_CURRENCY
    )
    assert "applied_amount_minor" not in result.as_dict()
    assert result.incident_event
    now = result.processed_at
    rows = {r[0]: r for r in payment_rows(seeded)}
    for tid, (_, after) in EXPECTED.items():
        assert rows[tid][1] == after
        assert rows[tid][2] == now
    # nothing else: manual kinds, the other PSP
    assert {tid: s for tid, s in statuses(seeded).items() if tid not in EXPECTED} == {
        104: "captured",
        105: "captured",
        106: "captured",
        107: "captured",
        201: "authorized",
    }

    # audit rows match corrected rows one to one
    audit = audit_rows(seeded)
    assert [a[1] for a in audit] == sorted(EXPECTED)
    for key, tid, before, after, requested, approved, run_id, inc, kind, amount, currency in audit:
        assert key == dry.correction_key
        assert before["status"] == EXPECTED[tid][0] and after["status"] == EXPECTED[tid][1]
        assert after["status"] == rows[tid][1]
        assert (requested, approved, run_id, inc, kind) == (
            "oncall.ana",
            "finance.bia",
            RUN_ID,
            incident,
            "status_mismatch",
        )
        assert amount == rows[tid][3]
        assert currency == EXPECTED_CURRENCY[tid]  # the amount's own currency
    assert audit[0][2]["processed_at"] == "2026-11-20T10:06:01.123456+00:00"

    # notes: one line per correction, in the latest log row of each cycle
    logs = log_rows(seeded)
    # cycle 11 has no log row: the correction writes none (lag and recovery read them)
    assert [(start, status) for start, status, _ in logs] == [(CYCLE_10, "failed"), (CYCLE_10, "success")]
    assert logs[0][2] == "fetch failed"
    success_lines = logs[1][2].splitlines()
    assert success_lines[0] == SUCCESS_LOG_NOTES
    assert [line.split()[4] for line in success_lines[1:]] == ["101", "102", "103"]
    assert "approved by finance.bia" in success_lines[1] and incident in success_lines[1]
    assert log_rows(seeded, "adyen")[0][2] == ""
    # 108's line waits on its audit row for cycle 11's log row
    assert result.notes_pending_cycles == (CYCLE_11,)
    assert result.as_dict()["notes_pending_cycles"] == [CYCLE_11.isoformat()]
    (waiting,) = seeded.execute(
        "SELECT transaction_id, note_cycle_start, note_pending FROM recon.corrections"
        " WHERE note_pending IS NOT NULL"
    ).fetchall()
    assert waiting[0] == 108 and waiting[1] == CYCLE_11
    assert waiting[2].split()[4] == "108" and "approved by finance.bia" in waiting[2]

    (event,) = seeded.execute(
        "SELECT step, outcome, actor, details FROM recon.incident_events WHERE incident_id = %s", (incident,)
    ).fetchall()
    assert event[:3] == ("mitigation.data_correction", "correções aplicadas", "finance.bia")
    assert event[3]["decision"] == "applied"
    assert event[3]["applied"] == 4 and event[3]["correction_key"] == dry.correction_key
    assert event[3]["applied_by_currency"] == {
        c: {"count": n, "amount_minor": a} for c, (n, a) in EXPECTED_BY_CURRENCY.items()
    }

    # a retry (or a re-run of the same key) applies nothing twice
    state = checksum(seeded)
    again = apply(hook, dry.correction_key, incident_id=incident)
    assert again.applied == () and sorted(again.already_applied) == sorted(EXPECTED)
    assert checksum(seeded) == state
    assert len(correction_lines(seeded)) == len(EXPECTED)
    (events,) = seeded.execute("SELECT count(*) FROM recon.incident_events").fetchone()
    assert events == 1


def test_row_changed_after_dry_run_is_a_conflict_left_untouched(hook, seeded, window, artifacts):
    dry = dry_run(hook, window, artifacts)
    # someone settles 103 by hand and refunds 108 the same way the correction would
    seeded.execute("UPDATE payment_transactions SET status = 'voided' WHERE id = 103")
    seeded.execute("UPDATE payment_transactions SET status = 'refunded' WHERE id = 108")
    seeded.execute("DELETE FROM payment_transactions WHERE id = 102")
    untouched = {r[0]: r for r in payment_rows(seeded) if r[0] in (103, 108)}

    result = apply(hook, dry.correction_key)

    assert result.applied == (101,)
    assert result.skipped == (108,)
    assert {c.transaction_id: c.found for c in result.conflicts} == {
        102: None,
        103: {"status": "voided", "processed_at": "2026-11-20T10:21:00+00:00"},
    }
    assert {r[0]: r for r in payment_rows(seeded) if r[0] in (103, 108)} == untouched
    assert [a[1] for a in audit_rows(seeded)] == [101]
    assert len(correction_lines(seeded)) == 1
    assert result.as_dict()["conflict_details"][1]["expected"]["status"] == "authorized"


def test_abort_on_conflict_applies_nothing(hook, seeded, window, artifacts):
    dry = dry_run(hook, window, artifacts)
    seeded.execute("UPDATE payment_transactions SET status = 'voided' WHERE id = 103")
    before = checksum(seeded)
    with pytest.raises(CorrectionConflictError, match=r"1 transaction\(s\).*changed since the dry run"):
        apply(hook, dry.correction_key, abort_on_conflict=True)
    assert checksum(seeded) == before


def test_row_cap_exceeded_applies_nothing(hook, seeded, window, artifacts):
    dry = dry_run(hook, window, artifacts, row_cap=3)
    assert dry.row_cap_exceeded and dry.as_dict()["row_cap_exceeded"] is True
    before = checksum(seeded)
    with pytest.raises(RowCapExceededError, match=r"4 transactions, more than this run's row cap of 3"):
        apply(hook, dry.correction_key, row_cap=3)
    with pytest.raises(RowCapExceededError, match=r"4 transactions"):  # counted, never loaded
        hook.load_proposals(dry.correction_key, row_cap=3)
    assert checksum(seeded) == before


def test_large_set_streams_in_batches_and_is_capped(hook, seeded, window, artifacts):
    """12,000 status mismatches: more than two COPY batches, memory bounded by the sample."""
    n = 12_000
    seeded.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference)"
        " SELECT 1000 + g, 'stripe', 'bulk-' || lpad(g::text, 6, '0') FROM generate_series(1, %s) g",
        (n,),
    )
    seeded.execute(
        "INSERT INTO payment_transactions (id, intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) SELECT 10000 + g, 1000 + g, 'capture', 'authorized', g, 'BRL',"
        " '2026-11-20T10:00Z'::timestamptz + (g %% 3600) * interval '1 second' FROM generate_series(1, %s) g",
        (n,),
    )
    seeded.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) SELECT 'stripe', 'bulk-' || lpad(g::text, 6, '0'), 'capture',"
        " 'captured', g, 'BRL', '2026-11-20T10:00Z'::timestamptz + (g %% 3600) * interval '1 second', 'st'"
        " FROM generate_series(1, %s) g",
        (n,),
    )
    before = checksum(seeded)
    dry = dry_run(hook, window, artifacts, row_cap=10_000, sample_size=5)
    total = n + len(EXPECTED)
    assert dry.proposal_count == total and dry.row_cap_exceeded and len(dry.sample) == 5
    brl_count, brl_amount = EXPECTED_BY_CURRENCY["BRL"]
    assert {c: (t.count, t.amount_minor) for c, t in dry.by_currency.items()} == {
        "BRL": (n + brl_count, n * (n + 1) // 2 + brl_amount),
        "USD": EXPECTED_BY_CURRENCY["USD"],
    }
    positions = seeded.execute(
        "SELECT count(*), count(DISTINCT position), min(position), max(position)"
        " FROM recon.correction_proposals WHERE correction_key = %s",
        (dry.correction_key,),
    ).fetchone()
    assert positions == (total, total, 0, total - 1)
    with open(dry.artifact) as f:
        assert sum(1 for _ in f) == total + 1
    assert dry_run(hook, window, artifacts).correction_key == dry.correction_key
    with pytest.raises(RowCapExceededError, match="12,004 transactions"):
        hook.load_proposals(dry.correction_key, row_cap=10_000)
    assert checksum(seeded) == before


def test_requester_cannot_approve_even_at_the_hook(hook, seeded, window, artifacts):
    dry = dry_run(hook, window, artifacts)
    before = checksum(seeded)
    with pytest.raises(SelfApprovalError, match="cannot approve"):
        apply(hook, dry.correction_key, requested_by="Finance.Bia", approved_by="finance.bia")
    assert checksum(seeded) == before
    # and the database refuses it too (recon.corrections CHECK), whatever the code does
    with pytest.raises(psycopg.errors.CheckViolation):
        seeded.execute(
            "INSERT INTO recon.corrections (correction_key, psp, transaction_id, provider_reference,"
            " transaction_type, kind, amount_minor, before, after, requested_by, approved_by, run_id)"
            " VALUES ('k','stripe',101,'s1','capture','status_mismatch',1,'{}','{}','x','x','r')"
        )


def test_unknown_or_foreign_key_is_refused(hook, seeded, window, artifacts):
    with pytest.raises(CorrectionSetNotFoundError, match="no dry run is stored"):
        hook.load_proposals("corr-nope")
    dry = dry_run(hook, window, artifacts)
    with pytest.raises(CorrectionSetNotFoundError, match="belongs to PSP stripe, not adyen"):
        hook.load_proposals(dry.correction_key, psp="adyen")
    # a set of stripe applied "as adyen" is refused before any row is read
    before = checksum(seeded)
    with pytest.raises(CorrectionSetNotFoundError, match="belongs to PSP stripe, not adyen: nothing"):
        hook.apply(
            hook.load_proposals(dry.correction_key),
            psp="adyen",
            correction_key=dry.correction_key,
            requested_by="oncall.ana",
            approved_by="finance.bia",
            run_id="r",
        )
    assert checksum(seeded) == before and audit_rows(seeded) == []


def test_a_second_corrector_of_the_psp_waits_then_gives_up(hook, seeded, window, artifacts, db_url):
    dry = dry_run(hook, window, artifacts)
    before = checksum(seeded)
    with psycopg.connect(db_url) as other:  # another correction of stripe holds the lock
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended('recon.corrections:stripe', 0))")
        with pytest.raises(CorrectionLockedError, match="another correction or statement load of PSP stripe"):
            apply(hook, dry.correction_key, lock_timeout=timedelta(milliseconds=300))
        assert checksum(seeded) == before
        other.rollback()
    assert len(apply(hook, dry.correction_key).applied) == len(EXPECTED)


def test_concurrent_appliers_apply_each_correction_once(hook, seeded, window, artifacts):
    dry = dry_run(hook, window, artifacts)
    results, errors = [], []

    def run():
        try:
            results.append(apply(hook, dry.correction_key))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(tid for r in results for tid in r.applied) == sorted(EXPECTED)
    assert len(audit_rows(seeded)) == len(EXPECTED) == len(correction_lines(seeded))


def test_policy_decides_what_is_proposed(hook, seeded, window, artifacts):
    policy = CorrectionPolicy.from_dict(
        {
            "rules": {"status_mismatch": "psp_status", "missing_in_statement": {"status": "failed"}},
            "allowed_statuses": ["captured", "settled", "failed"],
        }
    )
    items = list(hook.propose("stripe", window, ALL_KINDS, policy=policy))
    proposed = {i.transaction_id: i.after_status for i in items if hasattr(i, "after_status")}
    # 105 (missing in the statement) -> failed; 108's "refunded" is not an allowed status
    assert proposed == {101: "captured", 102: "settled", 103: "captured", 105: "failed"}
    manual = {i.divergence.provider_reference: i.reason for i in items if hasattr(i, "reason")}
    assert "not an allowed gateway status" in manual["s8"]
    nothing = dry_run(hook, window, artifacts, policy=CorrectionPolicy.from_dict({"rules": {}}))
    assert nothing.proposal_count == 0 and nothing.manual_count == 8
