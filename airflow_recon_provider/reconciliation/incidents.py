"""The incident record and what finance is told: pure domain, no Airflow, no I/O.

Runbook *Billing Gateway — Falhas de Reconciliação*:

- Comunicação: "Atualizar incidente com percentual de divergência e passos executados",
  "Enviar resumo para finance@platform.io a cada 30 minutos até normalização",
  "Registrar número do ticket do PSP (se houver) no incidente";
- Ações de Contenção: "Informar time financeiro sobre congelamento temporário e
  estimativa de retomada";
- Encerramento: lessons learned attached to the incident (e.g. ``INCIDENT-472``).

Here live the incident states and their allowed transitions, the frozen records of an
incident, its timeline events and its corrections, the content of an update, and the
renderers: plain text and HTML e-mail, Slack blocks, and the closing report in markdown
and HTML. Every renderer works from one small document model, so the text, HTML and
markdown versions never say different things. Amounts are ``int`` minor units of their own
currency (DESIGN 3a): what people read carries its currency and that currency's decimals,
Brazilian formatting (:func:`money.format_money`); a converted total says so and gives its
rates, and amounts of different currencies are never added. The divergence % comes from
:func:`report.divergence_pct`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import FINANCE_EMAIL
from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.i18n import _, current_language, format_number, ngettext
from airflow_recon_provider.reconciliation.money import (
    DEFAULT_REPORTING_CURRENCY,
    FxRate,
    exponent,
    format_money,
    format_pct,
    rate_text,
)
from airflow_recon_provider.reconciliation.recovery import LedgerAlignment, recovery_criteria
from airflow_recon_provider.reconciliation.report import divergence_pct
from airflow_recon_provider.reconciliation.steps import (
    channel_name,
    delivery_status_name,
    kind_name,
    state_name,
    step_title,
)

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.finance_review import FinanceReview
    from airflow_recon_provider.reconciliation.report import DivergenceSummary
    from airflow_recon_provider.reconciliation.window import Window

#: finance's mailbox in the runbook (Comunicação); a site configures its own
FINANCE_RECIPIENTS_DEFAULT = FINANCE_EMAIL
#: the runbook's cadence: "a cada 30 minutos até normalização"
UPDATE_CADENCE = timedelta(minutes=30)
#: the identifiers the remediation DAG's form accepts (``INCIDENT-472``); at most 18 digits
#: so the number always fits the bigint sequence that generates them
INCIDENT_ID_RE = re.compile(r"INCIDENT-([0-9]{1,18})")
INCIDENT_ID_PATTERN = r"^INCIDENT-\d+$"


# -- errors -------------------------------------------------------------------------------


class IncidentError(ReconError):
    """Base class of the incident record's errors."""


class IncidentIdError(IncidentError):
    """An incident id is not of the form ``INCIDENT-<number>``."""


class IncidentNotFoundError(IncidentError):
    """No incident has this id."""


class IncidentAlreadyOpenError(IncidentError):
    """The PSP already has an incident that is not closed (one open incident per PSP).

    :param open_incident_id: the incident that is open.
    """

    def __init__(self, message: str, *, open_incident_id: str) -> None:
        super().__init__(message)
        self.open_incident_id = open_incident_id


class IncidentExistsError(IncidentError):
    """An incident with this id already exists."""


class IllegalTransitionError(IncidentError):
    """The incident cannot move from its state to the requested one."""


class IncidentStateError(IncidentError):
    """A state name that is not one of the incident states."""


class IncidentInputError(IncidentError):
    """A field of an incident, event or notice is missing or malformed."""


# -- states -------------------------------------------------------------------------------


class IncidentState(StrEnum):
    """``open -> mitigating -> recovered -> closed``."""

    OPEN = "open"
    MITIGATING = "mitigating"
    RECOVERED = "recovered"
    CLOSED = "closed"


#: Allowed transitions. A divergence may clear without mitigation (open -> recovered) and
#: may come back before closure (recovered -> mitigating); closing requires recovery first
#: (runbook: Critérios de Recuperação, then Encerramento); a closed incident is final —
#: a new divergence opens a new incident.
TRANSITIONS: Mapping[IncidentState, frozenset[IncidentState]] = {
    IncidentState.OPEN: frozenset({IncidentState.MITIGATING, IncidentState.RECOVERED}),
    IncidentState.MITIGATING: frozenset({IncidentState.RECOVERED}),
    IncidentState.RECOVERED: frozenset({IncidentState.MITIGATING, IncidentState.CLOSED}),
    IncidentState.CLOSED: frozenset(),
}

#: states in which reconciliation is normalized: finance gets one final update, then silence
NORMALIZED_STATES = frozenset({IncidentState.RECOVERED, IncidentState.CLOSED})


def parse_state(value: str | IncidentState) -> IncidentState:
    try:
        return IncidentState(str(value).strip().lower())
    except ValueError:
        raise IncidentStateError(
            f"incident state {value!r} does not exist; states are {', '.join(s.value for s in IncidentState)}"
        ) from None


def check_transition(incident_id: str, current: IncidentState, target: IncidentState) -> None:
    """Refuse a transition that :data:`TRANSITIONS` does not allow."""
    allowed = TRANSITIONS[current]
    if target in allowed:
        return
    if current is IncidentState.CLOSED:
        why = "a closed incident is final; open a new incident for a new divergence"
    elif target is current:
        why = f"it already is {current.value}"
    elif target is IncidentState.CLOSED:
        why = "an incident is closed only after it recovered (runbook: Critérios de Recuperação)"
    else:
        why = f"from {current.value} it can move to {', '.join(sorted(s.value for s in allowed))}"
    raise IllegalTransitionError(
        f"incident {incident_id} cannot move from {current.value} to {target.value}: {why}"
    )


# -- identifiers ------------------------------------------------------------------------------


def check_incident_id(value: Any) -> str:
    """Return ``value`` when it is ``INCIDENT-<number>``, else :class:`IncidentIdError`."""
    if not isinstance(value, str) or not INCIDENT_ID_RE.fullmatch(value):
        raise IncidentIdError(
            f"incident id {value!r} is malformed; expected INCIDENT-<number>, e.g. INCIDENT-472"
        )
    return value


def format_incident_id(number: int) -> str:
    return f"INCIDENT-{int(number)}"


def incident_number(incident_id: str) -> int:
    match = INCIDENT_ID_RE.fullmatch(check_incident_id(incident_id))
    assert match is not None
    return int(match.group(1))


