"""A DAG with a TransactionCorrectionOperator, run with ``dag.test()``; finance's answer comes
from a test thread, the package's :class:`HitlAnswerer` (AIRFLOW3-NOTES, HITL): it waits for
the task in ``awaiting_input`` and answers like the REST API's hitlDetails PATCH. A timeout is
the scheduler's own awaiting_input sweep, run by the thread once the deadline has passed
(``dag.test`` runs no scheduler)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths
from correction_data import (
    EXPECTED,
    EXPECTED_BY_CURRENCY,
    EXPECTED_CURRENCY,
    WINDOW_END,
    WINDOW_START,
    audit_rows,
    checksum,
    statuses,
)

from airflow_recon_provider.devtools.demo_airflow import HitlAnswerer

pytestmark = [pytest.mark.dags, pytest.mark.integration]

TASK_ID = "correct_transactions"
#: what dag.test() records as the triggering user (AIRFLOW3-NOTES)
DAG_TEST_USER = "dag_test"


def build_dag(dag_id: str, artifacts, *, window: tuple[str, str] = (WINDOW_START, WINDOW_END), **kwargs: Any):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from airflow_recon_provider.operators.corrections import TransactionCorrectionOperator

    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params={"psp": "stripe", "kinds": ["status_mismatch", "amount_mismatch"]},
    ) as dag:
        correct = TransactionCorrectionOperator(
            task_id=TASK_ID,
            psp="{{ params.psp }}",
            window_start=window[0],
            window_end=window[1],
            divergence_kinds="{{ params.kinds }}",
            incident_id="INCIDENT-472",
            approvers=["finance.bia", DAG_TEST_USER],
            artifacts_dir=str(artifacts),
            **kwargs,
        )
        correct >> EmptyOperator(task_id="communicate")
    return dag


def run_with_answer(register_dag, dag, answerer: HitlAnswerer):
    register_dag(dag)
    answerer.start()
    dag_run = dag.test()
    answerer.finish()
    return dag_run


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def result_of(dag_run) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == TASK_ID,
                XComModel.key == "return_value",
            )
        )
    return XComModel.deserialize_value(type("X", (), {"value": value})())


@pytest.mark.timeout(180)
def test_approved_by_finance_applies_the_dry_run(register_dag, seeded, incident, tmp_path):
    dag = build_dag("recon_correction_approve", tmp_path)
    answerer = HitlAnswerer(dag.dag_id, chosen="Approve", user="finance.bia")
    dag_run = run_with_answer(register_dag, dag, answerer)

    assert states(dag_run) == {TASK_ID: "success", "communicate": "success"}
    request = answerer.request
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert {a["id"] for a in request["assignees"]} == {"finance.bia", DAG_TEST_USER}
    # each currency's count and amount, pt-BR formatted; reais and dollars never added
    # (in [recon] language: pt-BR by default, the buttons keep Airflow's option names)
    assert request["subject"] == (
        "Aprovar correção de dados do PSP stripe: 4 transações — 3 em BRL: R$ 36,50; 1 em USD: USD 7,00"
    )
    body = request["body"]
    assert "**Correção de dados do PSP stripe** (runbook: Mitigação, Correção de Dados)" in body
    assert "**4 transações a corrigir — 3 em BRL: R$ 36,50; 1 em USD: USD 7,00**" in body
    assert "Não convertido para BRL: USD — sem taxa em recon.fx_rates" in body
    assert "**Approve** (aprovar) muda o status de cada transação listada" in body
    assert "**Reject** (rejeitar), ou nenhuma resposta" in body and "não aplica nada." in body
    assert "43,50" not in body and "43.50" not in body  # R$ 36,50 + USD 7,00 is not an amount
    assert "| status divergente (`status_mismatch`) | BRL | 3 | R$ 36,50 |" in body  # counts and amounts
    assert "| status divergente (`status_mismatch`) | USD | 1 | USD 7,00 |" in body
    # the evidence per line: the gateway's and the PSP's status and amount, each in its currency
    assert "**Evidência por transação** (todas as 4)" in body
    assert "| gateway: status | gateway: valor | PSP: status | PSP: valor | novo status |" in body
    line = (
        r"\| {id} \| {ref} \| capture \| [^|]+ \| authorized \| {amount} \| "
        r"\w+ \| {psp} \| \*\*captured\*\* \|"
    )
    assert re.search(line.format(id=101, ref="s1", amount=r"R\$ 10,00", psp=r"R\$ [\d.,]+"), body)
    assert re.search(line.format(id=103, ref="s3", amount="USD 7,00", psp=r"USD [\d.,]+"), body)
    assert "| valor divergente (`amount_mismatch`) | BRL | 1 | R$ 0,50 |" in body  # needs a PSP ticket
    assert "pedida por: dag\\_test (execução " in body  # markdown-escaped

    result = result_of(dag_run)
    # finance opens the dry-run CSV from the approval text: its dashboard link, name, size
    record = assert_artifact_link(result["dry_run"]["artifact_record"], kind="dry_run")
    assert result["dry_run"]["artifact"] == record["link"]
    assert record["name"] == f"correction_{result['correction_key']}.csv"
    assert f"[correction\\_{result['correction_key']}.csv]({record['link']})" in body
    assert f"SHA-256 `{record['sha256'][:16]}…`" in body
    assert artifact_text(record).splitlines()[0].startswith("transaction_id,")
    events = seeded.execute(
        "SELECT outcome, details FROM recon.incident_events WHERE incident_id = %s", (incident,)
    ).fetchall()
    assert_no_local_paths(body, request["subject"], result, events, roots=[tmp_path], what="correction")
    assert result["outcome"] == "applied" and result["approved_by"] == "finance.bia"
    assert result["result"]["applied"] == 4
    assert result["result"]["applied_by_currency"] == {
        c: {"exponent": 2, "count": n, "amount_minor": a} for c, (n, a) in EXPECTED_BY_CURRENCY.items()
    }
    assert result["dry_run"]["proposal_count"] == 4 and "sample" not in result["dry_run"]
    assert {tid: s for tid, s in statuses(seeded).items() if tid in EXPECTED} == {
        tid: after for tid, (_, after) in EXPECTED.items()
    }
    audit = audit_rows(seeded)
    assert [(a[1], a[4], a[5], a[6], a[10]) for a in audit] == [
        (tid, DAG_TEST_USER, "finance.bia", dag_run.run_id, EXPECTED_CURRENCY[tid])
        for tid in sorted(EXPECTED)
    ]
    steps = seeded.execute(
        "SELECT details->>'decision', outcome FROM recon.incident_events WHERE incident_id = %s ORDER BY id",
        (incident,),
    ).fetchall()
    assert [s[0] for s in steps] == ["approval_requested", "applied"]
    # people read the decision in words, never its code
    assert [s[1] for s in steps] == ["aprovação solicitada ao financeiro", "correções aplicadas"]


@pytest.mark.timeout(180)
def test_rejected_applies_nothing(register_dag, seeded, incident, tmp_path):
    before = checksum(seeded)
    dag = build_dag("recon_correction_reject", tmp_path)
    dag_run = run_with_answer(
        register_dag, dag, HitlAnswerer(dag.dag_id, chosen="Reject", user="finance.bia")
    )

    assert states(dag_run) == {TASK_ID: "success", "communicate": "success"}
    result = result_of(dag_run)
    assert (result["outcome"], result["decided_by"], result["result"]) == ("rejected", "finance.bia", None)
    assert checksum(seeded) == before


@pytest.mark.timeout(180)
def test_self_approval_is_refused_and_applies_nothing(register_dag, seeded, incident, tmp_path):
    before = checksum(seeded)
    dag = build_dag("recon_correction_self", tmp_path)
    dag_run = run_with_answer(
        register_dag, dag, HitlAnswerer(dag.dag_id, chosen="Approve", user=DAG_TEST_USER)
    )

    assert states(dag_run)[TASK_ID] == "failed"
    assert checksum(seeded) == before
    (reason,) = seeded.execute(
        "SELECT details->>'reason' FROM recon.incident_events WHERE details->>'decision' = 'approval_refused'"
    ).fetchone()
    assert "dag_test requested this correction" in reason and "cannot also approve" in reason


@pytest.mark.timeout(180)
def test_no_answer_times_out_as_reject(register_dag, seeded, incident, tmp_path):
    before = checksum(seeded)
    dag = build_dag("recon_correction_timeout", tmp_path, approval_timeout=1)
    dag_run = run_with_answer(register_dag, dag, HitlAnswerer(dag.dag_id, chosen=None))

    assert states(dag_run)[TASK_ID] == "success"
    result = result_of(dag_run)
    assert result["outcome"] == "timed_out" and result["result"] is None
    assert checksum(seeded) == before


# -- money in its own currency (DESIGN 3a) -------------------------------------------------------


@pytest.mark.timeout(180)
def test_four_currencies_each_in_its_own_figures_and_converted_with_the_rates(
    register_dag, seeded, incident, tmp_path
):
    """Status mismatches in BRL, EUR, USD (no rate) and JPY (no decimals): the approval lists
    each currency with its count and amount, then the converted total in reais labelled with
    the rates in force at the window's end, USD named as not converted; no figure anywhere is
    a sum of minor units across currencies; each applied correction keeps its currency."""
    import csv
    import io
    import json
    from decimal import ROUND_HALF_EVEN, Decimal

    from correction_data import (
        MULTI_MANUAL,
        MULTI_ROWS,
        MULTI_WINDOW_END,
        MULTI_WINDOW_START,
        cross_currency_sums,
        ints_in,
        numbers_in,
        seed_multi_currency,
    )

    seed_multi_currency(seeded)
    dag = build_dag("recon_correction_currencies", tmp_path, window=(MULTI_WINDOW_START, MULTI_WINDOW_END))
    answerer = HitlAnswerer(dag.dag_id, chosen="Approve", user="finance.bia")
    dag_run = run_with_answer(register_dag, dag, answerer)
    assert states(dag_run) == {TASK_ID: "success", "communicate": "success"}

    # by hand, in Decimal: each currency's total converted once, half-even, to centavos
    def to_centavos(amount_minor: int, rate: str, exponent: int) -> int:
        value = Decimal(amount_minor) * Decimal(rate) * Decimal(10) ** (2 - exponent)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

    brl = 10_000_021 + 417_500
    eur = to_centavos(961_980, "6.2512", 2)  # the EUR rate in force at 11:00, not 5.10 nor 9.99
    jpy = to_centavos(123_457, "0.0365", 0)
    assert (eur, jpy) == (6_013_529, 450_618)
    converted = brl + eur + jpy  # USD has no rate: left out, never taken as zero
    assert converted == 16_881_668
    in_reais = "R$ " + f"{converted // 100:,}".replace(",", ".") + f",{converted % 100:02d}"

    subject, body = answerer.request["subject"], answerer.request["body"]
    per_currency = (
        "2 em BRL: R$ 104.175,21; 1 em EUR: EUR 9.619,80; 1 em JPY: JPY 123.457; 1 em USD: USD 700,55"
    )
    assert subject == f"Aprovar correção de dados do PSP stripe: 5 transações — {per_currency}"
    assert f"**5 transações a corrigir — {per_currency}**" in body
    assert (
        f"- Total convertido em BRL (convertido, de BRL, EUR, JPY; USD fora do total): {in_reais} — "
        "taxas vigentes em 2026-11-21T11:00:00+00:00: "
        "1 EUR = 6,2512 BRL (a partir de 2026-11-21 00:00 UTC, BCB PTAX); "
        "1 JPY = 0,0365 BRL (a partir de 2026-11-20 00:00 UTC, BCB PTAX)"
    ) in body
    assert (
        "- Não convertido para BRL: USD — sem taxa em recon.fx_rates vigente em 2026-11-21T11:00:00" in body
    )
    assert "| EUR | 1 | EUR 9.619,80 | R$ 60.135,29 (convertido a 1 EUR = 6,2512 BRL) |" in body
    assert "| JPY | 1 | JPY 123.457 | R$ 4.506,18 (convertido a 1 JPY = 0,0365 BRL) |" in body
    assert "| USD | 1 | USD 700,55 | não convertido: sem taxa |" in body
    assert "| BRL | 2 | R$ 104.175,21 | mesma moeda |" in body
    assert "| status divergente (`status_mismatch`) | JPY | 1 | JPY 123.457 |" in body  # no decimals
    # the evidence line: the gateway's amount and the PSP's, both in yen (no decimals)
    assert re.search(
        r"\| 305 \| m-jpy-1 \| capture \| [^|]+ \| authorized \| JPY 123\.457 \| "
        r"\w+ \| JPY [\d.]+ \| \*\*captured\*\* \|",
        body,
    )
    assert (
        "Não corrigido aqui (precisa de ticket do PSP ou de uma pessoa): 1 chave — 1 em BRL: R$ 5,00" in body
    )
    assert "9,99" not in body and "5,1 " not in body and "later, not in force" not in body
    assert "summed across currencies" not in body

    mixed = cross_currency_sums(MULTI_ROWS)
    assert not (numbers_in(subject) | numbers_in(body)) & mixed

    result = result_of(dag_run)
    dry = result["dry_run"]
    assert dry["proposal_count"] == 5 and dry["manual_count"] == 1
    assert dry["by_currency"] == {
        "BRL": {"exponent": 2, "count": 2, "amount_minor": brl},
        "EUR": {"exponent": 2, "count": 1, "amount_minor": 961_980},
        "JPY": {"exponent": 0, "count": 1, "amount_minor": 123_457},
        "USD": {"exponent": 2, "count": 1, "amount_minor": 70_055},
    }
    assert dry["by_kind"]["status_mismatch"]["by_currency"] == dry["by_currency"]
    assert dry["manual_by_currency"] == {"BRL": {"exponent": 2, "count": 1, "amount_minor": 500}}
    assert (dry["reporting_currency"], dry["proposal_converted_amount_minor"]) == ("BRL", converted)
    assert dry["fx_rates"] == {
        "EUR": {"rate": "6.2512", "valid_from": "2026-11-21T00:00:00+00:00", "source": "BCB PTAX"},
        "JPY": {"rate": "0.0365", "valid_from": "2026-11-20T00:00:00+00:00", "source": "BCB PTAX"},
    }
    assert dry["unconverted_currencies"] == ["USD"]
    applied = result["result"]
    assert applied["applied"] == 5
    assert applied["applied_by_currency"] == {
        c: {"exponent": v["exponent"], "count": v["count"], "amount_minor": v["amount_minor"]}
        for c, v in dry["by_currency"].items()
    }
    assert not ints_in(result) & mixed

    # the dry-run CSV: integer minor units plus the currency code on every row
    rows = csv.DictReader(io.StringIO(artifact_text(dry["artifact_record"]), newline=""))
    artifact = {int(r["transaction_id"]): (r["currency"], int(r["amount_minor"])) for r in rows}
    assert artifact == {tid: (currency, amount) for tid, (_, currency, amount) in MULTI_ROWS.items()}

    # recon.corrections: each applied correction with its amount's currency
    audit = {a[1]: (a[9], a[10]) for a in audit_rows(seeded)}
    assert audit == {tid: (amount, currency) for tid, (_, currency, amount) in MULTI_ROWS.items()}
    assert statuses(seeded)[MULTI_MANUAL[0]] == "captured"  # the amount mismatch is left to people

    # the incident timeline: per-currency figures and the rates, no mixed sum either
    details = [
        d
        for (d,) in seeded.execute(
            "SELECT details FROM recon.incident_events WHERE incident_id = %s ORDER BY id", (incident,)
        )
    ]
    assert set(details[0]["fx_rates"]) == {"EUR", "JPY"}
    assert details[0]["unconverted_currencies"] == ["USD"]
    assert details[0]["proposal_converted_amount_minor"] == converted
    assert details[-1]["applied_by_currency"]["JPY"] == {"count": 1, "amount_minor": 123_457}
    assert not ints_in(details) & mixed
    assert "summed" not in json.dumps(details)
