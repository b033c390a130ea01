"""The provider's ``[recon]`` options, read when a task needs them (never at parse time)."""

from __future__ import annotations

import pytest

from airflow_recon_provider.configuration import option, seconds
from airflow_recon_provider.reconciliation.errors import ConfigError
from airflow_recon_provider.sensors.recovery import DEFAULT_RECOVERY_POLL, RecoverySensor

ENV = "AIRFLOW__RECON__RECOVERY_POLL_INTERVAL"


def _sensor(**kwargs) -> RecoverySensor:
    return RecoverySensor(
        task_id="recovery_criteria",
        psp="stripe",
        window_start="2026-12-07T07:00:00Z",
        window_end="2026-12-07T10:00:00Z",
        **kwargs,
    )


def test_unset_option_reads_its_declared_default(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    # the provider's config section (get_provider_info) gives Airflow the default
    assert option("recovery_poll_interval") == "300"
    assert option("no_such_option") == ""
    assert seconds("no_such_option", default=42, minimum=1, maximum=3600) == 42.0
    assert _sensor()._trigger().poll_interval == DEFAULT_RECOVERY_POLL


def test_the_recovery_sensor_polls_at_the_configured_interval(monkeypatch):
    monkeypatch.setenv(ENV, " 15 ")
    assert _sensor()._trigger().poll_interval == 15.0
    # an interval given to the sensor wins over the configuration
    assert _sensor(poll_interval=2)._trigger().poll_interval == 2.0


@pytest.mark.parametrize("raw", ["0", "-5", "3601", "nan", "inf", "five", "1e400"])
def test_a_bad_interval_fails_the_task_naming_the_option(monkeypatch, raw):
    monkeypatch.setenv(ENV, raw)
    sensor = _sensor()  # the DAG still parses: nothing is read at construction
    with pytest.raises(ConfigError) as err:
        sensor._trigger()
    message = str(err.value)
    assert "[recon] recovery_poll_interval" in message and ENV in message
    assert "from 1 to 3600" in message and repr(raw) in message


def test_finance_approvers_come_from_the_option_before_the_old_variable(monkeypatch):
    from airflow_recon_provider.remediation import finance_approvers

    monkeypatch.delenv("AIRFLOW__RECON__FINANCE_APPROVERS", raising=False)
    monkeypatch.delenv("RECON_FINANCE_APPROVERS", raising=False)
    assert finance_approvers() is None  # anyone but the requester
    # the variable existing deployments set keeps working
    monkeypatch.setenv("RECON_FINANCE_APPROVERS", " finance , ")
    assert finance_approvers() == ["finance"]
    monkeypatch.setenv("AIRFLOW__RECON__FINANCE_APPROVERS", "finance_lead,finance")
    assert finance_approvers() == ["finance_lead", "finance"]


def test_the_psp_ticket_deadline_comes_from_the_option_before_the_old_variable(monkeypatch):
    from datetime import timedelta

    from airflow_recon_provider.remediation import psp_ticket_timeout

    monkeypatch.delenv("AIRFLOW__RECON__PSP_TICKET_TIMEOUT", raising=False)
    monkeypatch.delenv("RECON_PSP_TICKET_TIMEOUT_MINUTES", raising=False)
    assert psp_ticket_timeout() == timedelta(hours=1)
    monkeypatch.setenv("RECON_PSP_TICKET_TIMEOUT_MINUTES", "2")  # minutes, as before
    assert psp_ticket_timeout() == timedelta(minutes=2)
    monkeypatch.setenv("AIRFLOW__RECON__PSP_TICKET_TIMEOUT", "7200")  # seconds
    assert psp_ticket_timeout() == timedelta(hours=2)
    monkeypatch.setenv("AIRFLOW__RECON__PSP_TICKET_TIMEOUT", "30")
    with pytest.raises(ConfigError) as err:
        psp_ticket_timeout()
    assert "[recon] psp_ticket_timeout" in str(err.value) and "from 60 to 604800" in str(err.value)
