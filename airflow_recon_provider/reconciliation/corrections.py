"""Data correction with finance approval: the policy, the dry run, the approval check.

Runbook *Billing Gateway — Falhas de Reconciliação*, Mitigação 2 "Correção de Dados":
"Ajustar registros inconsistentes atualizando diretamente o banco (após aprovação do
financeiro)" —

    UPDATE payment_transactions SET status = '<status>', processed_at = NOW()
    WHERE id = <transaction_id>;

— and "Registrar a correção no incidente e em ``payment_reconciliation_logs.notes`` para
rastreabilidade".

Pure domain (no Airflow, no I/O beyond a text stream handed in). It decides:

- which divergent keys are corrected and to which status (:class:`CorrectionPolicy`;
  default: a ``status_mismatch`` takes the PSP's status, mapped to the gateway's
  vocabulary; everything else needs a PSP ticket or a human);
- what one correction is (:class:`ProposedCorrection`) and the key of a correction set
  (:class:`CorrectionKeyBuilder`: same scope and same proposals, same key, so a retry
  re-uses it);
- the dry-run summary, its CSV artifact and the text finance reads before approving;
- whether an answer may approve (:func:`check_approver`: never the requester);
- what applying does to each row (:func:`classify_for_apply`): a row still in its
  "before" state is corrected, anything else is reported, never overwritten;
- the line each correction appends to ``payment_reconciliation_logs.notes``.

Amounts are ``int`` minor units of their own currency (DESIGN 3a): totals are kept per
currency and never added across currencies; a figure in the reporting currency is each
currency's total converted once with the rate of ``recon.fx_rates`` in force at the window's
end, labelled as converted, and a currency without a rate is named, never taken as zero.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import IO, Any

from airflow_recon_provider.reconciliation.errors import (
    ApproverNotAssignedError,
    CorrectionPolicyError,
    ReconError,
    RowCapExceededError,
    SelfApprovalError,
)
from airflow_recon_provider.reconciliation.i18n import _, ngettext, pgettext, use_language
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.money import (
    DEFAULT_REPORTING_CURRENCY,
    Converter,
    FxRate,
    exponent,
    format_money,
    format_rate,
    rate_text,
)
from airflow_recon_provider.reconciliation.report import DivergenceRow, KindTotal
from airflow_recon_provider.reconciliation.spreadsheet import safe_cell
from airflow_recon_provider.reconciliation.steps import DATA_CORRECTION, MITIGATION, kind_name, section_title
from airflow_recon_provider.reconciliation.window import Window

#: a rule's target meaning "the PSP's status, mapped to the gateway's vocabulary"
PSP_STATUS = "psp_status"
#: default number of transactions per run that one approval may correct
DEFAULT_ROW_CAP = 1000
#: default number of proposals shown to the approver
DEFAULT_SAMPLE_SIZE = 20
#: default time finance has to approve a correction before the request expires
DEFAULT_APPROVAL_TIMEOUT = timedelta(hours=8)
#: the step name of the incident events written by a correction
INCIDENT_STEP = "mitigation.data_correction"

#: Kinds a status update can never fix. Which of two copies is the right one, or a row the
#: gateway does not have at all, is a person's decision (and a PSP ticket's).
NOT_CORRECTABLE: Mapping[DivergenceKind, str] = {
    DivergenceKind.DUPLICATE_IN_GATEWAY: (
        "duplicate in the gateway: never auto-corrected, choose the copy to keep"
    ),
    DivergenceKind.DUPLICATE_IN_STATEMENT: "duplicate in the PSP statement: needs PSP ticket",
    DivergenceKind.MISSING_IN_GATEWAY: (
        "missing in the gateway: needs PSP ticket / manual (no row to correct)"
    ),
}
NEEDS_TICKET = "needs PSP ticket / manual"

_STATUS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def currency_code(value: Any) -> str:
    """A row's currency as the key of per-currency totals: upper case, ``""`` when the row has
    none (shown as ``?``; never merged into another currency)."""
    return str(value or "").strip().upper()


def _check_status(value: Any, *, what: str) -> str:
    if not isinstance(value, str) or not _STATUS.fullmatch(value):
        raise CorrectionPolicyError(
            f"{what} {value!r} is not a plain status (letters, digits, '_', '.', ':', '-'; at most 64)"
        )
    return value


# -- policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrectionRule:
    """How the gateway row of one divergence kind is corrected.

    :param kind: the divergence kind.
    :param status: the status to set; ``None`` means the PSP's status of the key, mapped
        to the gateway's vocabulary by the PSP's ``status_mapping``.
    """

    kind: DivergenceKind
    status: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DivergenceKind(self.kind))
        if self.kind in NOT_CORRECTABLE:
            raise CorrectionPolicyError(
                f"divergence kind {self.kind.value} cannot have a correction rule: "
                f"{NOT_CORRECTABLE[self.kind]}"
            )
        if self.status is None and self.kind is DivergenceKind.MISSING_IN_STATEMENT:
            raise CorrectionPolicyError(
                "missing_in_statement has no PSP status to take: give a fixed status, e.g. "
                '{"missing_in_statement": {"status": "failed"}}'
            )
        if self.status is not None:
            _check_status(self.status, what=f"status of the {self.kind.value} rule")

    @property
    def target_label(self) -> str:
        return "the PSP's status (mapped)" if self.status is None else f"status {self.status!r}"

    def as_json(self) -> str | dict[str, str]:
        return PSP_STATUS if self.status is None else {"status": self.status}


@dataclass(frozen=True)
class CorrectionPolicy:
    """Which divergence kinds are corrected automatically, and to which status.

    The documented default corrects ``status_mismatch`` only: the gateway row takes the
    PSP's status, mapped to the gateway's vocabulary. Every other kind is listed in the
    dry run as "needs PSP ticket / manual". Duplicates and rows missing in the gateway can
    never get a rule.

    :param rules: one rule per correctable kind.
    :param allowed_statuses: when given, a proposal whose target status is not in it is not
        made (listed as manual): guards against writing a PSP status that has no mapping to
        the gateway's vocabulary.
    """

    rules: tuple[CorrectionRule, ...] = (CorrectionRule(DivergenceKind.STATUS_MISMATCH),)
    allowed_statuses: frozenset[str] | None = None

    def __post_init__(self) -> None:
        kinds = [rule.kind for rule in self.rules]
        if len(kinds) != len(set(kinds)):
            raise CorrectionPolicyError(f"correction policy has two rules for one kind: {kinds}")
        if self.allowed_statuses is not None:
            allowed = frozenset(_check_status(s, what="allowed status") for s in self.allowed_statuses)
            object.__setattr__(self, "allowed_statuses", allowed)
            for rule in self.rules:
                if rule.status is not None and rule.status not in allowed:
                    raise CorrectionPolicyError(
                        f"the {rule.kind.value} rule sets status {rule.status!r}, which is not "
                        f"among the allowed statuses {sorted(allowed)}"
                    )

    @classmethod
    def default(cls) -> CorrectionPolicy:
        return cls()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CorrectionPolicy:
        """Build from JSON-like data::

            {"rules": {"status_mismatch": "psp_status",
                       "missing_in_statement": {"status": "failed"}},
             "allowed_statuses": ["authorized", "captured", "settled", "refunded", "failed"]}

        ``None`` or ``{}`` is the default policy; ``{"rules": {}}`` corrects nothing.
        """
        if data is None or (isinstance(data, Mapping) and not data):
            return cls.default()
        if not isinstance(data, Mapping):
            raise CorrectionPolicyError(f"a correction policy must be an object, got {data!r}")
        unknown = set(data) - {"rules", "allowed_statuses"}
        if unknown:
            raise CorrectionPolicyError(
                f"unknown correction policy key(s) {sorted(unknown)}; expected rules, allowed_statuses"
            )
        raw_rules = data.get("rules", {})
        if not isinstance(raw_rules, Mapping):
            raise CorrectionPolicyError(
                f"policy rules must be an object of kind -> target, got {raw_rules!r}"
            )
        known = {kind.value for kind in DivergenceKind}
        rules = []
        for name, target in raw_rules.items():
            if name not in known:
                raise CorrectionPolicyError(
                    f"unknown divergence kind {name!r} in the correction policy; "
                    f"expected any of {sorted(known)}"
                )
            if target == PSP_STATUS:
                rules.append(CorrectionRule(DivergenceKind(name)))
            elif isinstance(target, Mapping) and set(target) == {"status"}:
                rules.append(CorrectionRule(DivergenceKind(name), status=target["status"]))
            else:
                raise CorrectionPolicyError(
                    f"target of {name} must be {PSP_STATUS!r} or {{'status': '<status>'}}, got {target!r}"
                )
        allowed = data.get("allowed_statuses")
        if allowed is not None and (isinstance(allowed, str) or not isinstance(allowed, Iterable)):
            raise CorrectionPolicyError(f"allowed_statuses must be a list of statuses, got {allowed!r}")
        rules.sort(key=lambda rule: rule.kind.rank)
        return cls(rules=tuple(rules), allowed_statuses=None if allowed is None else frozenset(allowed))

    @classmethod
    def coerce(cls, value: CorrectionPolicy | Mapping[str, Any] | None) -> CorrectionPolicy:
        return value if isinstance(value, CorrectionPolicy) else cls.from_dict(value)

    def rule_for(self, kind: DivergenceKind) -> CorrectionRule | None:
        return next((rule for rule in self.rules if rule.kind is kind), None)

    @property
    def correctable_kinds(self) -> tuple[DivergenceKind, ...]:
        return tuple(kind for kind in ALL_KINDS if self.rule_for(kind) is not None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": {rule.kind.value: rule.as_json() for rule in self.rules},
            "allowed_statuses": None if self.allowed_statuses is None else sorted(self.allowed_statuses),
        }

    def assess(self, row: DivergenceRow, target: GatewayRow | None) -> ProposedCorrection | ManualItem:
        """The correction of one divergent key, or why there is none.

        ``target`` is the key's gateway row as it is now (``None`` when the key has no
        gateway row or more than one).
        """
        rule = self.rule_for(row.kind)
        if rule is None:
            return ManualItem(row, NOT_CORRECTABLE.get(row.kind, f"{NEEDS_TICKET}: no correction rule"))
        if row.gateway_count != 1 or target is None:
            return ManualItem(row, f"{NEEDS_TICKET}: the key has {row.gateway_count} gateway rows")
        after = rule.status if rule.status is not None else row.statement_status
        if not after:
            return ManualItem(row, f"{NEEDS_TICKET}: the PSP reports no status")
        if self.allowed_statuses is not None and after not in self.allowed_statuses:
            return ManualItem(
                row,
                f"{NEEDS_TICKET}: status {after!r} is not an allowed gateway status "
                "(configure the PSP's status_mapping)",
            )
        if after == target.status:
            return ManualItem(row, f"gateway row already has status {after!r}: nothing to correct")
        return ProposedCorrection(
            transaction_id=target.transaction_id,
            provider_reference=row.provider_reference,
            transaction_type=row.transaction_type,
            kind=row.kind,
            before_status=target.status,
            before_processed_at=target.processed_at,
            after_status=after,
            amount_minor=target.amount_minor,
            currency=target.currency,
            psp_status=row.statement_status,
            psp_amount_minor=row.statement_amount_minor,
            psp_currency=row.statement_currency or row.currency,
        )


# -- one correction -------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayRow:
    """A ``payment_transactions`` row as it is now: what a correction would change."""

    transaction_id: int
    status: str
    processed_at: datetime | None
    amount_minor: int
    currency: str
    created_at: datetime


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class ProposedCorrection:
    """One gateway row to correct: ``status := after_status, processed_at := now()``,
    provided the row is still in its ``before`` state when the correction is applied."""

    transaction_id: int
    provider_reference: str
    transaction_type: str
    kind: DivergenceKind
    before_status: str
    before_processed_at: datetime | None
    after_status: str
    amount_minor: int
    #: the currency of ``amount_minor`` (the gateway row's, upper case)
    currency: str = ""
    #: the evidence finance weighs (not part of the correction key): what the PSP's statement
    #: says of the key — its status, amount and currency (``None``: the statement has no line)
    psp_status: str | None = None
    psp_amount_minor: int | None = None
    psp_currency: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DivergenceKind(self.kind))
        object.__setattr__(self, "currency", currency_code(self.currency))
        if self.psp_currency:
            object.__setattr__(self, "psp_currency", currency_code(self.psp_currency))
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError(f"amount_minor must be an int, got {type(self.amount_minor).__name__}")

    @property
    def before(self) -> dict[str, Any]:
        return {"status": self.before_status, "processed_at": _iso(self.before_processed_at)}

    @property
    def after(self) -> dict[str, Any]:
        return {"status": self.after_status}

    def canonical(self) -> str:
        """The text hashed into the correction key (stable across processes)."""
        return json.dumps(
            [
                self.transaction_id,
                self.kind.value,
                self.before_status,
                _iso(self.before_processed_at),
                self.after_status,
                self.amount_minor,
            ],
            separators=(",", ":"),
            ensure_ascii=True,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "provider_reference": self.provider_reference,
            "transaction_type": self.transaction_type,
            "kind": self.kind.value,
            "before": self.before,
            "after": self.after,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
        }


@dataclass(frozen=True)
class ManualItem:
    """A divergent key that is not corrected automatically, and why."""

    divergence: DivergenceRow
    reason: str


# -- correction key -------------------------------------------------------------------------


class CorrectionKeyBuilder:
    """The key of a correction set, built while the proposals stream by.

    Same scope (the incident, or the run when there is none), same PSP and the same
    proposals in the same order give the same key, in any process; so a retry or a re-run
    of a dry run that finds the same rows in the same state re-uses the key, and
    ``recon.corrections``' unique ``(correction_key, transaction_id)`` makes applying it
    again a no-op.
    """

    VERSION = "recon-correction-v1"

    def __init__(self, *, scope: str, psp: str) -> None:
        if not scope:
            raise ValueError("a correction key needs a scope (incident id or run id)")
        self._hash = hashlib.sha256(json.dumps([self.VERSION, scope, psp]).encode())
        self.count = 0

    def add(self, proposal: ProposedCorrection) -> None:
        self._hash.update(b"\n" + proposal.canonical().encode())
        self.count += 1

    @property
    def key(self) -> str:
        return f"corr-{self._hash.copy().hexdigest()[:32]}"


def correction_key(*, scope: str, psp: str, proposals: Iterable[ProposedCorrection]) -> str:
    builder = CorrectionKeyBuilder(scope=scope, psp=psp)
    for proposal in proposals:
        builder.add(proposal)
    return builder.key


def correction_scope(*, incident_id: str | None, dag_id: str, run_id: str) -> str:
    """The scope of a correction key: the incident when there is one (a re-run for the same
    incident finds the same set), else the DAG run."""
    return f"incident:{incident_id}" if incident_id else f"run:{dag_id}/{run_id}"


def check_row_cap(count: int, row_cap: int | None) -> None:
    """Refuse a correction set larger than the run's row cap (``None``: no cap)."""
    if row_cap is not None and count > row_cap:
        raise RowCapExceededError(
            f"the correction set has {count:,} transactions, more than this run's row cap of "
            f"{row_cap:,}: nothing was applied. Narrow the window or the divergence kinds, or "
            "raise row_cap once finance agrees."
        )


