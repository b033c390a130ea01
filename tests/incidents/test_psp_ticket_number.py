"""Comunicação 3, the remediation's entry form for the PSP ticket number
(:class:`PspTicketNumberOperator`): what it asks, and what each answer the HITL resume gives
``execute_complete`` does (AIRFLOW3-NOTES, HITL: called directly here; the remediation run
answers it through ``dag.test()`` in tests/remediation_dag). Real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from incident_support import WINDOW_END, WINDOW_START

from airflow_recon_provider.hooks.incidents import IncidentHook
from airflow_recon_provider.operators.psp_ticket_number import PspTicketNumberOperator
from airflow_recon_provider.reconciliation import Window
from airflow_recon_provider.reconciliation.psp_ticket import PspTicketNumberError

pytestmark = pytest.mark.integration

CSV = {
    "rows": 3,
    "artifact": {"name": "psp_ticket_stripe.csv", "link": "http://localhost:8080/recon/artifacts/7"},
}


@pytest.fixture
def incident_id(divergent_psp) -> str:
    return IncidentHook().open_incident(
        "stripe", window=Window.parse(WINDOW_START, WINDOW_END), reason="divergence", actor="oncall"
    )


def operator(incident_id: str) -> PspTicketNumberOperator:
    return PspTicketNumberOperator(
        task_id="psp_ticket_number", incident_id=incident_id, psp_ticket_task_id="mitigate.psp_ticket"
    )


def context(ticket_result) -> dict:
    ti = SimpleNamespace(xcom_pull=lambda task_ids: ticket_result, id="ti-1")
    return {"ti": ti, "task_instance": ti, "run_id": "manual__1"}


def answer(number, *, user: str | None = "oncall.ana") -> dict:
    return {
        "chosen_options": ["OK"],
        "params_input": {"psp_ticket": number},
        "responded_at": datetime.now(UTC),
        "responded_by_user": {"id": user, "name": user} if user else None,
    }


def ticket_events(incident_id: str) -> list[tuple]:
    return [
        (e.outcome, e.actor, e.run_id, dict(e.details))
        for e in IncidentHook().timeline(incident_id)
        if e.step == "incident.psp_ticket"
    ]


def test_the_form_is_one_field_with_a_deadline_and_the_csv_link(incident_id, monkeypatch):
    from airflow.sdk.exceptions import TaskAwaitingInput

    asked = {}
    monkeypatch.setattr(
        "airflow.providers.standard.operators.hitl.upsert_hitl_detail", lambda **kw: asked.update(kw)
    )
    task = operator(incident_id)
    assert list(task.serialized_params) == ["psp_ticket"] and task.defaults == ["OK"]
    assert task.response_timeout == timedelta(hours=1)
    with pytest.raises(TaskAwaitingInput):
        task.execute(context(CSV))
    assert asked["subject"] == f"{incident_id} · PSP stripe: número do ticket do PSP"
    assert f"[psp_ticket_stripe.csv]({CSV['artifact']['link']})" in asked["body"]
    assert f"/recon/incidents/{incident_id}" in asked["body"] and "Sem resposta em 1 h" in asked["body"]
    assert asked["params"]["psp_ticket"]["value"] == ""
    # in [recon] language, pt-BR by default: the step, the count in words, the field's format
    assert "**Comunicação** — abra o chamado com o PSP stripe enviando" in asked["body"]
    assert (
        "(3 transações divergentes)" in asked["body"]
        and "Nenhum ticket do PSP registrado ainda." in asked["body"]
    )
    param = asked["params"]["psp_ticket"]
    assert (
        param["schema"]["title"] == "Número do ticket do PSP" and "até 64 caracteres" in param["description"]
    )


def test_the_form_in_english(incident_id, monkeypatch):
    """``[recon] language = en``: the question, its field and the refusal in English."""
    from airflow.sdk.exceptions import TaskAwaitingInput

    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    asked = {}
    monkeypatch.setattr(
        "airflow.providers.standard.operators.hitl.upsert_hitl_detail", lambda **kw: asked.update(kw)
    )
    task = operator(incident_id)
    with pytest.raises(TaskAwaitingInput):
        task.execute(context({**CSV, "rows": 1}))
    assert asked["subject"] == f"{incident_id} · PSP stripe: PSP ticket number"
    assert "**Communication** — open the ticket with PSP stripe sending" in asked["body"]
    assert "(1 divergent transaction)" in asked["body"] and "No PSP ticket recorded yet." in asked["body"]
    assert "Without an answer within 1 h the request ends without a number." in asked["body"]
    param = asked["params"]["psp_ticket"]
    assert param["schema"]["title"] == "PSP ticket number" and "up to 64 characters" in param["description"]
    with pytest.raises(PspTicketNumberError, match="'pendente' is not a ticket number"):
        operator(incident_id).execute_complete(context(CSV), answer("pendente"))


@pytest.mark.parametrize(
    ("ticket_result", "reason"),
    [(None, "no PSP ticket CSV"), ({**CSV, "rows": 0}, "no divergent transaction")],
    ids=["no-csv", "empty-csv"],
)
def test_nothing_to_ask_is_a_skip(incident_id, ticket_result, reason):
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match=reason):
        operator(incident_id).execute(context(ticket_result))


def test_an_answer_is_recorded_and_a_second_replaces_it(incident_id):
    result = operator(incident_id).execute_complete(context(CSV), answer(" STRIPE-8812 "))
    assert result == {
        "psp_ticket": "STRIPE-8812",
        "recorded": True,
        "responded_by": "oncall.ana",
        "incident_id": incident_id,
    }
    operator(incident_id).execute_complete(context(CSV), answer("STRIPE-8813", user="oncall.bruno"))
    assert IncidentHook().get(incident_id).psp_ticket == "STRIPE-8813"
    assert ticket_events(incident_id) == [
        ("Ticket do PSP STRIPE-8812", "oncall.ana", "manual__1", {"psp_ticket": "STRIPE-8812"}),
        (
            "Ticket do PSP STRIPE-8813 (substitui STRIPE-8812)",
            "oncall.bruno",
            "manual__1",
            {"psp_ticket": "STRIPE-8813", "replaces": "STRIPE-8812"},
        ),
    ]


def test_no_number_or_the_deadline_records_nothing_and_succeeds(incident_id):
    # the scheduler's awaiting_input sweep answers with the defaults: OK, an empty number
    timed_out = operator(incident_id).execute_complete(context(CSV), answer("", user=None))
    assert timed_out == {
        "psp_ticket": None,
        "recorded": False,
        "responded_by": None,
        "incident_id": incident_id,
    }
    empty = operator(incident_id).execute_complete(context(CSV), answer("   "))
    assert empty["recorded"] is False and empty["responded_by"] == "oncall.ana"
    assert IncidentHook().get(incident_id).psp_ticket is None and ticket_events(incident_id) == []


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("pendente", "não é um número de ticket"),
        ("STRIPE-1\nSTRIPE-2", "uma só linha"),
        ("9" * 65, "no máximo 64"),
    ],
)
def test_a_bad_number_fails_the_entry_with_the_reason_and_nothing_recorded(incident_id, number, reason):
    with pytest.raises(PspTicketNumberError, match=reason):
        operator(incident_id).execute_complete(context(CSV), answer(number))
    assert IncidentHook().get(incident_id).psp_ticket is None and ticket_events(incident_id) == []


def test_a_number_for_an_incident_closed_meanwhile_is_not_recorded_and_the_run_not_failed(incident_id):
    from airflow.sdk.exceptions import AirflowSkipException

    hook = IncidentHook()
    for state in ("recovered", "closed"):
        hook.transition(incident_id, state, actor="oncall")
    with pytest.raises(AirflowSkipException, match=r"STRIPE-8812 not recorded: .* is closed"):
        operator(incident_id).execute_complete(context(CSV), answer("STRIPE-8812"))
    assert hook.get(incident_id).psp_ticket is None and ticket_events(incident_id) == []
    # closed before it asked: nothing to ask
    with pytest.raises(AirflowSkipException, match="is closed"):
        operator(incident_id).execute(context(CSV))
