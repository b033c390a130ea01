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

Amounts are ``int`` minor units.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.report import DivergenceRow, KindTotal, format_minor
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
    currency: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DivergenceKind(self.kind))
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


@dataclass(frozen=True)
class ManualTotal:
    """Divergent keys of one kind left to people: how many, how much, and why."""

    count: int = 0
    amount_minor: int = 0
    reasons: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DryRun:
    """What a correction would do, before anyone approves it. :meth:`as_dict` (for XCom)
    has figures only; the rows are in the CSV artifact and in ``recon.correction_proposals``."""

    correction_key: str
    psp: str
    window: Window
    scope: str
    proposal_count: int
    proposal_amount_minor: int
    by_kind: Mapping[DivergenceKind, KindTotal]
    by_currency: Mapping[str, KindTotal]
    manual_by_kind: Mapping[DivergenceKind, ManualTotal]
    sample: tuple[ProposedCorrection, ...] = ()
    artifact: str | None = None
    row_cap: int | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)

    @property
    def manual_count(self) -> int:
        return sum(t.count for t in self.manual_by_kind.values())

    @property
    def manual_amount_minor(self) -> int:
        return sum(t.amount_minor for t in self.manual_by_kind.values())

    @property
    def row_cap_exceeded(self) -> bool:
        return self.row_cap is not None and self.proposal_count > self.row_cap

    def as_dict(self) -> dict[str, Any]:
        return {
            "correction_key": self.correction_key,
            "psp": self.psp,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "scope": self.scope,
            "proposal_count": self.proposal_count,
            "proposal_amount_minor": self.proposal_amount_minor,
            "by_kind": {
                kind.value: {"count": t.count, "amount_minor": t.amount_minor}
                for kind, t in sorted(self.by_kind.items(), key=lambda kv: kv[0].rank)
            },
            "by_currency": {
                cur: {"count": t.count, "amount_minor": t.amount_minor}
                for cur, t in sorted(self.by_currency.items())
            },
            "manual_count": self.manual_count,
            "manual_amount_minor": self.manual_amount_minor,
            "manual_by_kind": {
                kind.value: {"count": t.count, "amount_minor": t.amount_minor, "reasons": dict(t.reasons)}
                for kind, t in sorted(self.manual_by_kind.items(), key=lambda kv: kv[0].rank)
            },
            "artifact": self.artifact,
            "row_cap": self.row_cap,
            "row_cap_exceeded": self.row_cap_exceeded,
            "policy": dict(self.policy),
        }


class DryRunBuilder:
    """Accumulates a dry run while proposals stream by: totals, manual items, a sample and
    the correction key. Memory follows the sample size, not the number of rows."""

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
        self._by_kind: dict[DivergenceKind, list[int]] = {}
        self._by_currency: dict[str, list[int]] = {}
        self._manual: dict[DivergenceKind, list[Any]] = {}
        self._sample: list[ProposedCorrection] = []
        self.amount_minor = 0

    @property
    def count(self) -> int:
        return self.key.count

    def add(self, item: ProposedCorrection | ManualItem) -> None:
        if isinstance(item, ManualItem):
            total = self._manual.setdefault(item.divergence.kind, [0, 0, {}])
            total[0] += 1
            total[1] += item.divergence.divergent_amount_minor
            total[2][item.reason] = total[2].get(item.reason, 0) + 1
            return
        self.key.add(item)
        self.amount_minor += item.amount_minor
        for bucket, name in ((self._by_kind, item.kind), (self._by_currency, item.currency or "?")):
            total = bucket.setdefault(name, [0, 0])
            total[0] += 1
            total[1] += item.amount_minor
        if len(self._sample) < self.sample_size:
            self._sample.append(item)

    def finish(self, *, artifact: str | None = None) -> DryRun:
        return DryRun(
            correction_key=self.key.key,
            psp=self.psp,
            window=self.window,
            scope=self.scope,
            proposal_count=self.count,
            proposal_amount_minor=self.amount_minor,
            by_kind={k: KindTotal(n, a) for k, (n, a) in self._by_kind.items()},
            by_currency={c: KindTotal(n, a) for c, (n, a) in self._by_currency.items()},
            manual_by_kind={k: ManualTotal(n, a, dict(r)) for k, (n, a, r) in self._manual.items()},
            sample=tuple(self._sample),
            artifact=artifact,
            row_cap=self.row_cap,
            policy=self.policy.as_dict(),
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


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet opens as text: finance opens this file, and a PSP
    reference like ``=HYPERLINK(...)`` must not become a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


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
                _cell(p.provider_reference),
                _cell(p.transaction_type),
                p.kind.value,
                _cell(p.before_status),
                _iso(p.before_processed_at) or "",
                _cell(p.after_status),
                p.amount_minor,
                _cell(p.currency),
            ]
        )
        self.rows += 1


# -- what finance reads ---------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def _md(value: Any) -> str:
    """Text from the data (PSP references, statuses) made inert in markdown."""
    text = _CONTROL.sub(" ", str(value))
    return _MD_SPECIAL.sub(r"\\\1", text)


def _human_duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def approval_subject(dry: DryRun) -> str:
    return (
        f"Approve data correction of PSP {dry.psp}: {dry.proposal_count:,} transaction(s), "
        f"{format_minor(dry.proposal_amount_minor)}"
    )