def parse_row_cap(value: Any) -> int | None:
    """A row cap from an operator argument or a rendered template (``None``/``""``: no cap)."""
    if value is None or (isinstance(value, str) and value.strip() in {"", "None"}):
        return None
    cap: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        cap = value
    # ASCII digits only: str.isdigit() is also true for "²", which int() then refuses
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        cap = int(value.strip())
    if cap is None or cap < 1:
        raise ReconError(f"row cap {value!r} must be a positive integer")
    return cap


# -- dry run ---------------------------------------------------------------------------------


def _currency_dict(totals: Mapping[str, KindTotal]) -> dict[str, dict[str, Any]]:
    """``{code: {"exponent", "count", "amount_minor"}}`` in each currency's own minor units."""
    return {
        code: {"exponent": exponent(code), "count": t.count, "amount_minor": t.amount_minor}
        for code, t in sorted(totals.items())
    }


def _freeze(totals: Mapping[str, list[int]]) -> dict[str, KindTotal]:
    return {code: KindTotal(n, a) for code, (n, a) in sorted(totals.items())}


def totals_by_currency(proposals: Iterable[ProposedCorrection]) -> dict[str, KindTotal]:
    """How many proposals and how much, per currency (each in its own minor units)."""
    totals: dict[str, list[int]] = {}
    for p in proposals:
        total = totals.setdefault(p.currency, [0, 0])
        total[0] += 1
        total[1] += p.amount_minor
    return _freeze(totals)


