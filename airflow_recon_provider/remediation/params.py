"""The forms of the remediation DAGs: the PSP pick list, the typed window, divergence kinds,
incident id, reason, dry run (``remediation_params``), and who may approve a correction.

The single-action forms (:mod:`.single_action`) and the finance report's reuse these fields, so
every form is validated by the same scope step.
"""

from __future__ import annotations

from airflow.sdk import Param

from airflow_recon_provider.configuration import option_or_env
from airflow_recon_provider.i18n import _, language_scope
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
from airflow_recon_provider.reconciliation.window import (
    ZONED_TIMESTAMP_FORMAT,
    ZONED_TIMESTAMP_PATTERN,
    max_window_hours,
)

#: who may approve data corrections: user ids, comma separated (empty: anyone but the requester)
APPROVERS_OPTION = "finance_approvers"
#: the environment variable that set them before ``[recon] finance_approvers`` (still read)
APPROVERS_ENV = "RECON_FINANCE_APPROVERS"
PSP_NAME_PATTERN = r"^[a-z0-9][a-z0-9_]{0,62}$"
INCIDENT_ID_PATTERN = r"^INCIDENT-\d+$"


# -- the form ----------------------------------------------------------------------------------


def psp_param(config: ReconConfig | None = None) -> Param:
    """The PSP field: a pick list of the configured PSPs with their display names; without a
    configured list, a PSP name (checked against ``payment_intents`` by the scope step)."""
    problem = None
    if config is None:
        config, problem = ReconConfig.load_for_form()
    if problem is not None:
        # the form still opens: it says why every run will be refused until RECON_CONFIG is fixed
        return Param(
            type="string",
            pattern=PSP_NAME_PATTERN,
            title="PSP",
            description=_(
                "ATTENTION: the reconciliation configuration (RECON_CONFIG) could not be read: "
                "%(problem)s. Every run is refused at its first step until it is fixed.",
                problem=problem,
            ),
        )
    if config.psps:
        return Param(
            type="string",
            enum=config.psp_names,
            values_display={p.name: p.display_name for p in config.psps},
            title="PSP",
            description=_("The payment service provider (PSP) whose reconciliation diverges."),
        )
    return Param(
        type="string",
        pattern=PSP_NAME_PATTERN,
        title="PSP",
        description=_(
            "The payment service provider (PSP) whose reconciliation diverges, as in "
            "payment_intents.provider: format lower-case letters, digits and _, e.g. stripe."
        ),
    )


def window_params(config: ReconConfig | None = None, *, typed: bool = False) -> dict[str, Param]:
    """The window fields.

    ``typed`` (the remediation and single-action forms): the start and end are typed as text
    with their zone (``Z`` or an offset; the JSON-schema pattern refuses a time without one),
    never through Airflow's date picker, which reads and writes the UI's time zone without
    showing it (with the UI in America/Sao_Paulo a window typed in UTC landed three hours
    late); the end may be left empty and the window given as a start plus a duration in
    whole hours, bounded by the configured maximum (the form's number field cannot go past
    it). The scope step echoes the window in UTC and in America/Sao_Paulo and refuses, at
    once and in words, what the form could not (end before start, end and duration that
    disagree). Without ``typed`` (forms of other owners): the date-time fields as before.
    """
    if not typed:
        return {
            "window_start": Param(
                type="string",
                format="date-time",
                title="Window start",
                description=(
                    "Start of the affected period (inclusive), with its time zone, e.g. 2026-11-20T10:00Z."
                ),
            ),
            "window_end": Param(
                type="string",
                format="date-time",
                title="Window end",
                description=(
                    "End of the affected period (exclusive), after the start; at most the configured "
                    "maximum window (31 days by default)."
                ),
            ),
        }
    config = config if config is not None else ReconConfig.load_for_form()[0]
    hours = max_window_hours(config.max_window)
    return {
        "window_start": Param(
            type="string",
            pattern=ZONED_TIMESTAMP_PATTERN,
            title=_("Window start (with its zone: Z = UTC)"),
            description=_(
                "Start of the affected period (inclusive), typed with its time zone: %(format)s. "
                "E.g. 2026-12-06T22:00Z is 22:00 UTC = 19:00 in America/Sao_Paulo. Without a zone the "
                "request is refused. The first task (investigate.scope) and the run's note repeat the "
                "window in UTC and in America/Sao_Paulo.",
                format=_(ZONED_TIMESTAMP_FORMAT),
            ),
            examples=["2026-12-06T22:00Z", "2026-12-06T19:00-03:00"],
        ),
        "window_hours": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=hours,
            title=_("Duration (hours)"),
            description=_(
                "Duration of the window in whole hours, 1 to %(max)s (the configured maximum). Give the "
                "duration or the window end; with both, they must agree.",
                max=hours,
            ),
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            pattern=ZONED_TIMESTAMP_PATTERN,
            title=_("Window end (with its zone; optional with the duration)"),
            description=_(
                "End of the affected period (exclusive), after the start, in the same format: "
                "%(format)s. Leave it empty to use the duration.",
                format=_(ZONED_TIMESTAMP_FORMAT),
            ),
            examples=["2026-12-07T01:00Z", "2026-12-06T22:00-03:00"],
        ),
    }