def check_text(value: Any, *, what: str, max_length: int = 2000, required: bool = True) -> str:
    """A stripped, bounded, single-purpose text field (actor, step, outcome, ticket...)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise IncidentInputError(f"{what} is required (a non-empty text)")
    text = value.strip()
    if len(text) > max_length:
        raise IncidentInputError(f"{what} is longer than {max_length} characters")
    return text


def check_aware(value: Any, *, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise IncidentInputError(f"{what} must be a timezone-aware date-time, got {value!r}")
    return value.astimezone(UTC)


# -- records ----------------------------------------------------------------------------------


def _int(value: Any, *, what: str) -> int:
    # a float never touches an amount; bool is an int subclass and never an amount either
    if isinstance(value, bool) or not isinstance(value, int):
        raise IncidentInputError(f"{what} must be an integer, got {value!r}")
    return value


def _opt_int(value: Any, *, what: str) -> int | None:
    return None if value is None else _int(value, what=what)


def money_text(amount_minor: int | None, currency: str | None, *, locale: str | None = None) -> str:
    """An amount as people read it, with its currency and that currency's decimals
    (``R$ 104.175,21``, ``EUR 9.619,80``, ``JPY 1.234``). Figures recorded before amounts
    carried their currency say so instead of guessing one."""
    if amount_minor is None:
        return "-"
    if not currency:
        return _(
            "%(amount)s in the smallest unit of a currency that was not recorded",
            amount=format_number(int(amount_minor)),
        )
    return format_money(amount_minor, currency, locale=locale)


def _signed(amount_minor: int, currency: str | None) -> str:
    return ("+" if amount_minor > 0 else "") + money_text(amount_minor, currency)


@dataclass(frozen=True)
class CurrencyFigure:
    """One currency's figures at one moment, in that currency's own minor units (DESIGN 3a):
    never added to another currency's."""

    currency: str
    divergent_count: int = 0
    divergent_amount_minor: int = 0
    gateway_count: int | None = None
    gateway_amount_minor: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.currency, str):
            raise IncidentInputError(f"a currency code must be text, got {self.currency!r}")
        _int(self.divergent_count, what=f"divergent count of {self.currency}")
        _int(self.divergent_amount_minor, what=f"divergent amount of {self.currency}")
        _opt_int(self.gateway_count, what=f"gateway count of {self.currency}")
        _opt_int(self.gateway_amount_minor, what=f"gateway amount of {self.currency}")

    @property
    def has_divergence(self) -> bool:
        return bool(self.divergent_count or self.divergent_amount_minor)

    def money(self, amount_minor: int | None) -> str:
        return money_text(amount_minor, self.currency)

    @classmethod
    def from_dict(cls, currency: str, data: Mapping[str, Any]) -> CurrencyFigure:
        return cls(
            currency=currency,
            divergent_count=data.get("divergent_count", 0),
            divergent_amount_minor=data.get("divergent_amount_minor", 0),
            gateway_count=data.get("gateway_count"),
            gateway_amount_minor=data.get("gateway_amount_minor"),
        )

    def as_dict(self) -> dict[str, Any]:
        """The shape of a summary's ``by_currency`` entry (DESIGN 3a), without ``by_kind``."""
        return {
            "exponent": exponent(self.currency),
            "gateway_count": self.gateway_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergent_count": self.divergent_count,
            "divergent_amount_minor": self.divergent_amount_minor,
        }


def _rates_from_dict(data: Mapping[str, Any] | None) -> dict[str, FxRate]:
    rates = {}
    for code, r in (data or {}).items():
        try:
            rates[code] = FxRate.from_dict(code, r)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise IncidentInputError(f"FX rate of {code} is malformed ({exc}): {r!r}") from None
    return rates


