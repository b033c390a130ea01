"""Encerramento 4: "Agendar revisão com financeiro para confirmar correções definitivas".

Closing an incident schedules a review with finance at the next business-day slot after the
closing moment (default 10:00 America/Sao_Paulo, 60 minutes; weekends and the configured
holidays skipped; the same day only when its slot is still ahead). The review is an
iCalendar invitation (``METHOD:REQUEST``, built with :mod:`icalendar`) attached to the
closing e-mail, with the closing report's dashboard link, a UID that is the same for every
try of the incident's closure (a retried close updates one calendar event, never adds a
second), ``DTSTART``/``DTEND`` with the slot's ``TZID`` and its ``VTIMEZONE``.

Configuration: the ``finance_review`` object of ``RECON_CONFIG``::

    "finance_review": {"time": "10:00", "timezone": "America/Sao_Paulo",
                       "duration_minutes": 60, "holidays": ["2026-12-25", "2027-01-01"]}

Pure domain code: no Airflow, no I/O. The review is recorded on the incident's timeline
(step :data:`REVIEW_STEP`, details :meth:`FinanceReview.as_details`) and read back from it
(:func:`scheduled_review`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_recon_provider.reconciliation.errors import ConfigError, ReconError
from airflow_recon_provider.reconciliation.i18n import _
from airflow_recon_provider.reconciliation.money import babel_locale

#: the timeline step of the scheduled review (runbook Encerramento)
REVIEW_STEP = "closure.finance_review"
DEFAULT_REVIEW_TIME = time(10, 0)
DEFAULT_REVIEW_TIMEZONE = "America/Sao_Paulo"
DEFAULT_REVIEW_DURATION = timedelta(minutes=60)
#: a slot is looked for this many days ahead at most (holidays could cover everything)
MAX_DAYS_AHEAD = 366
#: the organizer's product id in the invitation
PRODID = "-//airflow-recon-provider//revisao com financeiro//PT-BR"
UID_DOMAIN = "airflow-recon-provider"

_KEYS = frozenset({"time", "timezone", "duration_minutes", "holidays"})
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL = re.compile(r"[^@\s,;<>:]+@[^@\s,;<>:]+\.[^@\s,;<>:]+")
_INCIDENT_ID = re.compile(r"INCIDENT-[0-9]{1,18}")


class ReviewConfigError(ConfigError):
    """The ``finance_review`` configuration is invalid."""


class ReviewInputError(ReconError):
    """A review cannot be scheduled from what was given (naive time, bad address ...)."""


@dataclass(frozen=True)
class ReviewPolicy:
    """When reviews with finance take place.

    :param time: local start time of the slot (default 10:00).
    :param timezone: IANA time zone of the slot (default America/Sao_Paulo).
    :param duration: length of the review (default 60 minutes).
    :param holidays: local dates without reviews (besides Saturdays and Sundays).
    """

    time: time = DEFAULT_REVIEW_TIME
    timezone: str = DEFAULT_REVIEW_TIMEZONE
    duration: timedelta = DEFAULT_REVIEW_DURATION
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not isinstance(self.time, time) or self.time.tzinfo is not None:
            raise ReviewConfigError(f"finance_review.time must be a local time of day, got {self.time!r}")
        _zone(self.timezone)
        if not isinstance(self.duration, timedelta) or not (
            timedelta(minutes=1) <= self.duration <= timedelta(hours=24)
        ):
            raise ReviewConfigError(
                f"finance_review duration must be between 1 minute and 24 hours, got {self.duration!r}"
            )
        if not all(isinstance(d, date) and not isinstance(d, datetime) for d in self.holidays):
            raise ReviewConfigError("finance_review.holidays must hold dates")
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ReviewPolicy:
        """``RECON_CONFIG``'s ``finance_review`` object (``None``: the defaults)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ReviewConfigError(
                f"finance_review must be a JSON object such as "
                f'{{"time": "10:00", "timezone": "America/Sao_Paulo"}}, got {data!r}'
            )
        unknown = set(data) - _KEYS
        if unknown:
            raise ReviewConfigError(
                f"unknown key(s) {sorted(unknown)} in finance_review; expected {sorted(_KEYS)}"
            )
        kwargs: dict[str, Any] = {}
        if "time" in data:
            value = data["time"]
            match = _HH_MM.fullmatch(value) if isinstance(value, str) else None
            if match is None:
                raise ReviewConfigError(
                    f"finance_review.time {value!r} must be HH:MM (00:00 to 23:59), e.g. 10:00"
                )
            kwargs["time"] = time(int(match.group(1)), int(match.group(2)))
        if "timezone" in data:
            if not isinstance(data["timezone"], str):
                raise ReviewConfigError(
                    f"finance_review.timezone {data['timezone']!r} must be an IANA time zone name, "
                    "e.g. America/Sao_Paulo"
                )
            kwargs["timezone"] = data["timezone"]
        if "duration_minutes" in data:
            minutes = data["duration_minutes"]
            if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 24 * 60:
                raise ReviewConfigError(
                    f"finance_review.duration_minutes must be a whole number of minutes from 1 to 1440, "
                    f"got {minutes!r}"
                )
            kwargs["duration"] = timedelta(minutes=minutes)
        if "holidays" in data:
            kwargs["holidays"] = frozenset(_holidays(data["holidays"]))
        return cls(**kwargs)


