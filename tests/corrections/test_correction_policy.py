"""The pure correction domain: policy, key, dry-run summary, CSV, approval text and checks."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from correction_data import cross_currency_sums, ints_in, numbers_in

from airflow_recon_provider.reconciliation.corrections import (
    ApplyAction,
    CorrectionKeyBuilder,
    CorrectionPolicy,
    CorrectionRule,
    CurrentRow,
    DryRunBuilder,
    DryRunCsvWriter,
    GatewayRow,
    ManualItem,
    ProposedCorrection,
    approval_body,
    approval_subject,
    check_approver,
    check_row_cap,
    classify_for_apply,
    correction_key,
    correction_note,
    correction_scope,
    parse_row_cap,
)
from airflow_recon_provider.reconciliation.errors import (
    ApproverNotAssignedError,
    CorrectionPolicyError,
    ReconError,
    RowCapExceededError,
    SelfApprovalError,
)
from airflow_recon_provider.reconciliation.kinds import DivergenceKind
from airflow_recon_provider.reconciliation.money import FxRate
from airflow_recon_provider.reconciliation.report import DivergenceRow, KindTotal
from airflow_recon_provider.reconciliation.window import Window

T0 = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 20, 12, tzinfo=UTC))


def divergence(kind="status_mismatch", gs="authorized", ss="captured", gn=1, ref="s1", amount=1000):
    return DivergenceRow(
        kind=DivergenceKind(kind),
        provider_reference=ref,
        transaction_type="capture",
        gateway_status=gs,
        statement_status=ss,
        gateway_amount_minor=amount,
        statement_amount_minor=amount,
        divergent_amount_minor=amount,
        currency="BRL",
        gateway_count=gn,
        statement_count=1,
        gateway_first_id=101,
    )


def target(status="authorized", processed_at=T0):
    return GatewayRow(101, status, processed_at, 1000, "BRL", T0)


def proposal(tid=101, before="authorized", processed_at=T0, after="captured", ref="s1", amount=1000):
    return ProposedCorrection(
        tid, ref, "capture", DivergenceKind.STATUS_MISMATCH, before, processed_at, after, amount, "BRL"
    )


def test_default_policy_corrects_status_mismatch_to_the_psp_status():
    policy = CorrectionPolicy.default()
    assert policy.correctable_kinds == (DivergenceKind.STATUS_MISMATCH,)
    item = policy.assess(divergence(), target())
    assert isinstance(item, ProposedCorrection)
    assert (item.before, item.after) == (
        {"status": "authorized", "processed_at": "2026-11-20T10:05:00+00:00"},
        {"status": "captured"},
    )
    for kind in ("amount_mismatch", "currency_mismatch", "missing_in_statement"):
        manual = policy.assess(divergence(kind), target())
        assert isinstance(manual, ManualItem) and "needs PSP ticket / manual" in manual.reason


@pytest.mark.parametrize(
    ("row", "tgt", "reason"),
    [
        (divergence("duplicate_in_gateway", gn=2), None, "never auto-corrected"),
        (divergence("missing_in_gateway", gs=None, gn=0), None, "no row to correct"),
        (divergence(gn=2), target(), "2 gateway rows"),
        (divergence(ss=None), target(), "reports no status"),
        (divergence(ss="authorized"), target(), "already has status"),
    ],
)
def test_not_proposed(row, tgt, reason):
    item = CorrectionPolicy.default().assess(row, tgt)
    assert isinstance(item, ManualItem) and reason in item.reason


def test_policy_from_dict_and_fixed_status():
    policy = CorrectionPolicy.from_dict(
        {"rules": {"missing_in_statement": {"status": "failed"}, "status_mismatch": "psp_status"}}
    )
    assert [r.kind.value for r in policy.rules] == ["missing_in_statement", "status_mismatch"]
    item = policy.assess(divergence("missing_in_statement", ss=None), target())
    assert isinstance(item, ProposedCorrection) and item.after_status == "failed"
    assert CorrectionPolicy.from_dict(policy.as_dict()) == policy
    assert CorrectionPolicy.from_dict(None) == CorrectionPolicy.from_dict({}) == CorrectionPolicy()
    assert CorrectionPolicy.from_dict({"rules": {}}).correctable_kinds == ()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"rules": {"duplicate_in_gateway": "psp_status"}}, "cannot have a correction rule"),
        ({"rules": {"duplicate_in_statement": {"status": "failed"}}}, "cannot have a correction rule"),
        ({"rules": {"missing_in_gateway": "psp_status"}}, "cannot have a correction rule"),
        ({"rules": {"missing_in_statement": "psp_status"}}, "no PSP status to take"),
        ({"rules": {"bogus": "psp_status"}}, "unknown divergence kind"),
        ({"rules": {"status_mismatch": "captured"}}, "must be 'psp_status'"),
        ({"rules": {"status_mismatch": {"status": "x'; DROP TABLE t; --"}}}, "not a plain status"),
        ({"rules": {"status_mismatch": {"status": "failed"}}, "allowed_statuses": ["captured"]}, "not among"),
        ({"allowed_statuses": "captured"}, "must be a list"),
        ({"rule": {}}, "unknown correction policy key"),
        (["status_mismatch"], "must be an object"),
    ],
)
def test_bad_policy(data, match):
    with pytest.raises(CorrectionPolicyError, match=match):
        CorrectionPolicy.from_dict(data)


def test_two_rules_for_one_kind_are_refused():
    with pytest.raises(CorrectionPolicyError, match="two rules"):
        CorrectionPolicy(
            rules=(CorrectionRule("status_mismatch"), CorrectionRule("status_mismatch", "failed"))
        )


def test_key_is_deterministic_and_sensitive_to_scope_rows_and_state():
    scope = correction_scope(incident_id="INCIDENT-472", dag_id="d", run_id="r")
    assert scope == "incident:INCIDENT-472"
    assert correction_scope(incident_id=None, dag_id="d", run_id="r") == "run:d/r"
    rows = [proposal(101), proposal(102)]
    key = correction_key(scope=scope, psp="stripe", proposals=rows)
    assert key == correction_key(scope=scope, psp="stripe", proposals=list(rows))
    assert key.startswith("corr-") and len(key) == 37
    assert key != correction_key(scope="run:d/r", psp="stripe", proposals=rows)
    assert key != correction_key(scope=scope, psp="adyen", proposals=rows)
    assert key != correction_key(scope=scope, psp="stripe", proposals=rows[:1])
    moved = [proposal(101, processed_at=T0 + timedelta(microseconds=1)), proposal(102)]
    assert key != correction_key(scope=scope, psp="stripe", proposals=moved)
    # the same instant in another time zone is the same state
    same = [proposal(101, processed_at=T0.astimezone(datetime.now().astimezone().tzinfo)), proposal(102)]
    assert key == correction_key(scope=scope, psp="stripe", proposals=same)
    with pytest.raises(ValueError, match="needs a scope"):
        CorrectionKeyBuilder(scope="", psp="stripe")


def test_dry_run_builder_sums_per_currency_and_samples_with_flat_memory():
    builder = DryRunBuilder(psp="stripe", window=WINDOW, scope="run:d/r", sample_size=2, row_cap=2)
    for tid in (1, 2, 3):
        builder.add(proposal(tid, amount=100 * tid))
    builder.add(ManualItem(divergence("amount_mismatch", amount=7), "needs PSP ticket / manual: x"))
    builder.add(ManualItem(divergence("amount_mismatch", amount=8), "needs PSP ticket / manual: x"))
    dry = builder.finish(artifact="/tmp/a.csv")
    assert dry.proposal_count == 3 and dict(dry.by_currency) == {"BRL": KindTotal(3, 600)}
    assert [p.transaction_id for p in dry.sample] == [1, 2]
    assert dry.row_cap_exceeded
    out = dry.as_dict()
    brl = {"exponent": 2, "count": 3, "amount_minor": 600}
    assert out["by_kind"] == {"status_mismatch": {"count": 3, "by_currency": {"BRL": brl}}}
    assert out["manual_by_kind"]["amount_mismatch"] == {
        "count": 2,
        "by_currency": {"BRL": {"exponent": 2, "count": 2, "amount_minor": 15}},
        "reasons": {"needs PSP ticket / manual: x": 2},
    }
    # one currency, the reporting one: the converted figure is the figure itself
    assert (out["proposal_converted_amount_minor"], out["unconverted_currencies"]) == (600, [])
    assert out["correction_key"] == correction_key(
        scope="run:d/r", psp="stripe", proposals=[proposal(t, amount=100 * t) for t in (1, 2, 3)]
    )


def test_row_cap():
    check_row_cap(3, 3)
    check_row_cap(10**6, None)
    with pytest.raises(
        RowCapExceededError, match="1,000,000 transactions, more than this run's row cap of 1,000"
    ):
        check_row_cap(10**6, 1000)
    assert parse_row_cap("25") == 25 and parse_row_cap(None) is None and parse_row_cap("") is None
    for bad in ("0", "-1", "1.5", "ten", True, 0):
        with pytest.raises(ReconError):
            parse_row_cap(bad)


def test_csv_artifact_neutralises_formulas():
    out = io.StringIO()
    writer = DryRunCsvWriter(out)
    writer.write(proposal(ref='=HYPERLINK("http://x","y")'))
    writer.write(proposal(102, processed_at=None, ref="-1+1"))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["provider_reference"] == '\'=HYPERLINK("http://x","y")'
    assert rows[1]["provider_reference"] == "'-1+1" and rows[1]["before_processed_at"] == ""
    assert rows[0]["amount_minor"] == "1000" and writer.rows == 2


def test_approval_body_shows_figures_and_escapes_the_data():
    builder = DryRunBuilder(psp="stripe", window=WINDOW, scope="s")
    builder.add(proposal(ref="ref|<script>*x*"))
    body = approval_body(
        builder.finish(artifact="/a/b.csv"),
        requested_by="ana",
        run_id="r1",
        incident_id="INCIDENT-1",
        timeout=timedelta(hours=8),
        approvers=["finance.bia"],
    )
    assert "**1 transação a corrigir — 1 em BRL: R$ 10,00**" in body
    assert "convertido" not in body.lower()  # reais only: nothing to convert
    assert "| 101 | ref\\|\\<script\\>\\*x\\* | capture |" in body
    assert "nenhuma resposta em 8 h, não aplica nada" in body
    assert "Aprovadores designados: finance.bia." in body
    assert "<script>" not in body


@pytest.mark.parametrize(
    ("responder", "approvers", "outcome"),
    [
        ({"id": "u1", "name": "finance.bia"}, None, "finance.bia"),
        ({"id": "finance.bia", "name": ""}, [{"id": "finance.bia", "name": "finance.bia"}], "finance.bia"),
        ({"id": "ana", "name": "Ana Lima"}, None, SelfApprovalError),
        ({"id": "u9", "name": "  ANA "}, None, SelfApprovalError),
        ({"id": "u9", "name": "zoe"}, [{"id": "finance.bia", "name": "Bia"}], ApproverNotAssignedError),
        (None, None, ApproverNotAssignedError),
        ({"id": "", "name": ""}, None, ApproverNotAssignedError),
    ],
)
def test_check_approver(responder, approvers, outcome):
    if isinstance(outcome, str):
        assert check_approver(requested_by="ana", responder=responder, approvers=approvers) == outcome
    else:
        with pytest.raises(outcome):
            check_approver(requested_by="ana", responder=responder, approvers=approvers)


@pytest.mark.parametrize(
    ("current", "action"),
    [
        (CurrentRow("authorized", T0, T0), ApplyAction.APPLY),
        (CurrentRow("captured", datetime(2026, 11, 21, tzinfo=UTC), T0), ApplyAction.SKIP),
        (CurrentRow("authorized", T0 + timedelta(seconds=1), T0), ApplyAction.CONFLICT),
        (CurrentRow("voided", T0, T0), ApplyAction.CONFLICT),
        (CurrentRow("authorized", None, T0), ApplyAction.CONFLICT),
        (None, ApplyAction.CONFLICT),
    ],
)
def test_classify_for_apply(current, action):
    assert classify_for_apply(proposal(), current) is action


def test_note_is_one_line_whatever_the_data():
    note = correction_note(
        proposal(ref="s1\nINJECTED LINE\r\u2028x"),
        correction_key="corr-1",
        requested_by="ana",
        approved_by="bia",
        run_id="r1",
        incident_id=None,
        processed_at=T0,
    )
    assert "\n" not in note and "\r" not in note and "\u2028" not in note
    assert note.startswith("data correction corr-1: transaction 101 (s1 INJECTED LINE")
    assert (
        "status authorized -> captured" in note and "amount R$ 10,00;" in note and "approved by bia" in note
    )


def test_amounts_are_ints():
    with pytest.raises(TypeError, match="must be an int"):
        proposal(amount=10.5)


def _rate(currency: str, rate: str) -> FxRate:
    return FxRate(currency, Decimal(rate), datetime(2026, 11, 20, tzinfo=UTC), "BCB PTAX")


def _priced(tid: int, currency: str, amount: int) -> ProposedCorrection:
    return ProposedCorrection(
        tid,
        f"r{tid}",
        "capture",
        DivergenceKind.STATUS_MISMATCH,
        "authorized",
        T0,
        "captured",
        amount,
        currency,
    )


def test_totals_stay_per_currency_and_the_converted_total_is_labelled():
    priced = [("r1", "brl", 1050), ("r2", "EUR", 240), ("r3", "JPY", 1234), ("r4", "USD", 99)]
    builder = DryRunBuilder(psp="stripe", window=WINDOW, scope="s")
    for tid, (_, currency, amount) in enumerate(priced, 1):
        builder.add(_priced(tid, currency, amount))
    # a duplicate kept in reais with an extra copy in euros: the key counts in reais, the copy
    # adds its amount to the euros (not a key)
    dup = DivergenceRow(
        kind=DivergenceKind.DUPLICATE_IN_GATEWAY,
        provider_reference="d1",
        transaction_type="capture",
        gateway_status="captured",
        statement_status="captured",
        gateway_amount_minor=1000,
        statement_amount_minor=500,
        divergent_amount_minor=500,
        currency="BRL",
        gateway_count=2,
        statement_count=1,
        other_amounts={"EUR": 300},
    )
    builder.add(ManualItem(dup, "duplicate"))
    dry = builder.finish(fx_rates=[_rate("EUR", "6.25"), _rate("JPY", "0.0365")])

    assert dry.by_currency == {
        "BRL": KindTotal(1, 1050),
        "EUR": KindTotal(1, 240),
        "JPY": KindTotal(1, 1234),
        "USD": KindTotal(1, 99),
    }
    assert dry.manual_by_currency == {"BRL": KindTotal(1, 500), "EUR": KindTotal(0, 300)}
    # 1050 + 240 * 6.25 + 1234 * 0.0365 * 100 (= 4504.1 -> 4504); USD left out, never zero
    assert dry.proposal_converted_amount_minor == 1050 + 1500 + 4504
    assert dry.manual_converted_amount_minor == 500 + 1875
    assert dry.unconverted_currencies == ["USD"]
    assert set(dry.as_dict()["fx_rates"]) == {"EUR", "JPY"}

    # another language (words and numbers): English
    body = approval_body(dry, requested_by="ana", run_id="r", incident_id=None, timeout=None, locale="en")
    assert "**Data correction for PSP stripe** (runbook: Mitigation, Data Correction)" in body
    assert (
        "**4 transactions to correct — 1 in BRL: BRL 10.50; 1 in EUR: EUR 2.40; 1 in JPY: JPY 1,234; " in body
    )
    assert "- incident: none" in body and "**Reject**, or no answer at all, applies nothing." in body
    assert "**Approve** sets each listed transaction's status to the new status" in body
    assert "Converted total in BRL (converted, of BRL, EUR, JPY; USD not included): BRL 70.54 — " in body
    assert "1 EUR = 6.25 BRL (from 2026-11-20 00:00 UTC, BCB PTAX)" in body
    assert "Not converted to BRL: USD — no rate" in body
    assert "1 key — 1 in BRL: BRL 5.00; extra copies in EUR: EUR 3.00" in body
    assert "| duplicate in the gateway (`duplicate_in_gateway`) | EUR | 0 | EUR 3.00 |" in body
    subject = approval_subject(dry)  # the language in force: pt-BR
    assert subject.endswith(
        "4 transações — 1 em BRL: R$ 10,50; 1 em EUR: EUR 2,40; 1 em JPY: JPY 1.234; 1 em USD: USD 0,99"
    )
    assert approval_subject(dry, locale="en").startswith(
        "Approve data correction of PSP stripe: 4 transactions"
    )
    # no figure is a sum of minor units of different currencies
    mixed = cross_currency_sums([*priced, ("d1", "BRL", 500), ("d1", "EUR", 300)])
    assert not (numbers_in(body) | numbers_in(subject) | ints_in(dry.as_dict())) & mixed


def test_without_any_rate_no_converted_total_is_shown():
    builder = DryRunBuilder(psp="stripe", window=WINDOW, scope="s")
    builder.add(_priced(1, "USD", 700))
    dry = builder.finish()
    body = approval_body(dry, requested_by="ana", run_id="r", incident_id=None, timeout=None)
    assert "Total convertido" not in body and "R$ 0,00" not in body
    assert "Não convertido para BRL: USD" in body
    assert dry.as_dict()["unconverted_currencies"] == ["USD"]
