"""Reconciliation windows and the hourly cycles of the reconciliation schedule.

Runbook, Investigation step 1 ("Validar Escopo"): the affected PSP and period.
Windows are half-open ``[start, end)``, timezone-aware, and UTC inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from airflow_recon_provider.reconciliation.errors import WindowError
from airflow_recon_provider.reconciliation.i18n import N_, _, current_language

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


# -- windows typed by people (the remediation forms) -------------------------------------------

#: the time zone finance reads (the runbook's team is in São Paulo); windows stay UTC inside
LOCAL_ZONE = "America/Sao_Paulo"
#: a timestamp a person types: date, hours and minutes, optional seconds, and always its zone
#: (``Z`` or an offset) — a time without a zone is ambiguous for money
ZONED_TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})$"
#: how the format is said to people (translated where it is shown: ``_(ZONED_TIMESTAMP_FORMAT)``)
ZONED_TIMESTAMP_FORMAT = N_("YYYY-MM-DDTHH:MMZ (UTC) or with the offset, e.g. 2026-12-06T19:00-03:00")
_START = N_("window start")
_END = N_("window end")


def max_window_hours(max_span: timedelta) -> int:
    """The largest whole number of hours a window may span."""
    return max(1, int(max_span // timedelta(hours=1)))


def _zoned(value: str | datetime, label: str) -> datetime:
    import re

    fmt = _(ZONED_TIMESTAMP_FORMAT)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise WindowError(
                _(
                    "%(label)s: the date and time has no time zone; use the format %(format)s",
                    label=_(label),
                    format=fmt,
                )
            )
        return value.astimezone(UTC)
    text = str(value).strip()
    if not re.match(ZONED_TIMESTAMP_PATTERN, text):
        raise WindowError(
            _(
                "%(label)s %(value)s is not in the format %(format)s",
                label=_(label),
                value=repr(text),
                format=fmt,
            )
        )
    try:
        return parse_timestamp(text.replace(" ", "T", 1), name=label)
    except WindowError:
        raise WindowError(
            _(
                "%(label)s %(value)s is not a valid date and time (%(format)s)",
                label=_(label),
                value=repr(text),
                format=fmt,
            )
        ) from None


def _hours_text(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    if hours == int(hours):
        return f"{int(hours)} h"
    text = f"{hours:.2f} h"
    return text if current_language() == "en" else text.replace(".", ",")


def resolve_form_window(
    start: str | datetime | None,
    end: str | datetime | None,
    hours: int | str | None,
    *,
    max_span: timedelta | None = DEFAULT_MAX_WINDOW,
) -> Window:
    """The window a person asked for: a start with its zone and either an end (exclusive)
    or a duration in whole hours. Every problem raises :class:`WindowError` with a sentence,
    in the language in force (Brazilian Portuguese by default), that says what is wrong and
    what is expected — the text the run's note and the dashboard show."""
    blank = lambda value: value is None or (isinstance(value, str) and not value.strip())  # noqa: E731
    if blank(start):
        raise WindowError(_("give the window start (%(format)s)", format=_(ZONED_TIMESTAMP_FORMAT)))
    begin = _zoned(start, _START)  # type: ignore[arg-type]
    duration: timedelta | None = None
    if not blank(hours):
        try:
            count = int(str(hours).strip())
        except ValueError:
            raise WindowError(
                _("duration %(value)s is not a whole number of hours", value=repr(hours))
            ) from None
        if count < 1:
            raise WindowError(_("the duration must be at least 1 hour, got %(count)s", count=count))
        duration = timedelta(hours=count)
    if blank(end) and duration is None:
        raise WindowError(_("give the window end or the duration in hours"))
    finish = begin + duration if blank(end) else _zoned(end, _END)  # type: ignore[arg-type, operator]
    if duration is not None and finish - begin != duration:
        raise WindowError(
            _(
                "the window end (%(end)s) does not match the duration of %(hours)s from the start "
                "(%(start)s); give only one of the two",
                end=_utc_text(finish),
                hours=_hours_text(duration),
                start=_utc_text(begin),
            )
        )
    if finish <= begin:
        raise WindowError(
            _(
                "the window end (%(end)s) is before or equal to the start (%(start)s): the end must "
                "be after the start",
                end=_utc_text(finish),
                start=_utc_text(begin),
            )
        )
    window = Window(begin, finish)
    if max_span is not None and window.span > max_span:
        if max_span >= timedelta(days=2):
            raise WindowError(
                _(
                    "the window of %(span)s exceeds the maximum of %(maximum)s (%(days)s days): split "
                    "it into smaller windows",
                    span=_hours_text(window.span),
                    maximum=_hours_text(max_span),
                    days=max_span.days,
                )
            )
        raise WindowError(
            _(
                "the window of %(span)s exceeds the maximum of %(maximum)s: split it into smaller windows",
                span=_hours_text(window.span),
                maximum=_hours_text(max_span),
            )
        )
    return window


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def window_in_both_zones(window: Window, zone: str = LOCAL_ZONE) -> str:
    """The window as people read it: in UTC and in ``zone`` (America/Sao_Paulo), e.g.
    ``2026-12-06 22:00 a 2026-12-07 01:00 UTC (19:00 a 22:00 de 06/12/2026 em America/Sao_Paulo, 3 h)``."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    a, b = window.start.astimezone(tz), window.end.astimezone(tz)
    date = "%Y-%m-%d" if current_language() == "en" else "%d/%m/%Y"
    common = {
        "start": f"{window.start:%Y-%m-%d %H:%M}",
        "end": f"{window.end:%Y-%m-%d %H:%M}",
        "zone": zone,
        "hours": _hours_text(window.span),
    }
    if a.date() == b.date():
        return _(
            "%(start)s to %(end)s UTC (%(local_start)s to %(local_end)s on %(date)s in %(zone)s, %(hours)s)",
            local_start=f"{a:%H:%M}",
            local_end=f"{b:%H:%M}",
            date=a.strftime(date),
            **common,
        )
    return _(
        "%(start)s to %(end)s UTC (%(local_start)s to %(local_end)s in %(zone)s, %(hours)s)",
        local_start=a.strftime(f"{date} %H:%M"),
        local_end=b.strftime(f"{date} %H:%M"),
        **common,
    )
