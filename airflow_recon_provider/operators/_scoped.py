"""The scope of a PSP-scoped task — PSP, window, divergence kinds, incident, flags — read one way.

Most of the runbook's tasks act on one PSP's window: their templated ``psp``,
``window_start``, ``window_end``, ``divergence_kinds`` and ``incident_id`` arrive as rendered
text (a form field, an XCom, a DAG run's conf) and are checked the same way before anything
is read or written:

- the PSP: a plain PSP name (:func:`~airflow_recon_provider.reconciliation.config.check_psp_name`,
  :class:`UnknownPspError`); whether it is *known* (configured, or seen in the gateway) is
  the gateway hook's ``resolve_psp``, which needs the database;
- the window: :meth:`Window.parse <airflow_recon_provider.reconciliation.window.Window.parse>`
  under the configured maximum span (``ReconConfig.load().max_window``);
- the kinds: :func:`~airflow_recon_provider.reconciliation.inputs.parse_kind_list` (blank: all);
- the incident id: blank is none, anything else must be ``INCIDENT-<n>``
  (:func:`~airflow_recon_provider.reconciliation.incidents.check_incident_id`);
- booleans and optional texts: :mod:`airflow_recon_provider.reconciliation.inputs`.

:class:`ScopeInputs` holds those readers for any operator whose attributes carry the inputs
(the Human-in-the-loop correction task mixes it into ``HITLOperator``);
:class:`ScopedOperator` is the ``BaseOperator`` with them. The domain modules are imported
at the first call, so DAG files that import operators parse fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.config import ReconConfig
    from airflow_recon_provider.reconciliation.kinds import DivergenceKind
    from airflow_recon_provider.reconciliation.window import Window


class ScopeInputs:
    """Readers of an operator's templated scope inputs (its attributes ``psp``,
    ``window_start``, ``window_end``, ``divergence_kinds``, ``incident_id``...). Each raises
    the domain's input error naming the problem; none reads or writes anything else."""

    psp: Any
    window_start: Any
    window_end: Any
    divergence_kinds: Any
    incident_id: Any

    def scope_psp(self) -> str:
        """The PSP name, stripped; :class:`UnknownPspError` when it is no plain PSP name."""
        from airflow_recon_provider.reconciliation.config import check_psp_name

        return check_psp_name(str(self.psp).strip())

    @staticmethod
    def scope_config() -> ReconConfig:
        """The provider's configuration (``RECON_CONFIG``, parsed once)."""
        from airflow_recon_provider.reconciliation.config import ReconConfig

        return ReconConfig.load()

    def scope_window(self, config: ReconConfig | None = None) -> Window:
        """``[window_start, window_end)``, at most the configured maximum span."""
        from airflow_recon_provider.reconciliation.window import Window

        config = config if config is not None else self.scope_config()
        return Window.parse(self.window_start, self.window_end, max_span=config.max_window)

    def scope_kinds(self) -> tuple[DivergenceKind, ...]:
        """The divergence kinds in scope; blank or empty means every kind."""
        from airflow_recon_provider.reconciliation.inputs import parse_kind_list

        return parse_kind_list(self.divergence_kinds)

    def scope_incident_id(self, value: Any = None, *, required: bool = False) -> str | None:
        """The incident id (``incident_id``, or ``value`` when given): ``None`` when blank
        (unless ``required``), else ``INCIDENT-<n>`` or :class:`IncidentIdError`."""
        from airflow_recon_provider.reconciliation.incidents import check_incident_id
        from airflow_recon_provider.reconciliation.inputs import blank

        value = self.incident_id if value is None else value
        if blank(value) and not required:
            return None
        return check_incident_id(str(value).strip())

    def flag(self, name: str) -> bool:
        """The boolean input ``name`` (an attribute): ``true``/``false``, ``1``/``0``...;
        blank is ``False``."""
        from airflow_recon_provider.reconciliation.inputs import parse_bool

        return parse_bool(getattr(self, name), name=name)

    def optional_text(self, name: str) -> str | None:
        """The text input ``name`` (an attribute), stripped; ``None`` when blank."""
        from airflow_recon_provider.reconciliation.inputs import blank

        value = getattr(self, name)
        return None if blank(value) else str(value).strip()


class ScopedOperator(ScopeInputs, BaseOperator):
    """A ``BaseOperator`` whose templated scope inputs are read with :class:`ScopeInputs`."""


__all__ = ["ScopeInputs", "ScopedOperator"]
