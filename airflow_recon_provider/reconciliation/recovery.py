"""Critérios de Recuperação: the three criteria of a recovered window and their figures (pure:
no Airflow, no I/O).

Runbook *Billing Gateway — Falhas de Reconciliação*, Critérios de Recuperação:

1. "Divergência < R$ 500 e < 10 transações após reprocessamento" — the gateway against the
   PSP's statement (:meth:`Thresholds.amounts_recovered`);
2. "Jobs Airflow executando com status ``success`` em dois ciclos consecutivos"
   (:meth:`Thresholds.cycles_recovered`);
3. "Relatório financeiro alinhado com extratos PSP" — the payments ledger
   (``ledger.transactions``) against the PSP's statement, per status and currency, the
   gateway's figures beside them (:func:`alignment_lines`, :class:`LedgerAlignment`).

The ledger lives in another database than the gateway and the statements, so the two are
compared by their aggregates (each computed by PostgreSQL, one query per database), never
row by row. Statuses are compared in the gateway's vocabulary: a statement status through
the PSP's ``status_mapping``, a ledger status through its ``ledger_status_mapping`` (to the
statement's vocabulary) and then the same ``status_mapping``.

How far the ledger is from the statement, per currency (DESIGN 3a: never across
currencies): the fewest ledger rows it would have to add, remove or move to another status
to show the statement's counts, ``max(rows it has too many, rows it lacks)`` over the
statuses, and likewise the least amount. Aligned: fewer rows than
``recovered_ledger_count`` and, converted to the reporting currency with the window's
rates, less than ``recovered_ledger_amount_minor`` (by default the divergence's own R$ 500
and 10 transactions; ``1`` and ``1`` ask for exact agreement). A currency that differs and
has no FX rate is never taken as small: not aligned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_recon_provider.reconciliation.i18n import _, format_number, ngettext
from airflow_recon_provider.reconciliation.money import Converter, FxRate, format_money, rate_text

#: the currency of ledger rows that record none (a NULL currency column)
NO_CURRENCY = ""
#: differing lines named one by one in the timeline's text (all are in the details)
LINES_IN_TEXT = 4

_SIDES = ("ledger", "statement", "gateway")


def _money(amount_minor: int, currency: str) -> str:
    if not currency:
        return _(
            "%(amount)s in the smallest unit of a currency that was not recorded",
            amount=format_number(int(amount_minor)),
        )
    return format_money(amount_minor, currency)


def _int(value: Any) -> int:
    # aggregates come back as int (bigint); a float never touches an amount
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class AlignmentLine:
    """One status and currency: the ledger's, the statement's and the gateway's count and
    amount (minor units of ``currency``)."""

    status: str
    currency: str
    ledger_count: int = 0
    ledger_amount_minor: int = 0
    statement_count: int = 0
    statement_amount_minor: int = 0
    gateway_count: int = 0
    gateway_amount_minor: int = 0

    @property
    def aligned(self) -> bool:
        """The ledger shows the statement's count and amount."""
        return (self.ledger_count, self.ledger_amount_minor) == (
            self.statement_count,
            self.statement_amount_minor,
        )

    def figure(self, side: str) -> str:
        """``112 / R$ 16.000,00``: one side's count and amount."""
        count, amount = getattr(self, f"{side}_count"), getattr(self, f"{side}_amount_minor")
        return f"{format_number(count)} / {_money(amount, self.currency)}"

    def text(self) -> str:
        """``captured BRL: ledger 100 / R$ 10.000,00, statement 112 / ..., gateway 112 / ...``"""
        currency = self.currency or _("(no currency)")
        label = f"{self.status} {currency}"
        names = {"ledger": _("ledger"), "statement": _("PSP statement"), "gateway": _("gateway")}
        return f"{label}: " + ", ".join(f"{names[side]} {self.figure(side)}" for side in _SIDES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "currency": self.currency,
            **{
                f"{side}_{what}": getattr(self, f"{side}_{what}")
                for side in _SIDES
                for what in ("count", "amount_minor")
            },
            "aligned": self.aligned,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlignmentLine:
        return cls(
            status=str(data["status"]),
            currency=str(data.get("currency") or NO_CURRENCY),
            **{
                f"{side}_{what}": _int(data.get(f"{side}_{what}", 0))
                for side in _SIDES
                for what in ("count", "amount_minor")
            },
        )


@dataclass(frozen=True)
class CurrencyGap:
    """What the ledger would have to change, in one currency, to show the statement's figures:
    ``count`` rows to add, remove or move to another status; ``amount_minor`` in that
    currency's own minor units."""

    currency: str
    count: int
    amount_minor: int


def _gaps(lines: Iterable[AlignmentLine]) -> dict[str, CurrencyGap]:
    over: dict[str, list[int]] = {}
    under: dict[str, list[int]] = {}
    for line in lines:
        for bucket, sign in ((over, 1), (under, -1)):
            acc = bucket.setdefault(line.currency, [0, 0])
            acc[0] += max(0, sign * (line.ledger_count - line.statement_count))
            acc[1] += max(0, sign * (line.ledger_amount_minor - line.statement_amount_minor))
    gaps = {}
    for code in sorted(over):
        count = max(over[code][0], under[code][0])
        amount = max(over[code][1], under[code][1])
        if count or amount:
            gaps[code] = CurrencyGap(code, count, amount)
    return gaps


def alignment_lines(
    sides: Iterable[tuple[str, str, str | None, int, int]],
    ledger: Iterable[tuple[str, str | None, int, int]],
    *,
    status_mapping: Mapping[str, str] | None = None,
    ledger_status_mapping: Mapping[str, str] | None = None,
) -> tuple[AlignmentLine, ...]:
    """The ledger, the statement and the gateway side by side per status (the gateway's
    vocabulary) and currency, ordered by status then currency.

    :param sides: ``queries.recovery_sides_query`` rows: ``(side, status, currency, count,
        amount_minor)`` with ``side`` ``gateway`` or ``statement``.
    :param ledger: ``queries.ledger_totals_query`` rows: ``(status, currency, count,
        amount_minor)``.
    :param status_mapping: the PSP's statement -> gateway status mapping.
    :param ledger_status_mapping: the PSP's ledger -> statement status mapping.
    """
    to_gateway = dict(status_mapping or {})
    to_statement = dict(ledger_status_mapping or {})
    figures: dict[tuple[str, str], dict[str, int]] = {}

    def add(side: str, status: str, currency: str | None, count: int, amount: int) -> None:
        key = (status, (currency or NO_CURRENCY).upper())
        line = figures.setdefault(key, {})
        # statuses that map to the same one add up, within one currency
        line[f"{side}_count"] = line.get(f"{side}_count", 0) + _int(count)
        line[f"{side}_amount_minor"] = line.get(f"{side}_amount_minor", 0) + _int(amount)

    for side, status, currency, count, amount in sides:
        status = str(status)
        if side == "statement":
            status = to_gateway.get(status, status)
        add(side, status, currency, count, amount)
    for status, currency, count, amount in ledger:
        as_statement = to_statement.get(str(status), str(status))
        add("ledger", to_gateway.get(as_statement, as_statement), currency, count, amount)
    return tuple(
        AlignmentLine(status=status, currency=currency, **values)
        for (status, currency), values in sorted(figures.items())
    )


def gap_currencies(lines: Iterable[AlignmentLine]) -> set[str]:
    """The currencies in which the ledger differs from the statement (their amounts need an
    FX rate to be weighed against the threshold)."""
    return set(_gaps(lines))


@dataclass(frozen=True)
class LedgerAlignment:
    """The third recovery criterion: the ledger against the PSP's statement for one window.

    :param lines: :func:`alignment_lines`.
    :param reporting_currency: the thresholds' currency.
    :param max_count: aligned only with fewer differing rows than this.
    :param max_amount_minor: ... and less than this converted differing amount.
    :param fx_rates: the window's rate of each currency the ledger differs in (others are
        dropped); a differing currency without one leaves the ledger not aligned.
    """

    lines: tuple[AlignmentLine, ...]
    reporting_currency: str
    max_count: int
    max_amount_minor: int
    fx_rates: Mapping[str, FxRate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        gaps = _gaps(self.lines)
        object.__setattr__(self, "fx_rates", {c: r for c, r in self.fx_rates.items() if c in gaps})

    @property
    def gaps(self) -> dict[str, CurrencyGap]:
        """Per currency in which the ledger differs: what it would have to change."""
        return _gaps(self.lines)

    @property
    def differing_count(self) -> int:
        return sum(gap.count for gap in self.gaps.values())

    @property
    def _converter(self) -> Converter:
        return Converter(self.reporting_currency, self.fx_rates)

    @property
    def differing_amount_minor(self) -> int:
        """The differing amounts, each currency's converted once to the reporting currency;
        currencies without a rate are left out (:attr:`unconverted_currencies`)."""
        return self._converter.total((gap.currency, gap.amount_minor) for gap in self.gaps.values())

    @property
    def unconverted_currencies(self) -> tuple[str, ...]:
        converter = self._converter
        return tuple(
            code for code, gap in self.gaps.items() if gap.amount_minor and not converter.can_convert(code)
        )

    @property
    def met(self) -> bool:
        return not self.unconverted_currencies and (
            self.differing_count < self.max_count and self.differing_amount_minor < self.max_amount_minor
        )

    # -- for people -------------------------------------------------------------------------
    def limit_text(self) -> str:
        amount = _money(self.max_amount_minor, self.reporting_currency)
        return ngettext(
            "limit: fewer than %(num)s row and %(amount)s",
            "limit: fewer than %(num)s rows and %(amount)s",
            self.max_count,
            amount=amount,
        )

    def describe(self, *, lines: int | None = LINES_IN_TEXT) -> str:
        """What the ledger shows against the statement: agreement, or the rows and amount it
        differs by (per currency, in its own currency; converted with the rates used), the
        differing lines beside the statement's and the gateway's, and the limit."""
        gaps = self.gaps
        if not gaps:
            return ngettext(
                "the ledger agrees with the PSP statements in every status and currency (%(num)s line)",
                "the ledger agrees with the PSP statements in every status and currency (%(num)s lines)",
                len(self.lines),
            )
        converted = self.differing_amount_minor
        several = set(gaps) != {self.reporting_currency}
        amount = _money(converted, self.reporting_currency)
        if several:
            amount = _("%(amount)s converted", amount=amount)
        text = ngettext(
            "the ledger differs from the PSP statements by %(num)s row and %(amount)s",
            "the ledger differs from the PSP statements by %(num)s rows and %(amount)s",
            self.differing_count,
            amount=amount,
        )
        if several:
            text += " (" + "; ".join(
                ngettext(
                    "%(currency)s: %(num)s row, %(amount)s",
                    "%(currency)s: %(num)s rows, %(amount)s",
                    gap.count,
                    currency=code or _("no currency"),
                    amount=_money(gap.amount_minor, code),
                )
                for code, gap in gaps.items()
            )
            rates = [
                rate_text(self.fx_rates[c], self.reporting_currency, full=False)
                for c in sorted(self.fx_rates)
            ]
            text += (f"; {_(' and ').join(rates)}" if rates else "") + ")"
        for code in self.unconverted_currencies:
            # never taken as small: the criterion is not met
            text += "; " + (
                _("no FX rate for %(currency)s", currency=code)
                if code
                else _("ledger rows without a currency")
            )
        differing = [line for line in self.lines if not line.aligned]
        shown = differing if lines is None else differing[:lines]
        text += " — " + "; ".join(line.text() for line in shown)
        if len(differing) > len(shown):
            text += "; " + ngettext(
                "… and %(num)s more line", "… and %(num)s more lines", len(differing) - len(shown)
            )
        return f"{text} ({self.limit_text()})"

    # -- JSON (XCom, trigger events, timeline details) --------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {
            "met": self.met,
            "reporting_currency": self.reporting_currency,
            "differing_count": self.differing_count,
            "differing_amount_minor": self.differing_amount_minor,
            "max_count": self.max_count,
            "max_amount_minor": self.max_amount_minor,
            "by_currency": {
                code: {"differing_count": gap.count, "differing_amount_minor": gap.amount_minor}
                for code, gap in self.gaps.items()
            },
            "fx_rates": {c: self.fx_rates[c].as_dict() for c in sorted(self.fx_rates)},
            "unconverted_currencies": list(self.unconverted_currencies),
            "lines": [line.as_dict() for line in self.lines],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerAlignment:
        """Back from :meth:`as_dict` (``KeyError``, ``TypeError``, ``ValueError`` when malformed)."""
        return cls(
            lines=tuple(AlignmentLine.from_dict(line) for line in data.get("lines") or ()),
            reporting_currency=str(data["reporting_currency"]),
            max_count=_int(data["max_count"]),
            max_amount_minor=_int(data["max_amount_minor"]),
            fx_rates={code: FxRate.from_dict(code, r) for code, r in (data.get("fx_rates") or {}).items()},
        )


# -- the three criteria, for people ---------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One recovery criterion of a check: whether it holds (``None``: not checked, as in a
    check recorded before the ledger criterion existed) and its figures."""

    number: int
    title: str
    met: bool | None
    figures: str

    @property
    def state(self) -> str:
        return _("met") if self.met else _("NOT met") if self.met is False else _("not checked")

    def text(self) -> str:
        return f"{self.number}. {self.title}: {self.state} — {self.figures}"


def recovery_criteria(result: Mapping[str, Any]) -> tuple[Criterion, Criterion, Criterion]:
    """The runbook's three criteria with their figures, from a recovery check
    (``RecoveryTrigger.check``: the sensor's XCom, the trigger's event, a timeline event's
    details)."""
    from airflow_recon_provider.reconciliation.figures import Figures
    from airflow_recon_provider.reconciliation.incidents import IncidentInputError

    limits = result.get("thresholds") or {}
    reporting = result.get("reporting_currency")
    if "recovered_amount_minor" in limits and reporting:
        title = _(
            "Divergence below %(amount)s and %(count)s transactions",
            amount=_money(limits["recovered_amount_minor"], reporting),
            count=limits.get("recovered_count"),
        )
    else:
        title = _("Divergence below the recovery thresholds")
    try:
        amount = Figures.from_dict(result).short()
    except IncidentInputError:
        amount = _money(int(result.get("divergent_amount_minor") or 0), "")
    keys = result.get("divergent_count")
    amounts = Criterion(
        1,
        title,
        _flag(result.get("amounts_recovered")),
        ngettext(
            "%(num)s divergent key, %(amount)s",
            "%(num)s divergent keys, %(amount)s",
            keys if isinstance(keys, int) else 0,
            num=str(keys),
            amount=amount,
        ),
    )
    states = list(result.get("latest_cycle_states") or [])
    needed = result.get("successful_runs_needed")
    cycles_met = result.get("cycles_recovered")
    if cycles_met is None and states:  # a check recorded before the criteria were kept apart
        cycles_met = len(states) >= (needed or 2) and all(s == "success" for s in states)
    cycles = Criterion(
        2,
        ngettext(
            "The %(num)s latest reconciliation cycle succeeded",
            "The %(num)s latest reconciliation cycles succeeded",
            needed,
        )
        if isinstance(needed, int)
        else _("The latest reconciliation cycles succeeded"),
        _flag(cycles_met),
        _("latest cycles: %(states)s", states=", ".join(states) if states else _("none recorded")),
    )
    ledger_data = result.get("ledger")
    title = _("Ledger aligned with the PSP statements")
    try:
        alignment = LedgerAlignment.from_dict(ledger_data) if isinstance(ledger_data, Mapping) else None
    except (KeyError, TypeError, ValueError, ArithmeticError):
        alignment = None
    if alignment is not None:
        ledger = Criterion(3, title, alignment.met, alignment.describe())
    else:
        ledger = Criterion(3, title, None, _("not part of this check"))
    return amounts, cycles, ledger


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


__all__ = [
    "LINES_IN_TEXT",
    "NO_CURRENCY",
    "AlignmentLine",
    "Criterion",
    "CurrencyGap",
    "LedgerAlignment",
    "alignment_lines",
    "gap_currencies",
    "recovery_criteria",
]