def _zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ReviewConfigError(
            f"finance_review.timezone {name!r} must be an IANA time zone name, e.g. America/Sao_Paulo"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReviewConfigError(
            f"finance_review.timezone {name!r} is not an IANA time zone name, e.g. America/Sao_Paulo"
        ) from None


def _holidays(value: Any) -> list[date]:
    if not isinstance(value, list):
        raise ReviewConfigError(
            f'finance_review.holidays must be a list of dates such as ["2026-12-25"], got {value!r}'
        )
    days = []
    for position, item in enumerate(value, start=1):
        try:
            if not isinstance(item, str) or not _ISO_DATE.fullmatch(item):
                raise ValueError
            days.append(date.fromisoformat(item))
        except ValueError:
            raise ReviewConfigError(
                f"finance_review.holidays item {position} ({item!r}) is not a date YYYY-MM-DD"
            ) from None
    return days


@dataclass(frozen=True)
class ReviewSlot:
    """A review's start and end, in the policy's time zone."""

    start: datetime
    end: datetime

    @property
    def timezone(self) -> str:
        return str(self.start.tzinfo)


def next_review_slot(closed_at: datetime, policy: ReviewPolicy | None = None) -> ReviewSlot:
    """The first slot of ``policy`` that starts after ``closed_at``, on a business day.

    The closing day's slot when it is a business day and its slot is still ahead, else the
    next business day's (Saturdays, Sundays and the policy's holidays skipped).

    :param closed_at: when the incident was closed (timezone-aware).
    :param policy: when reviews take place; default 10:00 America/Sao_Paulo, 60 minutes.
    """
    policy = policy or ReviewPolicy()
    if not isinstance(closed_at, datetime) or closed_at.tzinfo is None or closed_at.utcoffset() is None:
        raise ReviewInputError(f"the closing moment must be a timezone-aware datetime, got {closed_at!r}")
    zone = policy.zone
    day = closed_at.astimezone(zone).date()
    for _day in range(MAX_DAYS_AHEAD + 1):
        if policy.is_business_day(day):
            # through UTC and back: a wall time skipped by a DST change becomes a real instant
            start = datetime.combine(day, policy.time, tzinfo=zone).astimezone(UTC).astimezone(zone)
            if start > closed_at:
                end = (start.astimezone(UTC) + policy.duration).astimezone(zone)
                return ReviewSlot(start=start, end=end)
        day += timedelta(days=1)
    raise ReviewConfigError(
        f"no business day for a review within {MAX_DAYS_AHEAD} days after {closed_at.isoformat()}: "
        "check finance_review.holidays"
    )


def review_uid(incident_id: str) -> str:
    """The invitation's UID: one per incident, so every try of its closure is one event."""
    if not isinstance(incident_id, str) or not _INCIDENT_ID.fullmatch(incident_id):
        raise ReviewInputError(f"incident id {incident_id!r} is not like INCIDENT-472")
    return f"{incident_id.lower()}-revisao-financeiro@{UID_DOMAIN}"


def check_addresses(addresses: Iterable[str], *, what: str) -> tuple[str, ...]:
    """Distinct e-mail addresses, in order; a malformed one is refused by name."""
    found: list[str] = []
    for address in addresses:
        text = address.strip() if isinstance(address, str) else address
        if not isinstance(text, str) or not _EMAIL.fullmatch(text):
            raise ReviewInputError(f"{what} {address!r} is not an e-mail address")
        if text.lower() not in {a.lower() for a in found}:
            found.append(text)
    return tuple(found)


def format_review_time(slot: ReviewSlot, *, locale: str | None = None) -> str:
    """``segunda-feira, 7 de dezembro de 2026, das 10:00 às 11:00 (America/Sao_Paulo)``; in
    English ``Monday, December 7, 2026, from 10:00 to 11:00 (America/Sao_Paulo)``."""
    from babel.dates import format_date, format_datetime, format_skeleton

    loc = babel_locale(locale)
    zone = ZoneInfo(slot.timezone)
    start_local, end_local = slot.start.astimezone(zone), slot.end.astimezone(zone)
    day = format_date(start_local.date(), format="full", locale=loc)
    start = format_datetime(start_local, "HH:mm", locale=loc)
    end = format_datetime(end_local, "HH:mm", locale=loc)
    if end_local.date() != start_local.date():
        end = _("%(time)s of %(date)s", time=end, date=format_skeleton("MMMMd", end_local, locale=loc))
    return _(
        "%(day)s, from %(start)s to %(end)s (%(timezone)s)",
        day=day,
        start=start,
        end=end,
        timezone=slot.timezone,
    )


def format_moment(moment: datetime, timezone: str, *, locale: str | None = None) -> str:
    """``4 de dezembro de 2026, 15:00 (America/Sao_Paulo)`` (``December 4, 2026, 15:00`` in
    English)."""
    from babel.dates import format_date, format_datetime

    loc = babel_locale(locale)
    local = moment.astimezone(ZoneInfo(timezone))
    day = format_date(local.date(), format="long", locale=loc)
    return f"{day}, {format_datetime(local, 'HH:mm', locale=loc)} ({timezone})"


@dataclass(frozen=True)
class FinanceReview:
    """The review with finance scheduled at an incident's closure.

    :param incident_id: the incident (``INCIDENT-<n>``).
    :param psp: its PSP.
    :param slot: when the review takes place.
    :param organizer: who sends the invitation (the finance e-mail's sender).
    :param attendees: finance and on-call addresses invited.
    :param report_link: the closing report's dashboard link (``<dashboard>/artifacts/<id>``).
    :param scheduled_at: when it was scheduled (the invitation's ``DTSTAMP``).
    :param closed_at: the closing moment the slot follows.
    """

    incident_id: str
    psp: str
    slot: ReviewSlot
    organizer: str
    attendees: tuple[str, ...]
    scheduled_at: datetime
    closed_at: datetime
    report_link: str | None = None

    def __post_init__(self) -> None:
        review_uid(self.incident_id)
        check_addresses([self.organizer], what="review organizer")
        object.__setattr__(self, "attendees", check_addresses(self.attendees, what="review attendee"))
        if not self.attendees:
            raise ReviewInputError(f"the review of {self.incident_id} has nobody to invite")
        for name in ("scheduled_at", "closed_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ReviewInputError(f"review {name} must be a timezone-aware datetime, got {value!r}")
        if self.report_link is not None and not re.fullmatch(r"https?://\S+", self.report_link):
            raise ReviewInputError(f"closing report link {self.report_link!r} is not an http(s) address")

    @property
    def uid(self) -> str:
        return review_uid(self.incident_id)

    @property
    def when(self) -> str:
        return format_review_time(self.slot)

    @property
    def summary(self) -> str:
        return _("Review with finance — %(incident)s (%(psp)s)", incident=self.incident_id, psp=self.psp)

    def outcome(self) -> str:
        """The timeline's words (in the language in force)."""
        text = _(
            "review scheduled for %(when)s with %(attendees)s",
            when=self.when,
            attendees=", ".join(self.attendees),
        )
        return text + (
            "; " + _("closing report: %(link)s", link=self.report_link) if self.report_link else ""
        )

    def description(self) -> str:
        lines = [
            _(
                "Review with finance of incident %(incident)s (PSP %(psp)s) to confirm the definitive "
                "corrections (runbook Billing Gateway — Falhas de Reconciliação, %(section)s).",
                incident=self.incident_id,
                psp=self.psp,
                section=_("Closure"),
            ),
            _("Incident closed at %(moment)s.", moment=format_moment(self.closed_at, self.slot.timezone)),
        ]
        if self.report_link:
            lines.append(_("Closing report: %(link)s", link=self.report_link))
        return "\n".join(lines)

    def as_details(self) -> dict[str, Any]:
        """JSON for the timeline event; :meth:`from_details` reads it back."""
        return {
            "uid": self.uid,
            "psp": self.psp,
            "start": self.slot.start.isoformat(),
            "end": self.slot.end.isoformat(),
            "timezone": self.slot.timezone,
            "organizer": self.organizer,
            "attendees": list(self.attendees),
            "report_link": self.report_link,
            "scheduled_at": self.scheduled_at.isoformat(),
            "closed_at": self.closed_at.isoformat(),
        }

    @classmethod
    def from_details(cls, incident_id: str, details: Mapping[str, Any]) -> FinanceReview:
        try:
            zone = _zone(details["timezone"])
            return cls(
                incident_id=incident_id,
                psp=str(details["psp"]),
                slot=ReviewSlot(
                    start=datetime.fromisoformat(details["start"]).astimezone(zone),
                    end=datetime.fromisoformat(details["end"]).astimezone(zone),
                ),
                organizer=details["organizer"],
                attendees=tuple(details["attendees"]),
                scheduled_at=datetime.fromisoformat(details["scheduled_at"]),
                closed_at=datetime.fromisoformat(details["closed_at"]),
                report_link=details.get("report_link"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReviewInputError(
                f"the review recorded on {incident_id} is unreadable ({type(exc).__name__}: {exc})"
            ) from None

    def to_ical(self) -> bytes:
        """The invitation (``text/calendar; method=REQUEST``): byte-identical for every send
        of the same review, so a retried close is the same event."""
        from icalendar import Calendar, Event, vCalAddress, vText

        calendar = Calendar()
        calendar.add("prodid", PRODID)
        calendar.add("version", "2.0")
        calendar.add("calscale", "GREGORIAN")
        calendar.add("method", "REQUEST")
        event = Event()
        event.add("uid", self.uid)
        event.add("dtstamp", self.scheduled_at.astimezone(UTC))
        event.add("dtstart", self.slot.start)
        event.add("dtend", self.slot.end)
        event.add("sequence", 0)
        event.add("status", "CONFIRMED")
        event.add("summary", self.summary)
        event.add("description", self.description())
        if self.report_link:
            event.add("url", self.report_link)
        organizer = vCalAddress(f"mailto:{self.organizer}")
        organizer.params["cn"] = vText("Reconciliação Billing Gateway")
        event.add("organizer", organizer)
        for address in self.attendees:
            attendee = vCalAddress(f"mailto:{address}")
            attendee.params["role"] = vText("REQ-PARTICIPANT")
            attendee.params["partstat"] = vText("NEEDS-ACTION")
            attendee.params["rsvp"] = vText("TRUE")
            event.add("attendee", attendee, encode=0)
        calendar.add_component(event)
        calendar.add_missing_timezones()
        return calendar.to_ical()

    @property
    def filename(self) -> str:
        return f"{self.incident_id}-revisao-financeiro.ics"


def schedule_review(
    *,
    incident_id: str,
    psp: str,
    closed_at: datetime,
    organizer: str,
    attendees: Sequence[str],
    scheduled_at: datetime,
    report_link: str | None = None,
    policy: ReviewPolicy | None = None,
) -> FinanceReview:
    """The review of an incident closed at ``closed_at`` (see :func:`next_review_slot`)."""
    return FinanceReview(
        incident_id=incident_id,
        psp=psp,
        slot=next_review_slot(closed_at, policy),
        organizer=organizer,
        attendees=tuple(attendees),
        scheduled_at=scheduled_at,
        closed_at=closed_at,
        report_link=report_link,
    )


def scheduled_review(incident_id: str, events: Iterable[Any]) -> FinanceReview | None:
    """The review recorded on an incident's timeline (the first one: a retried close keeps
    it), or ``None``. ``events`` are timeline events (``step``, ``details``)."""
    for event in events:
        if event.step == REVIEW_STEP and event.details.get("uid"):
            return FinanceReview.from_details(incident_id, event.details)
    return None


__all__ = [
    "DEFAULT_REVIEW_DURATION",
    "DEFAULT_REVIEW_TIME",
    "DEFAULT_REVIEW_TIMEZONE",
    "REVIEW_STEP",
    "FinanceReview",
    "ReviewConfigError",
    "ReviewInputError",
    "ReviewPolicy",
    "ReviewSlot",
    "check_addresses",
    "format_review_time",
    "next_review_slot",
    "review_uid",
    "schedule_review",
    "scheduled_review",
]