@dataclass(frozen=True)
class Figures:
    """Divergence figures at one moment (DESIGN 3a).

    ``divergent_amount_minor`` and ``gateway_amount_minor`` (``None`` when not known) are in
    ``reporting_currency``: each currency's total converted once with the rates in
    ``fx_rates`` (the rates of the decision: recorded on the timeline with it); currencies
    without a rate are left out of them and named in ``unconverted_currencies``. The count
    covers every currency. ``by_currency`` holds each currency's own figures, in its own
    minor units. ``reporting_currency`` is ``None`` for figures recorded before amounts
    carried their currency (then nothing is assumed about them). ``divergence_pct`` is
    derived from the converted integers when the gateway amount is known.
    """

    divergent_amount_minor: int
    divergent_count: int
    gateway_amount_minor: int | None = None
    divergence_pct: float | None = None
    reporting_currency: str | None = DEFAULT_REPORTING_CURRENCY
    by_currency: Mapping[str, CurrencyFigure] = field(default_factory=dict)
    fx_rates: Mapping[str, FxRate] = field(default_factory=dict)
    unconverted_currencies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _int(self.divergent_amount_minor, what="divergent amount")
        _int(self.divergent_count, what="divergent count")
        if self.gateway_amount_minor is not None:
            _int(self.gateway_amount_minor, what="gateway amount")
            if self.divergence_pct is None:
                object.__setattr__(
                    self,
                    "divergence_pct",
                    divergence_pct(self.divergent_amount_minor, self.gateway_amount_minor),
                )
        if isinstance(self.divergence_pct, Decimal):
            object.__setattr__(self, "divergence_pct", float(self.divergence_pct))
        if self.reporting_currency is not None and not isinstance(self.reporting_currency, str):
            raise IncidentInputError(f"reporting currency must be a code, got {self.reporting_currency!r}")
        for code, fig in self.by_currency.items():
            if not isinstance(fig, CurrencyFigure) or fig.currency != code:
                raise IncidentInputError(f"figures of {code} must be a CurrencyFigure of {code}, got {fig!r}")
        for code, rate in self.fx_rates.items():
            if not isinstance(rate, FxRate) or rate.currency != code:
                raise IncidentInputError(f"FX rate of {code} must be an FxRate of {code}, got {rate!r}")
        object.__setattr__(self, "by_currency", dict(self.by_currency))
        object.__setattr__(self, "fx_rates", dict(self.fx_rates))
        object.__setattr__(self, "unconverted_currencies", tuple(sorted(self.unconverted_currencies)))

    # -- building and reading back ------------------------------------------------------------
    @classmethod
    def from_summary(cls, summary: DivergenceSummary) -> Figures:
        """The summary's converted figures, each currency's own figures and the rates used."""
        return cls(
            divergent_amount_minor=summary.divergent_amount_minor,
            divergent_count=summary.divergent_count,
            gateway_amount_minor=summary.gateway_amount_minor,
            reporting_currency=summary.reporting_currency,
            by_currency={
                code: CurrencyFigure(
                    code,
                    divergent_count=fig.divergent_count,
                    divergent_amount_minor=fig.divergent_amount_minor,
                    gateway_count=fig.gateway_count,
                    gateway_amount_minor=fig.gateway_amount_minor,
                )
                for code, fig in summary.by_currency.items()
            },
            fx_rates=dict(summary.used_rates),
            unconverted_currencies=tuple(summary.unconverted_currencies),
        )

    @classmethod
    def coerce(cls, value: Figures | DivergenceSummary | Mapping[str, Any] | None) -> Figures | None:
        if value is None or isinstance(value, Figures):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if hasattr(value, "divergent_amount_minor") and hasattr(value, "by_currency"):
            return cls.from_summary(value)  # type: ignore[arg-type]
        raise IncidentInputError(f"figures must be Figures or a divergence summary, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        """From :meth:`as_dict`, a summary's ``as_dict``, an alert or a recovery event. Without
        a reporting currency (recorded before amounts carried one) it stays unknown."""
        pct = data.get("divergence_pct")
        try:
            by_currency = {
                code: CurrencyFigure.from_dict(code, fig)
                for code, fig in (data.get("by_currency") or {}).items()
            }
            return cls(
                divergent_amount_minor=data["divergent_amount_minor"],
                divergent_count=data["divergent_count"],
                gateway_amount_minor=data.get("gateway_amount_minor"),
                divergence_pct=None if pct is None else float(pct),
                reporting_currency=data.get("reporting_currency", data.get("currency")),
                by_currency=by_currency,
                fx_rates=_rates_from_dict(data.get("fx_rates")),
                unconverted_currencies=tuple(data.get("unconverted_currencies") or ()),
            )
        except KeyError as exc:
            raise IncidentInputError(f"figures lack {exc}: {dict(data)!r}") from None

    def as_dict(self) -> dict[str, Any]:
        """JSON (``recon.notifications.figures``, XCom); the keys of a summary's ``as_dict``."""
        return {
            "divergent_amount_minor": self.divergent_amount_minor,
            "divergent_count": self.divergent_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergence_pct": self.divergence_pct,
            "reporting_currency": self.reporting_currency,
            "by_currency": {c: self.by_currency[c].as_dict() for c in sorted(self.by_currency)},
            "fx_rates": {c: self.fx_rates[c].as_dict() for c in sorted(self.fx_rates)},
            "unconverted_currencies": list(self.unconverted_currencies),
        }

    def currency_figures(self) -> dict[str, Any]:
        """What ``currency_figures`` (jsonb) of ``recon.incidents`` / ``recon.incident_events``
        keeps next to the converted amount, count and % columns."""
        return {
            "currency": self.reporting_currency,
            "gateway_amount_minor": self.gateway_amount_minor,
            "by_currency": {c: self.by_currency[c].as_dict() for c in sorted(self.by_currency)},
            "fx_rates": {c: self.fx_rates[c].as_dict() for c in sorted(self.fx_rates)},
            "unconverted_currencies": list(self.unconverted_currencies),
        }

    @classmethod
    def from_columns(
        cls, amount: Any, count: Any, pct: Any, currency_figures: Mapping[str, Any] | None
    ) -> Figures | None:
        """Figures back from the columns of an incident or timeline event (``None`` when none
        were recorded); without ``currency_figures`` their currency is not known."""
        if amount is None or count is None:
            return None
        stored = dict(currency_figures or {})
        return cls.from_dict(
            {
                **stored,
                "divergent_amount_minor": int(amount),
                "divergent_count": int(count),
                "divergence_pct": None if pct is None else float(pct),
                "currency": stored.get("currency"),
            }
        )

    # -- for people -------------------------------------------------------------------------------
    @property
    def pct_text(self) -> str:
        return format_pct(self.divergence_pct)

    def money(self, amount_minor: int | None) -> str:
        """A converted amount (reporting currency) as people read it."""
        return money_text(amount_minor, self.reporting_currency)

    @property
    def several_currencies(self) -> bool:
        """More than one currency, or one other than the reporting currency: the totals are
        converted and each currency's own figure is shown too."""
        return bool(self.by_currency) and set(self.by_currency) != {self.reporting_currency}

    @property
    def converted(self) -> bool:
        """Some amount of the totals was converted with a rate."""
        return self.several_currencies and bool(self.fx_rates)

    def _divergent_currencies(self, *, unconverted: bool = True) -> list[CurrencyFigure]:
        return [
            self.by_currency[c]
            for c in sorted(self.by_currency)
            if self.by_currency[c].has_divergence and (unconverted or c not in self.unconverted_currencies)
        ]

    def rates_text(self, *, full: bool = True) -> str:
        """``1 EUR = 6,25 BRL (from 2026-12-04 16:00 UTC, BCB PTAX); 1 JPY = ...`` (not ``full``:
        ``1 EUR = 6,25 BRL and 1 JPY = 0,0375 BRL``)."""
        return ("; " if full else _(" and ")).join(
            rate_text(self.fx_rates[c], self.reporting_currency, full=full) for c in sorted(self.fx_rates)
        )

    def unconverted_text(self) -> str:
        """``no FX rate: USD 12,00 not included``: what the converted totals leave out."""
        parts = []
        for code in self.unconverted_currencies:
            fig = self.by_currency.get(code)
            if fig is None:
                parts.append(code)
            elif fig.has_divergence or not fig.gateway_amount_minor:
                parts.append(fig.money(fig.divergent_amount_minor))
            else:
                parts.append(
                    _(
                        "%(amount)s (of %(processed)s processed)",
                        amount=fig.money(0),
                        processed=fig.money(fig.gateway_amount_minor),
                    )
                )
        if not parts:
            return ""
        return _("no FX rate: %(amounts)s not included", amounts=_(" and ").join(parts))

    def headline(self) -> str:
        """The totals: ``1,2345% — R$ 12.345,67 divergent (converted to BRL) in 15
        transaction(s) of R$ 1.000.000,00 processed by the gateway (converted to BRL)``."""
        conv = (
            " " + _("(converted to %(currency)s)", currency=self.reporting_currency) if self.converted else ""
        )
        text = ngettext(
            "%(pct)s — %(amount)s divergent%(conv)s in %(num)s transaction",
            "%(pct)s — %(amount)s divergent%(conv)s in %(num)s transactions",
            self.divergent_count,
            pct=self.pct_text,
            amount=self.money(self.divergent_amount_minor),
            conv=conv,
        )
        if self.gateway_amount_minor is not None:
            text += " " + _(
                "of %(amount)s processed by the gateway%(conv)s",
                amount=self.money(self.gateway_amount_minor),
                conv=conv,
            )
        return text

    def currency_lines(self) -> list[str]:
        """One line per currency, in that currency: ``EUR 9.619,80 divergent in 1
        transaction(s) of EUR 20.000,00 processed``."""
        lines = []
        for code in sorted(self.by_currency):
            fig = self.by_currency[code]
            line = ngettext(
                "%(amount)s divergent in %(num)s transaction",
                "%(amount)s divergent in %(num)s transactions",
                fig.divergent_count,
                amount=fig.money(fig.divergent_amount_minor),
            )
            if fig.gateway_amount_minor is not None:
                line += " " + _("of %(amount)s processed", amount=fig.money(fig.gateway_amount_minor))
            lines.append(line)
        return lines

    def rate_lines(self) -> list[str]:
        """``1 EUR = 6,25 BRL (from 2026-12-04 16:00 UTC, BCB PTAX)``, one per rate used."""
        return [rate_text(self.fx_rates[c], self.reporting_currency) for c in sorted(self.fx_rates)]

    def fields(self, label: str, note: str = "") -> list[tuple[str, str]]:
        """The figures as labelled lines for a message: the totals (``label``), then with
        several currencies each currency's own line, the rates used and what has no rate."""
        pairs = [(label, self.headline() + (f" ({note})" if note else ""))]
        if self.several_currencies:
            pairs.append((_("Per currency"), "\n".join(self.currency_lines())))
            if self.fx_rates:
                pairs.append(
                    (
                        _("FX rates (to %(currency)s)", currency=self.reporting_currency),
                        "\n".join(self.rate_lines()),
                    )
                )
        if self.unconverted_currencies:
            pairs.append((_("Not converted"), self.unconverted_text()))
        return pairs

    def describe(self) -> str:
        """``1,2345% — R$ 12.345,67 divergent in 15 transaction(s) of R$ 1.000.000,00 processed
        by the gateway``; with several currencies, the totals say they are converted and at
        which rates, each currency's own figure follows, and currencies without a rate are
        named."""
        text = self.headline()
        if self.several_currencies:
            per = [
                ngettext(
                    "%(amount)s in %(num)s transaction",
                    "%(amount)s in %(num)s transactions",
                    fig.divergent_count,
                    amount=fig.money(fig.divergent_amount_minor),
                )
                for fig in self._divergent_currencies()
            ]
            if per:
                text += "; " + _("per currency: %(figures)s", figures="; ".join(per))
            if self.fx_rates:
                text += "; " + _("rates: %(rates)s", rates=self.rates_text())
        if self.unconverted_currencies:
            text += f"; {self.unconverted_text()}"
        return text

    def short(self) -> str:
        """``1,2345% (R$ 12.345,67)``; with several currencies each currency's own figure, the
        converted total labelled with its rates, and what has no rate."""
        if not self.several_currencies:
            return f"{self.pct_text} ({self.money(self.divergent_amount_minor)})"
        parts = [
            fig.money(fig.divergent_amount_minor) for fig in self._divergent_currencies(unconverted=False)
        ]
        total = self.money(self.divergent_amount_minor)
        if self.converted:
            total += " " + _("converted at %(rates)s", rates=self.rates_text(full=False))
        text = "; ".join(parts) + " — " + total if parts else total
        if self.unconverted_currencies:
            text += f"; {self.unconverted_text()}"
        return f"{self.pct_text} ({text})"


@dataclass(frozen=True)
class Incident:
    """One row of ``recon.incidents``; ``figures`` are the latest recorded on it."""

    incident_id: str
    psp: str
    state: IncidentState
    opened_by: str
    opened_at: datetime
    updated_at: datetime | None = None
    window: Window | None = None
    reason: str = ""
    psp_ticket: str | None = None
    eta_resumption: datetime | None = None
    figures: Figures | None = None
    recovered_at: datetime | None = None
    closed_at: datetime | None = None
    communication_done_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Open in the sense of the one-open-incident-per-PSP rule: not closed."""
        return self.state is not IncidentState.CLOSED

    @property
    def normalized(self) -> bool:
        return self.state in NORMALIZED_STATES


#: steps this package records itself; other operators record their own runbook steps
class Step:
    OPENED = "incident.opened"
    STATE = "incident.state"
    PSP_TICKET = "incident.psp_ticket"
    ETA = "incident.eta_resumption"
    CLOSING_REPORT = "incident.closing_report"
    UPDATE = "communication.update"
    NORMALIZED = "communication.normalized"
    UPDATE_MISSED = "communication.update_missed"
    CONTAINMENT_NOTICE = "communication.containment_notice"


#: events about telling people, as opposed to runbook steps executed
COMMUNICATION_PREFIX = "communication."


@dataclass(frozen=True)
class IncidentEvent:
    """One row of ``recon.incident_events``: a step executed, its outcome, the divergence
    at that moment, who did it and in which Airflow run."""

    id: int
    incident_id: str
    step: str
    outcome: str
    actor: str
    created_at: datetime
    run_id: str | None = None
    figures: Figures | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_communication(self) -> bool:
        return self.step.startswith(COMMUNICATION_PREFIX)

    @property
    def label(self) -> str:
        """The runbook's heading and step name, never the internal id: ``Ações de Contenção —
        Reconciliação automática pausada`` (:mod:`.steps`), in the language in force."""
        return step_title(self.step, self.details)


@dataclass(frozen=True)
class CorrectionRecord:
    """One row of ``recon.corrections``: a corrected transaction and who approved it.
    ``amount_minor`` is in ``currency`` (``None``: recorded before corrections kept it)."""

    transaction_id: int
    provider_reference: str
    transaction_type: str
    kind: str
    amount_minor: int
    requested_by: str
    approved_by: str
    run_id: str
    applied_at: datetime
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    currency: str | None = None

    @property
    def money(self) -> str:
        return money_text(self.amount_minor, self.currency)


# -- message content ---------------------------------------------------------------------------


class MessageKind(StrEnum):
    UPDATE = "update"
    NORMALIZED = "normalized"
    CONTAINMENT = "containment"
    CLOSING_REPORT = "closing_report"
    #: a PSP's reconciliation paused or resumed (incidents channel)
    CONTROL = "control"
    #: finance reported a difference between the ledger and a PSP's statement (incidents
    #: channel; recorded on the incident timeline, not in recon.notifications)
    FINANCE_REPORT = "finance_report"


@dataclass(frozen=True)
class IncidentUpdate:
    """What one finance update says (runbook, Comunicação).

    :param incident: the incident as it is now (state, ticket, ETA of resumption).
    :param as_of: the moment of the update (the 30-minute slot).
    :param figures: divergence now, over the incident's window; ``None`` if unknown.
    :param steps: runbook steps executed since the last update delivered on this channel.
    :param previous_figures: the figures of that last delivered update.
    :param since: the moment of that last delivered update (``None``: first update).
    :param missed: moments of updates that were due but not delivered; their content is in
        this one (steps since the last *delivered* update).
    :param figures_note: why the figures are not fresh, when they are not.
    :param headline: a first line chosen by the sender (e.g. a callback's "reprocess failed").
    :param cadence: time to the next update; ``None`` when no further update is scheduled.
    :param review: the review with finance scheduled at closure (Encerramento 4): the
        closing e-mail says when, and carries its invitation.
    :param recovery: the runbook's three recovery criteria checked now (the recovery
        trigger's check); ``None`` when not checked, ``recovery_note`` then says why.
    """

    incident: Incident
    as_of: datetime
    figures: Figures | None
    steps: tuple[IncidentEvent, ...] = ()
    previous_figures: Figures | None = None
    since: datetime | None = None
    missed: tuple[datetime, ...] = ()
    figures_note: str = ""
    headline: str = ""
    cadence: timedelta | None = UPDATE_CADENCE
    review: FinanceReview | None = None
    recovery: Mapping[str, Any] | None = None
    recovery_note: str = ""

    @property
    def kind(self) -> MessageKind:
        return MessageKind.NORMALIZED if self.incident.normalized else MessageKind.UPDATE


@dataclass(frozen=True)
class ContainmentNotice:
    """Finance is told that reconciliation of a PSP is frozen, and until when (runbook,
    Ações de Contenção, second bullet).

    :param psp: the PSP whose automatic reconciliation is paused.
    :param paused_at: when it was paused.
    :param paused_by: who paused it.
    :param reason: why.
    :param eta_resumption: estimated resumption; ``None`` when not yet estimated.
    :param incident_id: the incident the pause belongs to, if any.
    :param figures: divergence at the moment of the pause, if known.
    :param psp_ticket: the PSP's ticket, if one is open.
    """

    psp: str
    paused_at: datetime
    paused_by: str
    reason: str
    eta_resumption: datetime | None = None
    incident_id: str | None = None
    figures: Figures | None = None
    psp_ticket: str | None = None


@dataclass(frozen=True)
class RenderedMessage:
    """One message in every form it is sent in."""

    kind: MessageKind
    subject: str
    text: str
    html: str
    slack_text: str
    slack_blocks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ClosingReport:
    """Everything the closing report says (runbook, Encerramento)."""

    incident: Incident
    events: tuple[IncidentEvent, ...]
    corrections: tuple[CorrectionRecord, ...]
    final_figures: Figures | None
    generated_at: datetime
    final_figures_note: str = ""
    #: channel -> status -> number of deliveries (recon.notifications)
    deliveries: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


# -- formatting helpers ------------------------------------------------------------------------


def format_time(moment: datetime | None, *, date: bool = True) -> str:
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC" if date else "%H:%M UTC")


def format_window(window: Window | None) -> str:
    if window is None:
        return _("not recorded")
    return _("%(start)s to %(end)s", start=format_time(window.start), end=format_time(window.end))


def format_duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes:02d}min" if parts else f"{minutes}min")
    return " ".join(parts)


def _change(now: Figures, before: Figures, *, since_opening: bool = False) -> str:
    """How the divergence moved: the converted total's delta (when both are in the same
    reporting currency) and, with several currencies, each currency's delta in its own.
    Compared with the previous update, or (``since_opening``) with the opening."""
    at = _("at the opening") if since_opening else _("at the previous update")
    same = now.reporting_currency is not None and now.reporting_currency == before.reporting_currency
    delta = now.divergent_amount_minor - before.divergent_amount_minor
    per_currency: list[str] = []
    if now.by_currency and before.by_currency and (now.several_currencies or before.several_currencies):
        for code in sorted(set(now.by_currency) | set(before.by_currency)):
            mine = now.by_currency.get(code)
            theirs = before.by_currency.get(code)
            moved = (mine.divergent_amount_minor if mine else 0) - (
                theirs.divergent_amount_minor if theirs else 0
            )
            if moved:
                per_currency.append(_signed(moved, code))
    per_text = _("per currency: %(figures)s", figures="; ".join(per_currency)) if per_currency else ""
    if not same:
        # totals in different (or unrecorded) currencies are not compared
        return _("was %(figures)s %(at)s", figures=before.short(), at=at) + (
            f" ({per_text})" if per_text else ""
        )
    if delta == 0 and not per_currency:
        if since_opening:
            return _("unchanged since the opening (%(figures)s)", figures=before.short())
        return _("unchanged since the previous update (%(figures)s)", figures=before.short())
    signed = _signed(delta, now.reporting_currency)
    if now.converted or before.converted:
        signed = _("%(amount)s converted", amount=signed)
    parts = "; ".join([signed] + ([per_text] if per_text else []))
    if delta > 0:
        return _("up from %(figures)s %(at)s (%(change)s)", figures=before.short(), at=at, change=parts)
    if delta < 0:
        return _("down from %(figures)s %(at)s (%(change)s)", figures=before.short(), at=at, change=parts)
    return _("changed from %(figures)s %(at)s (%(change)s)", figures=before.short(), at=at, change=parts)


# -- a small document model: one content, three renderings ---------------------------------


@dataclass(frozen=True)
class _Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class _Para:
    text: str
    strong: bool = False


@dataclass(frozen=True)
class _Fields:
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _Items:
    items: tuple[str, ...]


_Block = _Heading | _Para | _Fields | _Table | _Items


def _cell_md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, _Para):
            out.append(f"**{block.text}**" if block.strong else block.text)
        elif isinstance(block, _Fields):
            lines = ["| | |", "|---|---|"]
            lines += [f"| {_cell_md(k)} | {_cell_md(v)} |" for k, v in block.pairs]
            out.append("\n".join(lines))
        elif isinstance(block, _Table):
            sep = ["---:" if i in block.right else "---" for i in range(len(block.headers))]
            lines = [
                "| " + " | ".join(_cell_md(h) for h in block.headers) + " |",
                "| " + " | ".join(sep) + " |",
            ]
            lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, _Items):
            out.append("\n".join(f"- {item}" for item in block.items))
    return "\n\n".join(out) + "\n"


#: plain-text tables wider than this become one line per row
_TEXT_WIDTH = 100


def _text_item(headers: Sequence[str], row: Sequence[str]) -> str:
    """``- 11:12 UTC  reprocess: 3 cycles re-run (by alice; divergence then 1.0000% (9.00))``"""
    first = f"- {row[0]}  {row[1]}: {row[2]}"
    rest = [f"{h} {c}" for h, c in zip(headers[3:], row[3:], strict=True) if c and c != "-"]
    return first + (f" ({'; '.join(rest)})" if rest else "")


def _text_row(cells: Sequence[str], widths: Sequence[int], right: frozenset[int] = frozenset()) -> str:
    return "  ".join(
        c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
    ).rstrip()


def _to_text(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            underline = "=" if block.level <= 1 else "-"
            out.append(f"{block.text}\n{underline * min(len(block.text), 78)}")
        elif isinstance(block, _Para):
            out.append(block.text.upper() if block.strong and len(block.text) < 80 else block.text)
        elif isinstance(block, _Fields):
            width = max((len(pair[0]) for pair in block.pairs), default=0)
            # a value of several lines (one per currency) keeps its lines under the value column
            indent = "\n" + " " * (width + 2)
            out.append(
                "\n".join(f"{k + ':':<{width + 1}} {indent.join(v.splitlines())}" for k, v in block.pairs)
            )
        elif isinstance(block, _Table):
            widths = [
                max([len(h)] + [len(row[i]) for row in block.rows]) for i, h in enumerate(block.headers)
            ]
            if sum(widths) + 2 * len(widths) > _TEXT_WIDTH and len(widths) >= 3:
                # too wide for a plain-text mail: one line per row, wrapped by the reader's client
                rows = [_text_item(block.headers, row) for row in block.rows]
            else:
                rows = [_text_row(block.headers, widths, block.right)]
                rows.append(_text_row(["-" * w for w in widths], widths))
                rows += [_text_row(row, widths, block.right) for row in block.rows]
            out.append("\n".join(rows))
        elif isinstance(block, _Items):
            out.append("\n".join(f"- {item}" for item in block.items))
    return "\n\n".join(out) + "\n"


# inline styles: many mail clients drop a <style> element
_BODY = 'style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#1f2328"'
_TABLE = 'style="border-collapse:collapse;margin:8px 0"'
_CELL = "border:1px solid #d0d7de;padding:4px 8px;vertical-align:top;"
_TH = f'style="{_CELL}text-align:left;background:#f6f8fa"'
_TD = f'style="{_CELL}text-align:left"'
_TD_NUM = f'style="{_CELL}text-align:right;white-space:nowrap"'


#: an http(s) address in a text (the punctuation ending a sentence is taken off it)
_URL_RE = re.compile(r"https?://[^\s<>\"']+")


def _linked(text: str) -> str:
    """``text`` escaped for HTML, each http(s) address in it a link (e-mail clients do not
    all turn plain-text addresses into links: the closing report's must be one)."""
    out, last = [], 0
    for match in _URL_RE.finditer(text):
        address = match.group(0).rstrip(".,;:!?)]")
        if address.endswith("://"):
            continue
        url = html.escape(address)
        out.append(html.escape(text[last : match.start()]))
        out.append(f'<a href="{url}">{url}</a>')
        last = match.start() + len(address)
    out.append(html.escape(text[last:]))
    return "".join(out)


def _to_html(blocks: Sequence[_Block], *, title: str) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{"pt-BR" if current_language() == "pt_BR" else "en"}"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title></head><body {_BODY}>",
    ]
    for block in blocks:
        if isinstance(block, _Heading):
            level = max(1, min(block.level, 4))
            out.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, _Para):
            text = _linked(block.text)
            out.append(f"<p><strong>{text}</strong></p>" if block.strong else f"<p>{text}</p>")
        elif isinstance(block, _Fields):
            # a value of several lines (one per currency) keeps its lines
            rows = "".join(
                f"<tr><th {_TH}>{esc(k)}</th><td {_TD}>{'<br>'.join(map(_linked, v.splitlines()))}</td></tr>"
                for k, v in block.pairs
            )
            out.append(f"<table {_TABLE}>{rows}</table>")
        elif isinstance(block, _Table):
            head = "".join(f"<th {_TH}>{esc(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td {_TD_NUM if i in block.right else _TD}>{_linked(c)}</td>" for i, c in enumerate(row)
                )
                + "</tr>"
                for row in block.rows
            )
            out.append(f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, _Items):
            out.append("<ul>" + "".join(f"<li>{_linked(i)}</li>" for i in block.items) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- Slack ------------------------------------------------------------------------------------

#: Slack limits: a section's text is at most 3000 characters, a header's 150, 10 fields
_SLACK_SECTION_MAX = 2900


def _slack_escape(text: str) -> str:
    # the only three characters Slack's mrkdwn requires escaped
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_blocks(title: str, fields: Sequence[tuple[str, str]], sections: Sequence[str], footer: str):
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": False}}
    ]
    for start in range(0, len(fields), 10):
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"[:2000]}
                    for k, v in fields[start : start + 10]
                ],
            }
        )
    for text in sections:
        if len(text) > _SLACK_SECTION_MAX:
            text = text[: _SLACK_SECTION_MAX - 40] + "\n… " + _("(truncated; full text in the e-mail)")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(footer)}]})
    return tuple(blocks)