def approval_body(
    dry: DryRun,
    *,
    requested_by: str,
    run_id: str,
    incident_id: str | None,
    timeout: timedelta | None,
    approvers: Sequence[str] = (),
) -> str:
    """The request finance reads (markdown): counts, amounts and a sample of the dry run,
    what approving does, and what happens without an answer."""
    lines = [
        f"**Data correction for PSP {_md(dry.psp)}** (runbook: Mitigação, Correção de Dados)",
        "",
        f"- window: {dry.window.start.isoformat()} to {dry.window.end.isoformat()} (end excluded)",
        f"- incident: {_md(incident_id) if incident_id else 'none'}",
        f"- requested by: {_md(requested_by)} (run {_md(run_id)}) — cannot approve it",
        f"- correction set: `{dry.correction_key}`",
        f"- dry-run artifact: {_md(dry.artifact) if dry.artifact else 'none'}",
        f"- row cap: {dry.row_cap:,}" if dry.row_cap is not None else "- row cap: none",
        "",
        f"**{dry.proposal_count:,} transaction(s) to correct, {format_minor(dry.proposal_amount_minor)}**"
        " (minor units summed across currencies)",
        "",
        "| divergence kind | transactions | amount |",
        "|---|---:|---:|",
    ]
    for kind, total in sorted(dry.by_kind.items(), key=lambda kv: kv[0].rank):
        lines.append(f"| {kind.value} | {total.count:,} | {format_minor(total.amount_minor)} |")
    if len(dry.by_currency) > 1 or any(c != "?" for c in dry.by_currency):
        lines += ["", "| currency | transactions | amount |", "|---|---:|---:|"]
        for currency, total in sorted(dry.by_currency.items()):
            lines.append(f"| {_md(currency)} | {total.count:,} | {format_minor(total.amount_minor)} |")
    if dry.manual_by_kind:
        lines += [
            "",
            f"Not corrected here ({NEEDS_TICKET}): {dry.manual_count:,} key(s), "
            f"{format_minor(dry.manual_amount_minor)}",
            "",
            "| divergence kind | keys | divergent amount |",
            "|---|---:|---:|",
        ]
        for kind, total in sorted(dry.manual_by_kind.items(), key=lambda kv: kv[0].rank):
            lines.append(f"| {kind.value} | {total.count:,} | {format_minor(total.amount_minor)} |")
    if dry.sample:
        shown = len(dry.sample)
        lines += [
            "",
            f"Sample ({shown:,} of {dry.proposal_count:,}):",
            "",
            "| transaction | reference | type | kind | status now | new status | amount |",
            "|---:|---|---|---|---|---|---:|",
        ]
        for p in dry.sample:
            lines.append(
                f"| {p.transaction_id} | {_md(p.provider_reference)} | {_md(p.transaction_type)} | "
                f"{p.kind.value} | {_md(p.before_status)} | {_md(p.after_status)} | "
                f"{format_minor(p.amount_minor, _md(p.currency) if p.currency else None)} |"
            )
    wait = f"within {_human_duration(timeout)}" if timeout else "at all"
    lines += [
        "",
        "**Approve** sets each listed transaction's status to the new status and `processed_at` "
        "to now, in one database transaction, and records each correction in "
        "`recon.corrections`, in `payment_reconciliation_logs.notes` and in the incident. A "
        "transaction that changed since this dry run is reported, never overwritten.",
        f"**Reject**, or no answer {wait}, applies nothing.",
    ]
    if approvers:
        lines.append("Assigned approvers: " + ", ".join(_md(a) for a in approvers) + ".")
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
    :param applied_amount_minor: sum of the amounts of ``applied``.
    :param processed_at: the ``processed_at`` written (the transaction's ``now()``).
    :param incident_event: whether an event was added to the incident's timeline.
    """

    correction_key: str
    applied: tuple[int, ...] = ()
    already_applied: tuple[int, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    skipped: tuple[int, ...] = ()
    applied_amount_minor: int = 0
    processed_at: datetime | None = None
    incident_event: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "correction_key": self.correction_key,
            "applied": len(self.applied),
            "already_applied": len(self.already_applied),
            "conflicts": len(self.conflicts),
            "skipped": len(self.skipped),
            "applied_amount_minor": self.applied_amount_minor,
            "processed_at": _iso(self.processed_at),
            "incident_event": self.incident_event,
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
    amount = format_minor(p.amount_minor, p.currency or None)
    return _one_line(
        f"data correction {correction_key}: transaction {p.transaction_id} "
        f"({p.provider_reference} {p.transaction_type}, {p.kind.value}) status {p.before_status} -> "
        f"{p.after_status}, processed_at {_iso(processed_at)}; amount {amount}; "
        f"requested by {requested_by}, approved by {approved_by}; "
        f"incident {incident_id or 'none'}; run {run_id}"
    )


NEW_LOG_ROW_NOTE = (
    "no reconciliation was recorded for this cycle; row opened by a data correction for "
    "traceability (status failed: reprocess the cycle to reconcile it)"
)


__all__ = [
    "DEFAULT_APPROVAL_TIMEOUT",
    "DEFAULT_ROW_CAP",
    "DEFAULT_SAMPLE_SIZE",
    "DRY_RUN_FIELDS",
    "INCIDENT_STEP",
    "NEEDS_TICKET",
    "NEW_LOG_ROW_NOTE",
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
    "correction_key",
    "correction_note",
    "correction_scope",
    "parse_row_cap",
    "user_label",
]