def incident_param(description: str | None = None) -> Param:
    return Param(
        None,
        type=["null", "string"],
        pattern=INCIDENT_ID_PATTERN,
        title=_("Incident (INCIDENT-<number>)"),
        description=description
        or _(
            "Format: INCIDENT-<number>, in capitals and without spaces, e.g. INCIDENT-472. Empty: the "
            "PSP's open incident, or a new one (a dry run never opens an incident)."
        ),
    )


def reason_param() -> Param:
    return Param(
        "",
        type="string",
        maxLength=500,
        title=_("Reason"),
        description=_(
            "Why, in your words (up to 500 characters; kept on the incident and in recon.controls)."
        ),
    )


def divergence_kinds_param() -> Param:
    kinds = [kind.value for kind in ALL_KINDS]
    return Param(
        kinds,
        type="array",
        items={"type": "string", "enum": kinds},
        examples=kinds,
        values_display={kind.value: kind.label.capitalize() for kind in ALL_KINDS},
        uniqueItems=True,
        minItems=1,
        title=_("Divergence kinds"),
        description=_("The kinds of divergence in scope (missing capture, duplicated settlement, ...)."),
    )


def remediation_params(config: ReconConfig | None = None) -> dict[str, Param]:
    """The ``billing_gateway_remediation`` form: what a finance analyst fills in the UI, in the
    configured language (``[recon] language``) when the DAG file is parsed."""
    with language_scope():
        return _remediation_params(config)


def _remediation_params(config: ReconConfig | None) -> dict[str, Param]:
    return {
        "psp": psp_param(config),
        **window_params(config, typed=True),
        "divergence_kinds": divergence_kinds_param(),
        "incident_id": incident_param(),
        "dry_run": Param(
            True,
            type="boolean",
            title=_("Dry run"),
            description=_(
                "Investigate and propose corrections only (a CSV to review): nothing is paused, "
                "reprocessed or applied. Untick to run the runbook for real: it pauses the PSP's "
                "automatic reconciliation, tells finance and opens an incident when there is none."
            ),
        ),
        "after_release": Param(
            False,
            type="boolean",
            title=_("Broke after a release"),
            description=_(
                "The reconciliation broke after a release of the worker: roll it back (Mitigation 3)."
            ),
        ),
        "reason": reason_param(),
    }


def finance_approvers() -> list[str] | None:
    """Approvers of data corrections (user ids, comma separated): ``[recon] finance_approvers``,
    else ``$RECON_FINANCE_APPROVERS``; ``None`` (anyone but the requester) when neither is set.
    Read when the DAG file is parsed (the approval's respondents are part of the task)."""
    names = [n.strip() for n in option_or_env(APPROVERS_OPTION, APPROVERS_ENV).split(",") if n.strip()]
    return names or None


__all__ = [
    "APPROVERS_ENV",
    "INCIDENT_ID_PATTERN",
    "PSP_NAME_PATTERN",
    "divergence_kinds_param",
    "finance_approvers",
    "incident_param",
    "psp_param",
    "reason_param",
    "remediation_params",
    "window_params",
]