# -- the update -------------------------------------------------------------------------------


def _step_row(event: IncidentEvent) -> tuple[str, ...]:
    return (
        format_time(event.created_at),
        event.label,
        event.outcome,
        event.actor,
        event.figures.short() if event.figures is not None else "-",
    )


def _step_headers() -> tuple[str, ...]:
    return (_("when"), _("step"), _("outcome"), _("by"), _("divergence then"))


def _update_fields(update: IncidentUpdate) -> list[tuple[str, str]]:
    incident = update.incident
    now = update.figures
    fields = [
        (_("Incident"), incident.incident_id),
        (_("PSP"), incident.psp),
        (_("State"), state_name(incident.state)),
        (_("As of"), format_time(update.as_of)),
        (_("Affected window"), format_window(incident.window)),
    ]
    if now is not None:
        fields += now.fields(_("Divergence now"), update.figures_note)
    else:
        note = f" ({update.figures_note})" if update.figures_note else ""
        fields.append((_("Divergence now"), _("not available") + note))
    if now is not None and update.previous_figures is not None:
        fields.append((_("Change"), _change(now, update.previous_figures)))
    if update.recovery is not None:
        criteria = recovery_criteria(update.recovery)
        fields.append((_("Recovery Criteria"), "\n".join(criterion.text() for criterion in criteria)))
    elif update.recovery_note:
        fields.append((_("Recovery Criteria"), _("not checked (%(why)s)", why=update.recovery_note)))
    if incident.normalized:
        fields.append((_("Normalized at"), format_time(incident.recovered_at or incident.closed_at)))
        fields.append(
            (
                _("Reconciliation"),
                _("normalized; automatic reconciliation resumes (runbook: Closure)"),
            )
        )
    else:
        fields.append(
            (
                _("Estimated resumption"),
                format_time(incident.eta_resumption) if incident.eta_resumption else _("not yet estimated"),
            )
        )
    fields.append((_("PSP ticket"), incident.psp_ticket or _("none opened")))
    return fields


