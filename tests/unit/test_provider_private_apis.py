"""The few protected members of other providers this package builds on, pinned.

``pyproject.toml`` bounds each of these providers below its next major version; this test
fails, naming the member, when an upgrade inside that range moves one of them, so the
upgrade is caught here and not by a PSP call or a finance e-mail in production.

- ``HttpHook._set_base_url`` / ``_extract_auth`` / ``_configure_session_from_extra``: the HTTP
  hooks (PSPs, billing-gateway-core, the PTAX source, Airflow's REST API, PagerDuty) override
  them to read the connection their way; ``HttpHook.get_conn`` must still call them.
- ``SmtpHook._smtp_client``: the finance e-mail is sent through the hook's logged-in client,
  since ``send_email_smtp`` cannot carry a plain-text alternative and an ``.ics`` together.
- ``PagerdutyEventsHook``: subclassed without its ``__init__`` (which reads the connection at
  once); its module's ``prepare_event_data`` builds the Events API v2 body.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.version import Version


def _requirement(name: str) -> Requirement:
    from importlib.metadata import requires

    for line in requires("airflow-recon-provider") or ():
        req = Requirement(line)
        if req.name == name and not req.marker:
            return req
    raise AssertionError(f"{name} is not a requirement of airflow-recon-provider")


@pytest.mark.parametrize(
    "provider",
    ["apache-airflow-providers-http", "apache-airflow-providers-smtp", "apache-airflow-providers-pagerduty"],
)
def test_providers_whose_protected_members_we_use_have_an_upper_bound(provider):
    req = _requirement(provider)
    uppers = [s for s in req.specifier if s.operator == "<"]
    assert uppers, f"{provider} needs an upper bound: this package uses protected members of it"
    assert Version(version(provider)) in req.specifier


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_http_hook_members():
    from airflow.providers.http.hooks.http import HttpHook

    assert _params(HttpHook._set_base_url) == ["self", "connection"]
    assert _params(HttpHook._extract_auth) == ["self", "connection"]
    assert _params(HttpHook._configure_session_from_extra) == [
        "self",
        "session",
        "connection",
        "extra_options",
    ]
    source = inspect.getsource(HttpHook.get_conn)
    assert "self._set_base_url(connection)" in source
    assert re.search(
        r"self\._configure_session_from_extra\(\s*session,\s*connection,\s*extra_options", source
    )
    assert "self._extract_auth(connection)" in inspect.getsource(HttpHook)


def test_smtp_hook_client_member():
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    hook = SmtpHook(smtp_conn_id="smtp_finance")
    assert hasattr(hook, "_smtp_client") and hook._smtp_client is None  # set by get_conn
    source = inspect.getsource(SmtpHook.get_conn)
    assert "self._smtp_client = self._build_client()" in source
    assert "send_message" in dir(__import__("smtplib").SMTP)


def test_pagerduty_events_hook_members():
    from airflow.providers.pagerduty.hooks.pagerduty_events import PagerdutyEventsHook, prepare_event_data

    from airflow_recon_provider.hooks.pagerduty import ReconPagerDutyEventsHook

    assert issubclass(ReconPagerDutyEventsHook, PagerdutyEventsHook)
    # the provider's __init__ reads the connection; ours skips it, so it must stay a plain one
    assert _params(PagerdutyEventsHook.__init__)[:2] == ["self", "integration_key"]
    params = _params(prepare_event_data)
    for name in ("summary", "severity", "source", "action", "dedup_key", "custom_details", "links"):
        assert name in params, name
