"""A run's request as templates: :class:`FormFields` read it from the run's Params (the scope
step validates what they render); :class:`RunRequest` gives every later step the *validated*
request from the scope step's XCom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the first task of a remediation run (in the ``investigate`` group)
SCOPE_TASK_ID = "investigate.scope"


@dataclass(frozen=True)
class FormFields:
    """Templates that read a request from the run's Params (and so from its conf). The scope
    step validates what they render."""

    psp: str = "{{ params.psp }}"
    window_start: str = "{{ params.get('window_start') or '' }}"
    window_end: str = "{{ params.get('window_end') or '' }}"
    window_hours: str = "{{ params.get('window_hours') or '' }}"
    divergence_kinds: str = "{{ (params.get('divergence_kinds') or []) | join(',') }}"
    incident_id: str = "{{ params.get('incident_id') or '' }}"
    dry_run: str = "{{ params.get('dry_run', True) }}"
    after_release: str = "{{ params.get('after_release', False) }}"
    reason: str = "{{ params.get('reason') or '' }}"


class _ScopeValue:
    """A :class:`RunRequest` attribute: the template that reads ``key`` of the scope step's
    XCom, as text (``''`` when absent) or, with ``flag``, as a boolean with that default."""

    def __init__(self, key: str, *, flag: bool | None = None) -> None:
        self.key = key
        self.flag = flag

    def __get__(self, request: RunRequest | None, owner: type | None = None) -> Any:
        if request is None:
            return self
        if self.flag is None:
            return request.field(self.key)
        return f"{{{{ {request.scope_xcom}.get('{self.key}', {self.flag}) }}}}"


@dataclass(frozen=True)
class RunRequest:
    """Templates that give a step the run's validated request: the XCom of the scope step.

    :param scope_task_id: the task id of the :class:`ValidateScopeOperator` of the DAG.
    """

    scope_task_id: str = SCOPE_TASK_ID

    psp = _ScopeValue("psp")
    window_start = _ScopeValue("window_start")
    window_end = _ScopeValue("window_end")
    divergence_kinds = _ScopeValue("divergence_kinds_csv")
    psp_ticket_kinds = _ScopeValue("psp_ticket_kinds_csv")
    incident_id = _ScopeValue("incident_id")
    reason = _ScopeValue("reason")
    #: a request that cannot be read is a dry run: never change anything by accident
    dry_run = _ScopeValue("dry_run", flag=True)
    after_release = _ScopeValue("after_release", flag=False)

    @property
    def scope_xcom(self) -> str:
        """The Jinja expression of the scope step's XCom (an empty dict when missing)."""
        return f"(ti.xcom_pull(task_ids='{self.scope_task_id}') or {{}})"

    def field(self, key: str, default: str = "") -> str:
        return f"{{{{ {self.scope_xcom}.get('{key}') or '{default}' }}}}"


__all__ = ["SCOPE_TASK_ID", "FormFields", "RunRequest"]
