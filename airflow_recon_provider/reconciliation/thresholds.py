"""Alert and recovery rules (runbook "Contexto" and "Critérios de Recuperação").

Decisions use integers (minor units, counts, cycles); percentages are for display.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from airflow_recon_provider.reconciliation.errors import ConfigError


class AlertReason(StrEnum):
    AMOUNT = "amount"
    LAG = "lag"
    #: a currency of the window with a divergence has no FX rate: never assumed small
    FX_RATE_MISSING = "fx_rate_missing"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Thresholds:
    """The runbook's numbers for one PSP.

    :param alert_amount_minor: alert when the divergent amount is strictly above this
        (R$ 5.000 = 500000 minor units).
    :param alert_lag_cycles: alert when more than this many hourly cycles passed since the
        last successful reconciliation cycle.
    :param recovered_amount_minor: recovered only when the divergent amount is strictly
        below this (R$ 500 = 50000).
    :param recovered_count: recovered only when fewer than this many keys diverge.
    :param recovered_successful_runs: consecutive successful reconciliation runs needed.
    :param recovered_ledger_amount_minor: the ledger is aligned with the PSP statements only
        when the amount it would have to change to show the statements' figures (per status
        and currency, converted) is strictly below this (R$ 500 = 50000, as the divergence).
    :param recovered_ledger_count: ... and the rows it would have to add, remove or move to
        another status are fewer than this (``1``: the ledger must agree exactly).
    """

    alert_amount_minor: int = 500_000
    alert_lag_cycles: int = 2
    recovered_amount_minor: int = 50_000
    recovered_count: int = 10
    recovered_successful_runs: int = 2
    recovered_ledger_amount_minor: int = 50_000
    recovered_ledger_count: int = 10

    def __post_init__(self) -> None:
        for name in (
            "alert_amount_minor",
            "alert_lag_cycles",
            "recovered_amount_minor",
            "recovered_count",
            "recovered_successful_runs",
            "recovered_ledger_amount_minor",
            "recovered_ledger_count",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"threshold {name} must be a non-negative integer, got {value!r}")

    def alert_reasons(
        self, *, divergent_amount_minor: int, lag_cycles: int | None, fx_rate_missing: bool = False
    ) -> list[AlertReason]:
        """Why the alert ``billing_gateway-reconciliation`` fires (sorted); empty when it does not.

        ``divergent_amount_minor`` is in the reporting currency (reais by default: the
        thresholds' currency), converted from every currency that has a rate.
        ``lag_cycles=None`` means no successful cycle was ever recorded: that is lag.
        ``fx_rate_missing``: a currency with a divergence has no rate, so the converted
        amount leaves it out; it is never assumed small.
        """
        reasons = []
        if divergent_amount_minor > self.alert_amount_minor:
            reasons.append(AlertReason.AMOUNT)
        if fx_rate_missing:
            reasons.append(AlertReason.FX_RATE_MISSING)
        if lag_cycles is None or lag_cycles > self.alert_lag_cycles:
            reasons.append(AlertReason.LAG)
        return sorted(reasons, key=lambda r: r.value)

    def should_alert(
        self, *, divergent_amount_minor: int, lag_cycles: int | None, fx_rate_missing: bool = False
    ) -> bool:
        return bool(
            self.alert_reasons(
                divergent_amount_minor=divergent_amount_minor,
                lag_cycles=lag_cycles,
                fx_rate_missing=fx_rate_missing,
            )
        )

    def amounts_recovered(
        self, *, divergent_amount_minor: int, divergent_count: int, fx_rate_missing: bool = False
    ) -> bool:
        """The amount and count criteria of recovery (the run criterion is separate); an
        amount that could not be converted (``fx_rate_missing``) is not recovered."""
        return (
            not fx_rate_missing
            and divergent_amount_minor < self.recovered_amount_minor
            and divergent_count < self.recovered_count
        )

    def cycles_recovered(self, latest_run_states: list[str]) -> bool:
        """The run criterion: the latest runs (newest first) all ``success``."""
        needed = self.recovered_successful_runs
        return len(latest_run_states) >= needed and all(
            state == "success" for state in latest_run_states[:needed]
        )

    def is_recovered(
        self,
        *,
        divergent_amount_minor: int,
        divergent_count: int,
        latest_run_states: list[str],
        fx_rate_missing: bool = False,
    ) -> bool:
        """The gateway's recovery criteria: amounts, and the latest runs (newest first) all
        ``success``. The third criterion, the ledger's, is read from the ledger database
        (``reconciliation/recovery.py``, with the ``recovered_ledger_*`` thresholds; the
        recovery trigger requires all three)."""
        return self.cycles_recovered(latest_run_states) and self.amounts_recovered(
            divergent_amount_minor=divergent_amount_minor,
            divergent_count=divergent_count,
            fx_rate_missing=fx_rate_missing,
        )


@dataclass(frozen=True)
class ThresholdPolicy:
    """Default thresholds plus per-PSP overrides."""

    default: Thresholds = field(default_factory=Thresholds)
    overrides: dict[str, Thresholds] = field(default_factory=dict)

    def for_psp(self, psp: str) -> Thresholds:
        return self.overrides.get(psp, self.default)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ThresholdPolicy:
        # a wrong shape (a list, a string) must be a ConfigError, not an AttributeError
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"thresholds must be an object of threshold names to integers, got {data!r}")
        data = dict(data or {})
        per_psp = data.pop("per_psp", {}) or {}
        if not isinstance(per_psp, dict) or not all(isinstance(v, dict) for v in per_psp.values()):
            raise ConfigError(f"thresholds per_psp must map PSP names to objects, got {per_psp!r}")
        try:
            default = Thresholds(**data)
            overrides = {psp: replace(default, **values) for psp, values in per_psp.items()}
        except TypeError as exc:
            raise ConfigError(f"invalid thresholds: {exc}") from None
        return cls(default=default, overrides=overrides)