def merge_by_currency(parts: Iterable[Mapping[str, KindTotal]]) -> dict[str, KindTotal]:
    """Per-currency totals of several groups, added currency by currency (never across)."""
    totals: dict[str, list[int]] = {}
    for part in parts:
        for code, t in part.items():
            total = totals.setdefault(code, [0, 0])
            total[0] += t.count
            total[1] += t.amount_minor
    return _freeze(totals)


@dataclass(frozen=True)
class ManualTotal:
    """Divergent keys of one kind left to people: how many, how much in each currency, and
    why. A key counts in its currency; the extra copies of a duplicate in another currency
    add their amount to that currency (not a key)."""

    count: int = 0
    by_currency: Mapping[str, KindTotal] = field(default_factory=dict)
    reasons: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DryRun:
    """What a correction would do, before anyone approves it. :meth:`as_dict` (for XCom)
    has figures only; the rows are in the CSV artifact and in ``recon.correction_proposals``.

    Amounts are per currency, in that currency's minor units (DESIGN 3a); counts may be added
    across currencies, amounts never are. The converted figures are in the reporting
    currency: each currency's total converted once with its rate in ``fx_rates`` (in force at
    the window's end); a currency without a rate is left out of them and listed in
    :attr:`unconverted_currencies`.
    """

    correction_key: str
    psp: str
    window: Window
    scope: str
    proposal_count: int
    #: proposals per currency: count and amount in that currency
    by_currency: Mapping[str, KindTotal]
    #: proposals per kind, then per currency
    by_kind: Mapping[DivergenceKind, Mapping[str, KindTotal]]
    manual_by_kind: Mapping[DivergenceKind, ManualTotal]
    sample: tuple[ProposedCorrection, ...] = ()
    #: the dry-run CSV: its dashboard link once published to the artifact store (the hook
    #: alone writes a local file and names it here)
    artifact: str | None = None
    row_cap: int | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)
    reporting_currency: str = DEFAULT_REPORTING_CURRENCY
    #: the rates in force at the window's end of the dry run's currencies that have one
    fx_rates: Mapping[str, FxRate] = field(default_factory=dict)
    #: the published CSV (``ArtifactRecord.summary()``: id, name, link, size, SHA-256)
    artifact_record: Mapping[str, Any] | None = None

    @property
    def manual_count(self) -> int:
        return sum(t.count for t in self.manual_by_kind.values())

    @property
    def manual_by_currency(self) -> dict[str, KindTotal]:
        return merge_by_currency(t.by_currency for t in self.manual_by_kind.values())

    def kind_count(self, kind: DivergenceKind) -> int:
        return sum(t.count for t in self.by_kind.get(kind, {}).values())

    @property
    def row_cap_exceeded(self) -> bool:
        """The row cap is a number of transactions, never an amount (amounts of different
        currencies cannot be compared with one figure)."""
        return self.row_cap is not None and self.proposal_count > self.row_cap

    # -- the reporting currency ----------------------------------------------------------
    @property
    def converter(self) -> Converter:
        return Converter(self.reporting_currency, self.fx_rates)

    @property
    def currencies(self) -> list[str]:
        """Every currency of the dry run (proposals and keys left to people)."""
        return sorted(set(self.by_currency) | set(self.manual_by_currency))

    @property
    def unconverted_currencies(self) -> list[str]:
        """Currencies of the dry run with no rate in force: left out of the converted figures."""
        return [c for c in self.currencies if not self.converter.can_convert(c)]

    @property
    def used_rates(self) -> dict[str, FxRate]:
        """The rates the converted figures used (currencies other than the reporting one)."""
        return {
            c: self.fx_rates[c]
            for c in self.currencies
            if c != self.reporting_currency and self.converter.can_convert(c)
        }

    @property
    def needs_conversion(self) -> bool:
        """Whether any currency other than the reporting one is present (else every amount is
        already in the reporting currency and nothing is converted)."""
        return any(c != self.reporting_currency for c in self.currencies)

    def converted(self, totals: Mapping[str, KindTotal]) -> int:
        """Reporting-currency minor units of the convertible currencies of ``totals``, each
        currency's total converted once (currencies without a rate are left out)."""
        return self.converter.total((c, t.amount_minor) for c, t in totals.items())

    @property
    def proposal_converted_amount_minor(self) -> int:
        return self.converted(self.by_currency)

    @property
    def manual_converted_amount_minor(self) -> int:
        return self.converted(self.manual_by_currency)

    def as_dict(self) -> dict[str, Any]:
        """Counts, and amounts per currency in its own minor units (integers plus the
        currency code); the converted figures in reporting-currency minor units with the
        rates used and the currencies left out."""
        return {
            "correction_key": self.correction_key,
            "psp": self.psp,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "scope": self.scope,
            "proposal_count": self.proposal_count,
            "by_currency": _currency_dict(self.by_currency),
            "by_kind": {
                kind.value: {"count": self.kind_count(kind), "by_currency": _currency_dict(totals)}
                for kind, totals in sorted(self.by_kind.items(), key=lambda kv: kv[0].rank)
            },
            "manual_count": self.manual_count,
            "manual_by_currency": _currency_dict(self.manual_by_currency),
            "manual_by_kind": {
                kind.value: {
                    "count": t.count,
                    "by_currency": _currency_dict(t.by_currency),
                    "reasons": dict(t.reasons),
                }
                for kind, t in sorted(self.manual_by_kind.items(), key=lambda kv: kv[0].rank)
            },
            "reporting_currency": self.reporting_currency,
            "proposal_converted_amount_minor": self.proposal_converted_amount_minor,
            "manual_converted_amount_minor": self.manual_converted_amount_minor,
            "fx_rates": {c: rate.as_dict() for c, rate in sorted(self.used_rates.items())},
            "unconverted_currencies": self.unconverted_currencies,
            "artifact": self.artifact,
            "artifact_record": dict(self.artifact_record) if self.artifact_record else None,
            "row_cap": self.row_cap,
            "row_cap_exceeded": self.row_cap_exceeded,
            "policy": dict(self.policy),
        }


