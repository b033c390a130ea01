"""Reconciliation windows and the hourly cycles of the reconciliation schedule.

Runbook, Investigation step 1 ("Validar Escopo"): the affected PSP and period.
Windows are half-open ``[start, end)``, timezone-aware, and UTC inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from airflow_recon_provider.reconciliation.errors import WindowError

CYCLE = timedelta(hours=1)
DEFAULT_MAX_WINDOW = timedelta(days=31)


def parse_timestamp(value: str | datetime, *, name: str = "timestamp") -> datetime:
    """Parse an ISO 8601 timestamp with an explicit offset and return it in UTC.

    Naive values are refused: a time without a zone is ambiguous for money.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise WindowError(
                f"{name} {value!r} is not an ISO 8601 timestamp (e.g. 2026-11-20T10:00:00Z)"
            ) from None
    if parsed.tzinfo is None or parsed.tzinfo.utcoffset(parsed) is None:
        raise WindowError(f"{name} {value!s} has no timezone; give an explicit offset such as Z or -03:00")
    return parsed.astimezone(UTC)


def floor_cycle(moment: datetime) -> datetime:
    """Start of the hourly cycle containing ``moment`` (UTC)."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, order=True)
class Window:
    """A half-open UTC interval ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime):
                raise WindowError(f"window {name} must be a datetime, got {type(value).__name__}")
            if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
                raise WindowError(f"window {name} {value.isoformat()} has no timezone")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise WindowError(
                f"window end {self.end.isoformat()} must be after its start {self.start.isoformat()}"
            )

    @classmethod
    def parse(
        cls,
        start: str | datetime,
        end: str | datetime,
        *,
        max_span: timedelta | None = DEFAULT_MAX_WINDOW,
    ) -> Window:
        """Build a window from two ISO timestamps, refusing spans longer than ``max_span``."""
        window = cls(parse_timestamp(start, name="window start"), parse_timestamp(end, name="window end"))
        if max_span is not None and window.span > max_span:
            raise WindowError(
                f"window of {_human(window.span)} is larger than the maximum of {_human(max_span)}; "
                "split it or raise max_window in the configuration"
            )
        return window

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def widened(self, grace: timedelta) -> Window:
        """The range ``[start - grace, end + grace)`` where a key's rows are looked for."""
        try:
            return Window(self.start - grace, self.end + grace)
        except OverflowError:  # a window at year 1 or 9999: a WindowError, not a crash
            raise WindowError(
                f"window {self} is too close to the limits of the calendar to be widened by {grace}"
            ) from None

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def cycles(self) -> list[Cycle]:
        """The hourly cycles that overlap the window, in order."""
        return list(self.iter_cycles())

    def iter_cycles(self) -> Iterator[Cycle]:
        cursor = floor_cycle(self.start)
        while cursor < self.end:
            yield Cycle(cursor)
            cursor += CYCLE

    def as_dict(self) -> dict[str, str]:
        return {"window_start": self.start.isoformat(), "window_end": self.end.isoformat()}

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True, order=True)
class Cycle:
    """One hourly cycle of ``billing_gateway_reconciliation``: ``[start, start + 1h)``."""

    start: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise WindowError(f"cycle start {self.start.isoformat()} has no timezone")
        aligned = floor_cycle(self.start)
        if aligned != self.start:
            raise WindowError(f"cycle start {self.start.isoformat()} is not on the hour")
        object.__setattr__(self, "start", aligned)

    @classmethod
    def containing(cls, moment: datetime) -> Cycle:
        return cls(floor_cycle(moment))

    @property
    def end(self) -> datetime:
        return self.start + CYCLE

    @property
    def window(self) -> Window:
        return Window(self.start, self.end)

    def __str__(self) -> str:
        return self.start.strftime("%Y-%m-%dT%H:00Z")


def cycles_between(last_end: datetime | None, reference: datetime) -> int | None:
    """Whole hourly cycles from ``last_end`` to ``reference``; ``None`` when never reconciled."""
    if last_end is None:
        return None
    delta = reference - last_end
    if delta <= timedelta(0):
        return 0
    return int(delta // CYCLE)


def _human(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    if hours == int(hours):
        return f"{int(hours)} hours"
    return f"{hours:.2f} hours"