def _update_document(update: IncidentUpdate) -> tuple[str, list[_Block], list[tuple[str, str]], str]:
    incident = update.incident
    normalized = update.kind is MessageKind.NORMALIZED
    title = (
        _(
            "%(incident)s · PSP %(psp)s · reconciliation normalized",
            incident=incident.incident_id,
            psp=incident.psp,
        )
        if normalized
        else _(
            "%(incident)s · PSP %(psp)s · reconciliation incident update",
            incident=incident.incident_id,
            psp=incident.psp,
        )
    )
    fields = _update_fields(update)
    blocks: list[_Block] = [_Heading(title, 1)]
    if update.headline:
        blocks.append(_Para(update.headline, strong=True))
    if normalized:
        blocks.append(
            _Para(
                _(
                    "Reconciliation of %(psp)s is normalized: this is the last update about "
                    "%(incident)s. The closing report and a review with finance follow.",
                    psp=incident.psp,
                    incident=incident.incident_id,
                )
            )
        )
    if update.review is not None:
        # Encerramento 4: the invitation (.ics) is attached to this e-mail
        blocks.append(
            _Para(
                _(
                    "Closure — review with finance scheduled for %(when)s (invitation attached, %(file)s)",
                    when=update.review.when,
                    file=update.review.filename,
                )
                + (
                    "; " + _("closing report: %(link)s", link=update.review.report_link)
                    if update.review.report_link
                    else ""
                )
                + ".",
                strong=True,
            )
        )
    blocks.append(_Fields(tuple(fields)))
    heading = (
        _("Steps executed since the last update (%(when)s)", when=format_time(update.since))
        if update.since is not None
        else _("Steps executed since the incident was opened")
    )
    blocks.append(_Heading(heading))
    if update.steps:
        blocks.append(_Table(_step_headers(), tuple(_step_row(e) for e in update.steps)))
    else:
        blocks.append(_Para(_("No new steps since the last update.")))
    if update.missed:
        blocks.append(
            _Para(
                _(
                    "Updates due at %(moments)s were not delivered; everything since the last "
                    "delivered update is included here.",
                    moments=", ".join(format_time(m) for m in update.missed),
                )
            )
        )
    runbook = _(
        "Runbook: Billing Gateway — Falhas de Reconciliação (%(section)s).", section=_("Communication")
    )
    if normalized or update.cadence is None:
        footer = runbook
    else:
        minutes = int(update.cadence.total_seconds() // 60)
        footer = (
            ngettext(
                "Next update in %(num)s minute, until reconciliation is normalized.",
                "Next update in %(num)s minutes, until reconciliation is normalized.",
                minutes,
            )
            + " "
            + runbook
        )
    blocks.append(_Para(footer))
    return title, blocks, fields, footer


def update_subject(update: IncidentUpdate) -> str:
    incident = update.incident
    if update.figures is None:
        figures = _("figures unavailable")
    else:
        figures = _("%(figures)s divergent", figures=update.figures.short())
    if update.kind is MessageKind.NORMALIZED:
        return _(
            "[%(incident)s] %(psp)s reconciliation normalized - %(figures)s",
            incident=incident.incident_id,
            psp=incident.psp,
            figures=figures,
        )
    return _(
        "[%(incident)s] %(psp)s reconciliation update %(when)s - %(figures)s",
        incident=incident.incident_id,
        psp=incident.psp,
        when=format_time(update.as_of),
        figures=figures,
    )


def render_update(update: IncidentUpdate) -> RenderedMessage:
    """The update as e-mail (text and HTML) and as a Slack message."""
    title, blocks, fields, footer = _update_document(update)
    subject = update_subject(update)
    if update.steps:
        steps = "\n".join(
            f"• {format_time(e.created_at, date=False)} *{_slack_escape(e.label)}* — "
            f"{_slack_escape(e.outcome)} ({_slack_escape(e.actor)})"
            + (f", {e.figures.short()}" if e.figures else "")
            for e in update.steps
        )
    else:
        steps = _("No new steps since the last update.")
    heading = (
        _("Steps since %(when)s", when=format_time(update.since))
        if update.since
        else _("Steps since the incident was opened")
    )
    sections = [(f"*{_slack_escape(update.headline)}*" if update.headline else "")]
    sections.append(f"*{_slack_escape(heading)}*\n{steps}")
    if update.missed:
        sections.append(
            "_"
            + _(
                "Updates due at %(moments)s were not delivered; their content is included here.",
                moments=", ".join(format_time(m) for m in update.missed),
            )
            + "_"
        )
    return RenderedMessage(
        kind=update.kind,
        subject=subject,
        text=_to_text(blocks),
        html=_to_html(blocks, title=subject),
        slack_text=subject,
        slack_blocks=_slack_blocks(title, fields, [s for s in sections if s], footer),
    )


# -- the containment notice ----------------------------------------------------------------------


def containment_subject(notice: ContainmentNotice) -> str:
    prefix = f"[{notice.incident_id}]" if notice.incident_id else "[billing gateway]"
    eta = format_time(notice.eta_resumption) if notice.eta_resumption else _("not yet estimated")
    return _(
        "%(prefix)s %(psp)s reconciliation paused - estimated resumption %(eta)s",
        prefix=prefix,
        psp=notice.psp,
        eta=eta,
    )


def render_containment(notice: ContainmentNotice) -> RenderedMessage:
    """Finance is told of the freeze and of the estimated resumption."""
    title = _("PSP %(psp)s · automatic reconciliation paused", psp=notice.psp)
    eta = format_time(notice.eta_resumption) if notice.eta_resumption else _("not yet estimated")
    fields = [
        (_("PSP"), notice.psp),
        (_("Paused at"), format_time(notice.paused_at)),
        (_("Paused by"), notice.paused_by),
        (_("Reason"), notice.reason),
        (_("Estimated resumption"), eta),
        (_("Incident"), notice.incident_id or _("none")),
    ]
    if notice.figures is not None:
        fields += notice.figures.fields(_("Divergence at the pause"))
    else:
        fields.append((_("Divergence at the pause"), _("not available")))
    fields.append((_("PSP ticket"), notice.psp_ticket or _("none opened")))
    explanation = _(
        "Automatic reconciliation of %(psp)s is frozen while the divergence is contained "
        "(runbook: %(section)s). Reports of this PSP may show the divergence until "
        "reconciliation resumes; corrections are applied only with finance's approval.",
        psp=notice.psp,
        section=_("Containment Actions"),
    )
    footer = _(
        "Runbook: Billing Gateway — Falhas de Reconciliação (%(section)s).", section=_("Containment Actions")
    )
    blocks: list[_Block] = [_Heading(title, 1), _Para(explanation), _Fields(tuple(fields)), _Para(footer)]
    subject = containment_subject(notice)
    return RenderedMessage(
        kind=MessageKind.CONTAINMENT,
        subject=subject,
        text=_to_text(blocks),
        html=_to_html(blocks, title=subject),
        slack_text=subject,
        slack_blocks=_slack_blocks(title, fields, [_slack_escape(explanation)], footer),
    )


# -- the closing report ---------------------------------------------------------------------------

#: at most this many corrected transactions are listed one by one (all are counted)
CORRECTIONS_LISTED = 200


def _opening_event(events: Iterable[IncidentEvent]) -> IncidentEvent | None:
    return next((e for e in events if e.step == Step.OPENED), None)


def _kind_rank(kind: str) -> int:
    from airflow_recon_provider.reconciliation.kinds import DivergenceKind

    try:
        return DivergenceKind(kind).rank
    except ValueError:
        return 1_000


def _kind_blocks(details: Mapping[str, Any]) -> list[_Block]:
    """The per-kind split recorded at the opening: each kind's keys and amount per currency,
    in that currency (``details["by_currency"]``). Openings recorded before that kept only
    ``details["by_kind"]``: shown in the currency recorded with them, if any."""
    rows: list[tuple[str, str, int, int]] = []
    for code, fig in (details.get("by_currency") or {}).items():
        for kind, total in ((fig or {}).get("by_kind") or {}).items():
            count, amount = int(total.get("count", 0)), int(total.get("amount_minor", 0))
            if count or amount:
                rows.append((kind, code, count, amount))
    if rows:
        rows.sort(key=lambda r: (_kind_rank(r[0]), r[1]))
        return [
            _Table(
                (_("divergence kind"), _("currency"), _("keys"), _("divergent amount")),
                tuple(
                    (kind_name(kind), code, format_number(n), money_text(a, code))
                    for kind, code, n, a in rows
                ),
                right=frozenset({2, 3}),
            )
        ]
    by_kind = details.get("by_kind") or {}
    if not by_kind:
        return []
    currency = details.get("reporting_currency")
    return [
        _Table(
            (
                _("divergence kind"),
                _("keys"),
                _("divergent amount (%(currency)s)", currency=currency)
                if currency
                else _("divergent amount"),
            ),
            tuple(
                (
                    kind_name(kind),
                    format_number(int(v.get("count", 0))),
                    money_text(int(v.get("amount_minor", 0)), currency),
                )
                for kind, v in sorted(by_kind.items(), key=lambda kv: _kind_rank(kv[0]))
            ),
            right=frozenset({1, 2}),
        )
    ]


def _totals_text(items: Iterable[CorrectionRecord], *, counts: bool = False) -> str:
    """Each currency's total of ``items``, in that currency: ``R$ 205,00; EUR 12,00``."""
    totals: dict[str, list[int]] = {}
    for c in items:
        total = totals.setdefault(c.currency or "", [0, 0])
        total[0] += 1
        total[1] += c.amount_minor
    return "; ".join(
        ngettext(
            "%(amount)s in %(num)s transaction",
            "%(amount)s in %(num)s transactions",
            n,
            amount=money_text(amount, code or None),
        )
        if counts
        else money_text(amount, code or None)
        for code, (n, amount) in sorted(totals.items())
    )


#: the runbook step whose event carries the PSP ticket CSV (Mitigação 4)
PSP_TICKET_CSV_STEP = "mitigation.psp_ticket"


def psp_ticket_text(incident: Incident, events: Iterable[IncidentEvent]) -> str:
    """The PSP ticket for a report (Comunicação 3): the number recorded on the incident; else,
    when the ticket CSV was sent, that no number was recorded, with the CSV's link; else none."""
    if incident.psp_ticket:
        return incident.psp_ticket
    for event in reversed(list(events)):
        artifact = event.details.get("artifact") if event.step == PSP_TICKET_CSV_STEP else None
        if isinstance(artifact, Mapping) and artifact.get("link"):
            return _(
                "number not recorded (ticket CSV %(name)s: %(link)s); record it on the dashboard's "
                "incident page",
                name=artifact.get("name") or _("for the PSP"),
                link=artifact["link"],
            )
    return _("none")


def _recovery_blocks(events: Sequence[IncidentEvent]) -> list[_Block]:
    """The runbook's three recovery criteria as the recovery step last checked them, each with
    its figures, and the ledger beside the statement and the gateway per status and currency."""
    from airflow_recon_provider.reconciliation.remediation import RemediationStep

    blocks: list[_Block] = [_Heading(_("Recovery Criteria"))]
    checked = [
        e
        for e in events
        if e.step == RemediationStep.RECOVERY and isinstance(e.details.get("recovery"), Mapping)
    ]
    if not checked:
        return [*blocks, _Para(_("No recovery check was recorded."))]
    event = checked[-1]
    check = event.details["recovery"]
    blocks.append(
        _Para(
            _(
                "Checked at %(when)s (%(outcome)s):",
                when=format_time(event.created_at),
                outcome=event.outcome.split(":", 1)[0],
            )
        )
    )
    blocks.append(_Items(tuple(criterion.text() for criterion in recovery_criteria(check))))
    try:
        alignment = LedgerAlignment.from_dict(check["ledger"])
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return blocks
    if alignment.lines:
        blocks.append(
            _Table(
                (
                    _("status"),
                    _("currency"),
                    _("ledger"),
                    _("PSP statement"),
                    _("gateway"),
                    _("ledger vs statement"),
                ),
                tuple(
                    (
                        line.status,
                        line.currency or _("(none)"),
                        *(line.figure(side) for side in ("ledger", "statement", "gateway")),
                        _("aligned") if line.aligned else _("differs"),
                    )
                    for line in alignment.lines
                ),
                right=frozenset({2, 3, 4}),
            )
        )
    return blocks


def _closing_document(report: ClosingReport) -> tuple[str, list[_Block]]:
    incident = report.incident
    events = list(report.events)
    title = _(
        "%(incident)s — billing gateway reconciliation, PSP %(psp)s",
        incident=incident.incident_id,
        psp=incident.psp,
    )
    blocks: list[_Block] = [_Heading(title, 1)]
    if incident.state is not IncidentState.CLOSED:
        blocks.append(
            _Para(_("Draft: the incident is still %(state)s.", state=state_name(incident.state)), strong=True)
        )
    end = incident.closed_at or report.generated_at
    summary = [
        (_("PSP"), incident.psp),
        (_("State"), state_name(incident.state)),
        (_("Affected window"), format_window(incident.window)),
        (_("Opened"), _("%(when)s by %(who)s", when=format_time(incident.opened_at), who=incident.opened_by)),
        (_("Reason"), incident.reason or "-"),
        (_("Recovered"), format_time(incident.recovered_at)),
        (_("Closed"), format_time(incident.closed_at)),
        (_("Duration"), format_duration(end - incident.opened_at)),
        (_("PSP ticket"), psp_ticket_text(incident, events)),
        (_("Report generated"), format_time(report.generated_at)),
    ]
    blocks.append(_Fields(tuple(summary)))

    # what diverged, and when
    blocks.append(_Heading(_("What diverged")))
    opened = _opening_event(events)
    with_figures = [e for e in events if e.figures is not None]
    first = opened if opened is not None and opened.figures is not None else next(iter(with_figures), None)
    if first is not None and first.figures is not None:
        blocks.append(
            _Para(
                _(
                    "At %(when)s: %(figures)s.",
                    when=format_time(first.created_at),
                    figures=first.figures.describe(),
                )
            )
        )
    else:
        blocks.append(_Para(_("No divergence figures were recorded when the incident was opened.")))
    if with_figures:
        # amounts are compared in one reporting currency only (the opening's)
        currency = first.figures.reporting_currency if first is not None and first.figures else None
        measured = [(e, e.figures) for e in with_figures if e.figures is not None]
        comparable = [(e, f) for e, f in measured if f.reporting_currency == currency] or measured
        peak, at_peak = max(comparable, key=lambda ef: (ef[1].divergent_amount_minor, -ef[0].id))
        blocks.append(
            _Para(
                _(
                    "Peak at %(when)s: %(figures)s.",
                    when=format_time(peak.created_at),
                    figures=at_peak.describe(),
                )
            )
        )
    blocks.extend(_kind_blocks(opened.details if opened is not None else {}))

    # what was done
    blocks.append(_Heading(_("What was done")))
    steps = [e for e in events if not e.is_communication]
    if steps:
        blocks.append(
            _Table(
                (_("when"), _("step"), _("outcome"), _("by"), _("run"), _("divergence then")),
                tuple(
                    (
                        format_time(e.created_at),
                        e.label,
                        e.outcome,
                        e.actor,
                        e.run_id or "-",
                        e.figures.short() if e.figures else "-",
                    )
                    for e in steps
                ),
            )
        )
    else:
        blocks.append(_Para(_("No step was recorded.")))

    # who approved what
    blocks.append(_Heading(_("Who approved what")))
    if report.corrections:
        groups: dict[tuple[str, str, str], list[CorrectionRecord]] = {}
        for c in report.corrections:
            groups.setdefault((c.requested_by, c.approved_by, c.run_id), []).append(c)
        blocks.append(
            _Table(
                (
                    _("requested by"),
                    _("approved by"),
                    _("run"),
                    _("transactions"),
                    _("amount per currency"),
                    _("kinds"),
                ),
                tuple(
                    (
                        req,
                        appr,
                        run,
                        format_number(len(items)),
                        _totals_text(items),
                        ", ".join(sorted({kind_name(c.kind) for c in items})),
                    )
                    for (req, appr, run), items in groups.items()
                ),
                right=frozenset({3, 4}),
            )
        )
        blocks.append(
            _Para(
                ngettext(
                    "Corrected in total: %(num)s transaction; per currency (never added across "
                    "currencies): %(totals)s.",
                    "Corrected in total: %(num)s transactions; per currency (never added across "
                    "currencies): %(totals)s.",
                    len(report.corrections),
                    totals=_totals_text(report.corrections, counts=True),
                )
            )
        )
        listed = report.corrections[:CORRECTIONS_LISTED]
        blocks.append(
            _Table(
                (
                    _("applied"),
                    _("transaction"),
                    _("reference"),
                    _("type"),
                    _("kind"),
                    _("amount"),
                    _("approved by"),
                ),
                tuple(
                    (
                        format_time(c.applied_at),
                        str(c.transaction_id),
                        c.provider_reference,
                        c.transaction_type,
                        kind_name(c.kind),
                        c.money,
                        c.approved_by,
                    )
                    for c in listed
                ),
                right=frozenset({1, 5}),
            )
        )
        if len(report.corrections) > len(listed):
            blocks.append(
                _Para(
                    ngettext(
                        "… and %(num)s more corrected transaction (recon.corrections).",
                        "… and %(num)s more corrected transactions (recon.corrections).",
                        len(report.corrections) - len(listed),
                    )
                )
            )
    else:
        blocks.append(_Para(_("No transaction was corrected.")))
    approvals = [e for e in steps if e.details.get("approved_by")]
    if approvals:
        blocks.append(
            _Items(
                tuple(
                    _(
                        "%(when)s: %(step)s approved by %(approver)s",
                        when=format_time(e.created_at),
                        step=e.label,
                        approver=e.details["approved_by"],
                    )
                    + (
                        " " + _("(requested by %(requester)s)", requester=e.details["requested_by"])
                        if e.details.get("requested_by")
                        else ""
                    )
                    for e in approvals
                )
            )
        )

    # communication
    blocks.append(_Heading(_("Communication with finance")))
    sent = {ch: dict(stats) for ch, stats in report.deliveries.items()}
    lines = [
        f"{channel_name(channel)}: "
        + ", ".join(
            f"{format_number(n)} {delivery_status_name(status)}" for status, n in sorted(stats.items())
        )
        for channel, stats in sorted(sent.items())
    ]
    missed = [e for e in events if e.step == Step.UPDATE_MISSED]
    lines += [f"{format_time(e.created_at)}: {e.outcome}" for e in missed]
    blocks.append(_Items(tuple(lines)) if lines else _Para(_("No message was sent.")))

    blocks.extend(_recovery_blocks(events))

    # final numbers
    blocks.append(_Heading(_("Final numbers")))
    if report.final_figures is not None:
        note = f" ({report.final_figures_note})" if report.final_figures_note else ""
        blocks.append(_Para(f"{report.final_figures.describe()}{note}."))
        if first is not None and first.figures is not None:
            blocks.append(
                _Para(
                    _(
                        "Compared with the opening: %(change)s.",
                        change=_change(report.final_figures, first.figures, since_opening=True),
                    )
                )
            )
    else:
        blocks.append(_Para(_("Final figures are not available.")))

    blocks.append(_Heading(_("Lessons learned")))
    blocks.append(
        _Items(
            (
                _("Root cause: (to be completed at the review)"),
                _("Definitive corrections confirmed with finance: review to be scheduled (runbook: Closure)"),
                _("Follow-up actions: (owner, due date)"),
            )
        )
    )
    return title, blocks


def render_closing_report_markdown(report: ClosingReport) -> str:
    blocks = _closing_document(report)[1]
    return _to_markdown(blocks)


def render_closing_report_html(report: ClosingReport) -> str:
    title, blocks = _closing_document(report)
    return _to_html(blocks, title=title)


def missed_slots(
    previous: datetime | None, current: datetime, *, cadence: timedelta = UPDATE_CADENCE
) -> list[datetime]:
    """The update slots (multiples of ``cadence`` since the epoch) strictly between the
    previous update (or the opening) and ``current``: updates that were due and never tried."""
    if previous is None or current <= previous:
        return []
    step = int(cadence.total_seconds())
    if step <= 0:
        return []
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = int((previous - epoch).total_seconds()) // step + 1
    slots = []
    n = first
    while True:
        moment = epoch + timedelta(seconds=n * step)
        if moment >= current:
            break
        slots.append(moment)
        n += 1
        if len(slots) >= 48:  # a day of missed slots is enough to tell; the rest is noise
            break
    return slots


__all__ = [
    "COMMUNICATION_PREFIX",
    "FINANCE_RECIPIENTS_DEFAULT",
    "INCIDENT_ID_PATTERN",
    "NORMALIZED_STATES",
    "TRANSITIONS",
    "UPDATE_CADENCE",
    "ClosingReport",
    "ContainmentNotice",
    "CorrectionRecord",
    "CurrencyFigure",
    "Figures",
    "IllegalTransitionError",
    "Incident",
    "IncidentAlreadyOpenError",
    "IncidentError",
    "IncidentEvent",
    "IncidentExistsError",
    "IncidentIdError",
    "IncidentInputError",
    "IncidentNotFoundError",
    "IncidentState",
    "IncidentStateError",
    "IncidentUpdate",
    "MessageKind",
    "RenderedMessage",
    "Step",
    "check_incident_id",
    "check_transition",
    "containment_subject",
    "format_incident_id",
    "format_time",
    "incident_number",
    "missed_slots",
    "money_text",
    "parse_state",
    "render_closing_report_html",
    "render_closing_report_markdown",
    "render_containment",
    "render_update",
    "update_subject",
]