class DryRunBuilder:
    """Accumulates a dry run while proposals stream by: per-currency totals, manual items, a
    sample and the correction key. Memory follows the sample size, not the number of rows."""

    def __init__(
        self,
        *,
        psp: str,
        window: Window,
        scope: str,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        row_cap: int | None = None,
        policy: CorrectionPolicy | None = None,
    ) -> None:
        self.psp = psp
        self.window = window
        self.scope = scope
        self.sample_size = max(0, sample_size)
        self.row_cap = row_cap
        self.policy = policy or CorrectionPolicy.default()
        self.key = CorrectionKeyBuilder(scope=scope, psp=psp)
        self._by_kind: dict[DivergenceKind, dict[str, list[int]]] = {}
        self._by_currency: dict[str, list[int]] = {}
        #: kind -> [keys, {currency: [keys, amount]}, {reason: keys}]
        self._manual: dict[DivergenceKind, list[Any]] = {}
        self._sample: list[ProposedCorrection] = []

    @property
    def count(self) -> int:
        return self.key.count

    @property
    def currencies(self) -> list[str]:
        """The currencies seen so far (proposals and manual items)."""
        seen = set(self._by_currency)
        for _kind, by_currency, _count in self._manual.values():
            seen |= set(by_currency)
        return sorted(seen)

    @staticmethod
    def _add(bucket: dict[str, list[int]], currency: str, count: int, amount: int) -> None:
        total = bucket.setdefault(currency, [0, 0])
        total[0] += count
        total[1] += amount

    def add(self, item: ProposedCorrection | ManualItem) -> None:
        if isinstance(item, ManualItem):
            row = item.divergence
            total = self._manual.setdefault(row.kind, [0, {}, {}])
            total[0] += 1
            self._add(total[1], currency_code(row.currency), 1, row.divergent_amount_minor)
            for code, amount in row.other_amounts.items():
                self._add(total[1], currency_code(code), 0, int(amount))
            total[2][item.reason] = total[2].get(item.reason, 0) + 1
            return
        self.key.add(item)
        self._add(self._by_currency, item.currency, 1, item.amount_minor)
        self._add(self._by_kind.setdefault(item.kind, {}), item.currency, 1, item.amount_minor)
        if len(self._sample) < self.sample_size:
            self._sample.append(item)

    def finish(
        self,
        *,
        artifact: str | None = None,
        reporting_currency: str = DEFAULT_REPORTING_CURRENCY,
        fx_rates: Iterable[FxRate] = (),
    ) -> DryRun:
        """The dry run, with the rates (in force at the window's end) of its currencies."""
        return DryRun(
            correction_key=self.key.key,
            psp=self.psp,
            window=self.window,
            scope=self.scope,
            proposal_count=self.count,
            by_currency=_freeze(self._by_currency),
            by_kind={k: _freeze(v) for k, v in self._by_kind.items()},
            manual_by_kind={
                k: ManualTotal(n, _freeze(by_currency), dict(r))
                for k, (n, by_currency, r) in self._manual.items()
            },
            sample=tuple(self._sample),
            artifact=artifact,
            row_cap=self.row_cap,
            policy=self.policy.as_dict(),
            reporting_currency=reporting_currency,
            fx_rates={rate.currency: rate for rate in fx_rates},
        )


#: columns of the dry-run CSV artifact, in order
DRY_RUN_FIELDS = (
    "transaction_id",
    "provider_reference",
    "transaction_type",
    "kind",
    "before_status",
    "before_processed_at",
    "after_status",
    "amount_minor",
    "currency",
)


class DryRunCsvWriter:
    """Writes proposals to the dry-run CSV (one line each, :data:`DRY_RUN_FIELDS`)."""

    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._writer.writerow(DRY_RUN_FIELDS)
        self.rows = 0

    def write(self, p: ProposedCorrection) -> None:
        self._writer.writerow(
            [
                p.transaction_id,
                safe_cell(p.provider_reference),
                safe_cell(p.transaction_type),
                p.kind.value,
                safe_cell(p.before_status),
                _iso(p.before_processed_at) or "",
                safe_cell(p.after_status),
                p.amount_minor,
                safe_cell(p.currency),
            ]
        )
        self.rows += 1


# -- what finance reads ---------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def _md(value: Any) -> str:
    """Text from the data (PSP references, statuses) made inert in markdown."""
    text = _CONTROL.sub(" ", str(value))
    return _MD_SPECIAL.sub(r"\\\1", text)


def _inert_source(rate: FxRate) -> FxRate:
    """The rate with its source (free text from ``recon.fx_rates``) made inert in markdown."""
    return replace(rate, source=_md(rate.source)) if rate.source else rate


def _human_duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def _count(value: int, locale: str | None) -> str:
    """A count in the locale's number format (``12.004`` in pt-BR, like the amounts beside it)."""
    from babel.numbers import format_decimal

    from airflow_recon_provider.reconciliation.money import babel_locale

    return format_decimal(value, format="#,##0", locale=babel_locale(locale))


def _money(amount_minor: int, currency: str, locale: str | None) -> str:
    """An amount with its currency and that currency's decimals, inert in markdown."""
    return _md(format_money(amount_minor, currency or None, locale=locale))


def _code(currency: str) -> str:
    return _md(currency) if currency else "?"


def per_currency_text(
    totals: Mapping[str, KindTotal], *, locale: str | None = None, extra: str | None = None
) -> str:
    """``11 em BRL: R$ 104.175,21; 1 em EUR: EUR 9.619,80``: each currency's count and amount,
    never one figure for several currencies, in the language in force (``locale``: the
    language for the words and the numbers, default the one in force). A currency with an
    amount but no count (extra copies of a duplicate kept in another currency) says so."""
    with use_language(locale):
        parts = []
        for code, t in sorted(totals.items()):
            who = (
                _("%(count)s in %(currency)s", count=_count(t.count, locale), currency=_code(code))
                if t.count
                else _("%(what)s in %(currency)s", what=extra or _("extra copies"), currency=_code(code))
            )
            parts.append(f"{who}: {_money(t.amount_minor, code, locale)}")
        return "; ".join(parts) if parts else pgettext("amounts", "none")


def converted_text(dry: DryRun, totals: Mapping[str, KindTotal], *, locale: str | None = None) -> list[str]:
    """The converted total of ``totals`` in the reporting currency, labelled as converted and
    with the rates used, and the currencies that have no rate (named, never taken as zero).
    Nothing when every amount is already in the reporting currency."""
    rc = dry.reporting_currency
    codes = sorted(totals)
    if not any(c != rc for c in codes):
        return []
    converter = dry.converter
    convertible = [c for c in codes if converter.can_convert(c)]
    missing = [c for c in codes if not converter.can_convert(c)]
    lines = []
    with use_language(locale):
        if convertible:
            rates = "; ".join(
                rate_text(_inert_source(dry.fx_rates[c]), rc, locale=locale) for c in convertible if c != rc
            )
            of = ", ".join(_code(c) for c in convertible)
            how = (
                _(
                    "converted, of %(of)s; %(missing)s not included",
                    of=of,
                    missing=", ".join(_code(c) for c in missing),
                )
                if missing
                else _("converted, of %(of)s", of=of)
            )
            line = _(
                "Converted total in %(currency)s (%(how)s): %(amount)s",
                currency=_md(rc),
                how=how,
                amount=_money(dry.converted(totals), rc, locale),
            )
            if rates:
                line += " — " + _(
                    "rates in force at %(moment)s: %(rates)s", moment=dry.window.end.isoformat(), rates=rates
                )
            lines.append(line)
        if missing:
            lines.append(
                _(
                    "Not converted to %(currency)s: %(codes)s — no rate in recon.fx_rates in force at "
                    "%(moment)s (never taken as zero; load the rate to see a converted total)",
                    currency=_md(rc),
                    codes=", ".join(_code(c) for c in missing),
                    moment=dry.window.end.isoformat(),
                )
            )
    return lines


def _artifact_line(dry: DryRun, locale: str | None) -> str:
    """``[correction_<key>.csv](<dashboard link>) — 1.234 bytes, SHA-256 `0123456789ab…```."""
    record = dry.artifact_record
    if record and record.get("link"):
        size = int(record.get("size_bytes") or 0)
        sha = str(record.get("sha256") or "")
        name = _md(record.get("name") or _("dry-run CSV"))
        return (
            f"[{name}]({record['link']}) — "
            + ngettext("%(num)s byte", "%(num)s bytes", size, num=_count(size, locale))
            + f", SHA-256 `{sha[:16]}…`"
        )
    return _md(dry.artifact) if dry.artifact else pgettext("artifact", "none")


def _kind_cell(kind: DivergenceKind) -> str:
    """A divergence kind in words, its code beside it: ``status divergente (`status_mismatch`)``."""
    return f"{_md(kind_name(kind))} (`{kind.value}`)"


def approval_subject(dry: DryRun, *, locale: str | None = None) -> str:
    """``Aprovar correção de dados do PSP stripe: 12 transações — 11 em BRL: R$ 104.175,21;
    1 em EUR: EUR 9.619,80`` (plain text: no markdown escapes), in the language in force
    (``locale``: another language for its words and numbers)."""
    with use_language(locale):
        per_currency = "; ".join(
            _("%(count)s in %(currency)s", count=_count(t.count, locale), currency=code or "?")
            + ": "
            + format_money(t.amount_minor, code or None, locale=locale)
            for code, t in sorted(dry.by_currency.items())
        )
        subject = ngettext(
            "Approve data correction of PSP %(psp)s: %(num)s transaction",
            "Approve data correction of PSP %(psp)s: %(num)s transactions",
            dry.proposal_count,
            psp=dry.psp,
            num=_count(dry.proposal_count, locale),
        )
        return subject + (f" — {per_currency}" if per_currency else "")


def approval_body(
    dry: DryRun,
    *,
    requested_by: str,
    run_id: str,
    incident_id: str | None,
    timeout: timedelta | None,
    approvers: Sequence[str] = (),
    locale: str | None = None,
) -> str:
    """The request finance reads (markdown), in the language in force (``locale``: another
    language for its words and numbers): counts and amounts per currency, the converted total
    with its rates, a sample of the dry run, what approving does, and what happens without an
    answer. No line adds amounts of different currencies."""
    with use_language(locale):
        return _approval_body(
            dry,
            requested_by=requested_by,
            run_id=run_id,
            incident_id=incident_id,
            timeout=timeout,
            approvers=approvers,
            locale=locale,
        )


def _approval_body(
    dry: DryRun,
    *,
    requested_by: str,
    run_id: str,
    incident_id: str | None,
    timeout: timedelta | None,
    approvers: Sequence[str],
    locale: str | None,
) -> str:
    def n(value: int) -> str:
        return _count(value, locale)

    lines = [
        _(
            "**Data correction for PSP %(psp)s** (runbook: %(section)s, %(step)s)",
            psp=_md(dry.psp),
            section=section_title(MITIGATION),
            step=section_title(DATA_CORRECTION),
        ),
        "",
        ngettext(
            "**%(num)s transaction to correct — %(amounts)s**",
            "**%(num)s transactions to correct — %(amounts)s**",
            dry.proposal_count,
            num=n(dry.proposal_count),
            amounts=per_currency_text(dry.by_currency, locale=locale),
        ),
    ]
    converted = converted_text(dry, dry.by_currency, locale=locale)
    if converted:
        lines += ["", *(f"- {line}" for line in converted)]
    lines += [
        "",
        _(
            "- window: %(start)s to %(end)s (end excluded)",
            start=dry.window.start.isoformat(),
            end=dry.window.end.isoformat(),
        ),
        _(
            "- incident: %(incident)s",
            incident=_md(incident_id) if incident_id else pgettext("incident", "none"),
        ),
        _(
            "- requested by: %(who)s (run %(run)s) — cannot approve it",
            who=_md(requested_by),
            run=_md(run_id),
        ),
        _("- correction set: %(key)s", key=f"`{dry.correction_key}`"),
        _("- dry-run CSV (open it before answering): %(link)s", link=_artifact_line(dry, locale)),
        ngettext(
            "- row cap: %(num)s transaction",
            "- row cap: %(num)s transactions",
            dry.row_cap,
            num=n(dry.row_cap),
        )
        if dry.row_cap is not None
        else _("- row cap: none"),
    ]
    if dry.by_currency:
        rc = dry.reporting_currency
        lines += [
            "",
            _("| currency | transactions | amount | in %(currency)s |", currency=_md(rc)),
            "|---|---:|---:|---|",
        ]
        for code, t in sorted(dry.by_currency.items()):
            value = dry.converter.convert(t.amount_minor, code)
            if code == rc:
                in_rc = _("same currency")
            elif value is None:
                in_rc = _("not converted: no rate")
            else:
                in_rc = _(
                    "%(amount)s (converted at 1 %(code)s = %(rate)s %(currency)s)",
                    amount=_money(value, rc, locale),
                    code=_code(code),
                    rate=format_rate(dry.fx_rates[code].rate, locale=locale),
                    currency=_md(rc),
                )
            amount = _money(t.amount_minor, code, locale)
            lines.append(f"| {_code(code)} | {n(t.count)} | {amount} | {in_rc} |")
    lines += ["", _("| divergence kind | currency | transactions | amount |"), "|---|---|---:|---:|"]
    for kind, totals in sorted(dry.by_kind.items(), key=lambda kv: kv[0].rank):
        for code, t in sorted(totals.items()):
            amount = _money(t.amount_minor, code, locale)
            lines.append(f"| {_kind_cell(kind)} | {_code(code)} | {n(t.count)} | {amount} |")
    if dry.manual_by_kind:
        manual = dry.manual_by_currency
        lines += [
            "",
            ngettext(
                "Not corrected here (needs a PSP ticket or a person): %(num)s key — %(amounts)s",
                "Not corrected here (needs a PSP ticket or a person): %(num)s keys — %(amounts)s",
                dry.manual_count,
                num=n(dry.manual_count),
                amounts=per_currency_text(manual, locale=locale),
            ),
        ]
        lines += [f"- {line}" for line in converted_text(dry, manual, locale=locale)]
        lines += [
            "",
            _("| divergence kind | currency | keys | divergent amount |"),
            "|---|---|---:|---:|",
        ]
        for kind, total in sorted(dry.manual_by_kind.items(), key=lambda kv: kv[0].rank):
            for code, t in sorted(total.by_currency.items()):
                amount = _money(t.amount_minor, code, locale)
                lines.append(f"| {_kind_cell(kind)} | {_code(code)} | {n(t.count)} | {amount} |")
    if dry.sample:
        shown = (
            _("all %(count)s", count=n(dry.proposal_count))
            if len(dry.sample) == dry.proposal_count
            else _(
                "%(shown)s of %(count)s; the others in the CSV",
                shown=n(len(dry.sample)),
                count=n(dry.proposal_count),
            )
        )
        lines += [
            "",
            _(
                "**Evidence per transaction** (%(shown)s) — the gateway and the PSP's statement side by "
                "side, each amount in its currency:",
                shown=shown,
            ),
            "",
            _(
                "| transaction | reference | type | divergence | gateway: status | gateway: amount "
                "| PSP: status | PSP: amount | new status |"
            ),
            "|---:|---|---|---|---|---:|---|---:|---|",
        ]
        for p in dry.sample:
            psp_amount = (
                _("no line in the statement")
                if p.psp_amount_minor is None
                else _money(p.psp_amount_minor, p.psp_currency or p.currency, locale)
            )
            lines.append(
                f"| {p.transaction_id} | {_md(p.provider_reference)} | {_md(p.transaction_type)} | "
                f"{_md(kind_name(p.kind))} | {_md(p.before_status)} | "
                f"{_money(p.amount_minor, p.currency, locale)} | "
                f"{_md(p.psp_status) if p.psp_status else '—'} | {psp_amount} | **{_md(p.after_status)}** |"
            )
    lines += [
        "",
        _(
            "**Approve** sets each listed transaction's status to the new status and `processed_at` "
            "to now, in one database transaction, and records each correction in "
            "`recon.corrections`, in `payment_reconciliation_logs.notes` and in the incident. A "
            "transaction that changed since this dry run is reported, never overwritten."
        ),
        _("**Reject**, or no answer within %(duration)s, applies nothing.", duration=_human_duration(timeout))
        if timeout
        else _("**Reject**, or no answer at all, applies nothing."),
    ]
    if approvers:
        lines.append(_("Assigned approvers: %(names)s.", names=", ".join(_md(a) for a in approvers)))
    return "\n".join(lines)


# -- approval ---------------------------------------------------------------------------------


class Decision(StrEnum):
    """The outcome of a finance approval request."""

    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


def _same_person(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.strip().casefold() == b.strip().casefold()


def user_label(user: Mapping[str, Any] | None) -> str:
    """``name`` of a HITL user (``{"id", "name"}``), else its id."""
    if not user:
        return ""
    return str(user.get("name") or user.get("id") or "").strip()


def check_approver(
    *,
    requested_by: str,
    responder: Mapping[str, Any] | None,
    approvers: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """Who approves, or why the approval is refused.

    The person who requested the correction (triggered the run) never approves it, under
    any spelling of their id or name; when approvers are assigned, the answer must come
    from one of them. Returns the approver as recorded in ``recon.corrections``.
    """
    name = user_label(responder)
    if not responder or not name:
        raise ApproverNotAssignedError("the approval carries no user: nothing was applied")
    ids = {str(responder.get("id") or ""), str(responder.get("name") or "")}
    if any(_same_person(requested_by, value) for value in ids):
        raise SelfApprovalError(
            f"{name} requested this correction (triggered the run) and cannot also approve it: "
            "another finance approver must answer. Nothing was applied."
        )
    if approvers:
        allowed = {str(a.get(k) or "") for a in approvers for k in ("id", "name")}
        if not any(_same_person(value, candidate) for value in ids for candidate in allowed):
            raise ApproverNotAssignedError(
                f"{name} is not an assigned approver of this correction "
                f"({', '.join(sorted(a for a in allowed if a))}): nothing was applied"
            )
    return name


# -- apply ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurrentRow:
    """A target row as found, locked, when a correction is applied."""

    status: str
    processed_at: datetime | None
    created_at: datetime


class ApplyAction(StrEnum):
    APPLY = "apply"
    SKIP = "skip"
    CONFLICT = "conflict"


def classify_for_apply(p: ProposedCorrection, current: CurrentRow | None) -> ApplyAction:
    """Apply only to a row still in its ``before`` state (status and processed_at); a row
    that already has the new status is skipped; anything else is a conflict."""
    if current is None:
        return ApplyAction.CONFLICT
    if current.status == p.before_status and current.processed_at == p.before_processed_at:
        return ApplyAction.APPLY
    if current.status == p.after_status:
        return ApplyAction.SKIP
    return ApplyAction.CONFLICT


@dataclass(frozen=True)
class Conflict:
    """A proposed row that changed since the dry run: reported, never overwritten."""

    transaction_id: int
    expected: Mapping[str, Any]
    found: Mapping[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "expected": dict(self.expected),
            "found": None if self.found is None else dict(self.found),
        }


#: conflicts listed in :meth:`ApplyResult.as_dict` (the rest are counted)
CONFLICTS_LISTED = 100


@dataclass(frozen=True)
class ApplyResult:
    """What applying a correction set did, all in one committed transaction.

    :param applied: transactions corrected now.
    :param already_applied: transactions this correction set corrected before (a retry).
    :param conflicts: rows changed since the dry run (or gone): left as they are.
    :param skipped: rows that already had the new status: left as they are.
    :param applied_by_currency: how many of ``applied`` and how much, per currency (each in
        its own minor units; never one sum across currencies).
    :param processed_at: the ``processed_at`` written (the transaction's ``now()``).
    :param incident_event: whether an event was added to the incident's timeline.
    :param notes_pending_cycles: cycles (their start) with no ``payment_reconciliation_logs``
        row yet: the notes lines of their corrections wait on the audit rows and are written
        into the row that records the cycle; a correction never writes a cycle row itself.
    """

    correction_key: str
    applied: tuple[int, ...] = ()
    already_applied: tuple[int, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    skipped: tuple[int, ...] = ()
    applied_by_currency: Mapping[str, KindTotal] = field(default_factory=dict)
    processed_at: datetime | None = None
    incident_event: bool = False
    notes_pending_cycles: tuple[datetime, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "correction_key": self.correction_key,
            "applied": len(self.applied),
            "already_applied": len(self.already_applied),
            "conflicts": len(self.conflicts),
            "skipped": len(self.skipped),
            "applied_by_currency": _currency_dict(self.applied_by_currency),
            "processed_at": _iso(self.processed_at),
            "incident_event": self.incident_event,
            "notes_pending_cycles": [c.isoformat() for c in self.notes_pending_cycles],
            "conflict_details": [c.as_dict() for c in self.conflicts[:CONFLICTS_LISTED]],
        }


def _one_line(value: Any) -> str:
    return _CONTROL.sub(" ", str(value)).strip()


def correction_note(
    p: ProposedCorrection,
    *,
    correction_key: str,
    requested_by: str,
    approved_by: str,
    run_id: str,
    incident_id: str | None,
    processed_at: datetime,
) -> str:
    """The line a correction appends to ``payment_reconciliation_logs.notes`` (always one
    line: values from the data cannot break it in two)."""
    amount = format_money(p.amount_minor, p.currency or None)
    return _one_line(
        f"data correction {correction_key}: transaction {p.transaction_id} "
        f"({p.provider_reference} {p.transaction_type}, {p.kind.value}) status {p.before_status} -> "
        f"{p.after_status}, processed_at {_iso(processed_at)}; amount {amount}; "
        f"requested by {requested_by}, approved by {approved_by}; "
        f"incident {incident_id or 'none'}; run {run_id}"
    )


__all__ = [
    "DEFAULT_APPROVAL_TIMEOUT",
    "DEFAULT_ROW_CAP",
    "DEFAULT_SAMPLE_SIZE",
    "DRY_RUN_FIELDS",
    "INCIDENT_STEP",
    "NEEDS_TICKET",
    "NOT_CORRECTABLE",
    "PSP_STATUS",
    "ApplyAction",
    "ApplyResult",
    "Conflict",
    "CorrectionKeyBuilder",
    "CorrectionPolicy",
    "CorrectionRule",
    "CurrentRow",
    "Decision",
    "DryRun",
    "DryRunBuilder",
    "DryRunCsvWriter",
    "GatewayRow",
    "ManualItem",
    "ManualTotal",
    "ProposedCorrection",
    "approval_body",
    "approval_subject",
    "check_approver",
    "check_row_cap",
    "classify_for_apply",
    "converted_text",
    "correction_key",
    "correction_note",
    "correction_scope",
    "currency_code",
    "merge_by_currency",
    "parse_row_cap",
    "per_currency_text",
    "totals_by_currency",
    "user_label",
]
