"""Reconciliation events (Kafka topic ``reconciliation.events``): parse, classify, summarise.

Runbook, Investigação step 3 ("Integridade de Dados"): "Verificar tópicos Kafka
(reconciliation.events) para mensagens com erro". The reconciliation worker publishes
one JSON event per step of a cycle::

    {"psp": "stripe", "cycle_start": "2026-11-20T10:00:00Z",
     "event": "reconciliation.failed", "status": "error", "error_type": "psp_timeout",
     "message": "statement API did not answer", "transaction_id": 123}

Pure domain: no Airflow, no Kafka client. The hook reads the topic and hands every
message (partition, offset, timestamp, raw value) to :class:`EventsTally`, which
decides what the message is and keeps the counts and samples; the result is an
:class:`EventsInspection`. :func:`start_offset` decides where a partition is read from.

Rules:

- the window applies to the Kafka message timestamp, half-open ``[start, end)``;
  messages outside it (or without a timestamp) are counted in ``outside_window`` only;
- a JSON object whose ``psp`` is another PSP is counted in ``other_psps`` and not
  looked at further: another PSP's events, well-formed or not, are not this
  investigation's business;
- anything else that is not a valid event is counted in ``malformed`` with a sample of
  its raw text; a bad message never stops the inspection;
- ``error_type`` and ``transaction_id`` may be null or absent; the other fields are
  required, ``status`` is ``ok`` or ``error``;
- samples are the earliest messages of the window (by timestamp, partition, offset), so
  the same topic gives the same samples whatever order the partitions are read in.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_recon_provider.reconciliation.errors import DependencyUnavailableError, ReconError, WindowError
from airflow_recon_provider.reconciliation.window import Window, parse_timestamp

DEFAULT_TOPIC = "reconciliation.events"

#: Every field of an event; ``error_type`` and ``transaction_id`` may be null or absent.
EVENT_FIELDS: tuple[str, ...] = (
    "psp",
    "cycle_start",
    "event",
    "status",
    "error_type",
    "message",
    "transaction_id",
)
REQUIRED_FIELDS: tuple[str, ...] = ("psp", "cycle_start", "event", "status", "message")
STATUSES: tuple[str, ...] = ("ok", "error")

#: Group of error events whose ``error_type`` is null, absent or empty.
UNSPECIFIED_ERROR = "unspecified"

#: Longest raw text kept in a malformed sample, and longest event message kept in a sample.
RAW_EXCERPT_CHARS = 300
MESSAGE_EXCERPT_CHARS = 500

#: What Kafka answers to a lookup by time when no message is at or after that time.
OFFSET_END = -1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class KafkaUnavailableError(DependencyUnavailableError):
    """The Kafka cluster could not be reached, or did not answer within the time allowed."""


class EventsTimeoutError(KafkaUnavailableError):
    """The cluster answered, but the window could not be read within the time allowed."""


class EventsTopicError(ReconError):
    """The events topic cannot be read: it does not exist or the connection may not read it."""


class MalformedEventError(ReconError):
    """One message is not a reconciliation event (counted, never fatal to an inspection)."""


# -- time ------------------------------------------------------------------------------------


def to_millis(moment: datetime) -> int:
    """Kafka timestamp (ms since the epoch) of ``moment``, rounded down."""
    return (moment - _EPOCH) // _MS


def from_millis(millis: int) -> datetime:
    """UTC datetime of a Kafka timestamp, exact to the millisecond."""
    return _EPOCH + millis * _MS


def start_offset(
    *, low: int, high: int, by_time: int, last_timestamp: int | None, window_start: int
) -> int | None:
    """Offset a partition is read from for a window starting at ``window_start`` (ms), or
    ``None`` when the partition holds nothing for the window.

    :param low: the partition's low watermark (first offset still kept).
    :param high: its high watermark (offset of the next message to be written).
    :param by_time: the broker's answer to a lookup by ``window_start``: the first offset
        whose timestamp is at or after it, or :data:`OFFSET_END` when there is none.
    :param last_timestamp: timestamp (ms) of the partition's last message, when known; only
        consulted when the broker answered :data:`OFFSET_END`.
    :param window_start: start of the window, ms since the epoch.
    """
    if high <= low:
        return None
    if by_time >= 0:
        return max(by_time, low) if by_time < high else None
    # "Nothing at or after the start" is trusted when the last message agrees. A broker
    # that cannot look offsets up by time (old message formats, librdkafka's mock
    # cluster) answers the same; then the partition is scanned and filtered by time.
    if last_timestamp is not None and last_timestamp < window_start:
        return None
    return low


# -- one event -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReconciliationEvent:
    """One valid message of ``reconciliation.events``."""

    psp: str
    cycle_start: datetime
    event: str
    status: str
    error_type: str | None
    message: str
    transaction_id: int | None

    @property
    def is_error(self) -> bool:
        return self.status == "error"

    @property
    def error_group(self) -> str:
        return self.error_type or UNSPECIFIED_ERROR


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "boolean", int: "integer", float: "number", str: "text", list: "array", dict: "object"}
    return f"{_excerpt(repr(value), 60)} ({kind.get(type(value), type(value).__name__)})"


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def decode_event(raw: bytes | str | None) -> dict[str, Any]:
    """The JSON object of a message value, or :class:`MalformedEventError`."""
    if raw is None or len(raw) == 0:
        raise MalformedEventError("empty message")
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEventError("not UTF-8 text") from None
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise MalformedEventError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedEventError(f"not a JSON object: got {_describe(document)}")
    return document


def _text(document: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = document[key]
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise MalformedEventError(
            f"{key} must be a {'' if allow_empty else 'non-empty '}text, got {_describe(value)}"
        )
    return value


def event_from_dict(document: dict[str, Any]) -> ReconciliationEvent:
    """Validate a decoded event; :class:`MalformedEventError` names the first problem."""
    missing = [key for key in REQUIRED_FIELDS if key not in document]
    if missing:
        raise MalformedEventError(f"missing field(s) {', '.join(missing)}")
    psp = _text(document, "psp")
    event = _text(document, "event")
    message = _text(document, "message", allow_empty=True)
    status = document["status"]
    if status not in STATUSES:
        raise MalformedEventError(f"status must be one of {', '.join(STATUSES)}, got {_describe(status)}")
    raw_cycle = document["cycle_start"]
    if not isinstance(raw_cycle, str):
        raise MalformedEventError(f"cycle_start must be an ISO 8601 text, got {_describe(raw_cycle)}")
    try:
        cycle_start = parse_timestamp(raw_cycle, name="cycle_start")
    except WindowError as exc:
        raise MalformedEventError(str(exc)) from None
    error_type = document.get("error_type")
    if error_type is not None and not isinstance(error_type, str):
        raise MalformedEventError(f"error_type must be a text or null, got {_describe(error_type)}")
    transaction_id = document.get("transaction_id")
    # bool is an int subclass in Python: true is not transaction 1
    if transaction_id is not None and (
        isinstance(transaction_id, bool) or not isinstance(transaction_id, int)
    ):
        raise MalformedEventError(
            f"transaction_id must be an integer or null, got {_describe(transaction_id)}"
        )
    return ReconciliationEvent(
        psp=psp,
        cycle_start=cycle_start,
        event=event,
        status=status,
        error_type=error_type if error_type and error_type.strip() else None,
        message=message,
        transaction_id=transaction_id,
    )


def parse_event(raw: bytes | str | None) -> ReconciliationEvent:
    """Decode and validate one message value."""
    return event_from_dict(decode_event(raw))


# -- samples and the inspection --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventSample:
    """An error event kept as an example, with where it is in the topic."""

    partition: int
    offset: int
    timestamp: datetime
    event: ReconciliationEvent

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat(),
            "cycle_start": self.event.cycle_start.isoformat(),
            "event": self.event.event,
            "error_type": self.event.error_type,
            "message": _excerpt(self.event.message, MESSAGE_EXCERPT_CHARS),
            "transaction_id": self.event.transaction_id,
        }


@dataclass(frozen=True, slots=True)
class MalformedSample:
    """A message that is not a valid event: why, and the start of its raw text."""

    partition: int
    offset: int
    timestamp: datetime
    reason: str
    raw: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat(),
            "reason": self.reason,
            "raw": self.raw,
        }


@dataclass(frozen=True)
class ErrorGroup:
    """Error events of one ``error_type``."""

    error_type: str
    count: int
    sample: tuple[EventSample, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sample": [s.as_dict() for s in self.sample]}


@dataclass(frozen=True)
class EventsInspection:
    """What ``reconciliation.events`` says about one PSP and window.

    ``total_read = for_psp + other_psps + malformed + outside_window`` and
    ``for_psp = ok + errors``. ``truncated`` is true when the inspection stopped at its
    message limit before the end of the window: the counts are then a lower bound.
    """

    psp: str
    window: Window
    topic: str
    total_read: int
    for_psp: int
    ok: int
    errors_by_type: dict[str, ErrorGroup]
    malformed: int
    malformed_sample: tuple[MalformedSample, ...]
    other_psps: int
    outside_window: int
    partitions_read: int
    truncated: bool

    @property
    def errors(self) -> int:
        return sum(group.count for group in self.errors_by_type.values())

    @property
    def has_errors(self) -> bool:
        """Error events of the PSP, or messages nobody can read: both need a look."""
        return self.errors > 0 or self.malformed > 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (XCom, reports); error types by count, largest first."""
        groups = sorted(self.errors_by_type.values(), key=lambda g: (-g.count, g.error_type))
        return {
            "psp": self.psp,
            "topic": self.topic,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "total_read": self.total_read,
            "for_psp": self.for_psp,
            "ok": self.ok,
            "errors": self.errors,
            "errors_by_type": {g.error_type: g.as_dict() for g in groups},
            "malformed": self.malformed,
            "malformed_sample": [s.as_dict() for s in self.malformed_sample],
            "other_psps": self.other_psps,
            "outside_window": self.outside_window,
            "partitions_read": self.partitions_read,
            "truncated": self.truncated,
        }


_SampleKey = tuple[int, int, int]


@dataclass
class _Earliest:
    """The ``size`` earliest items seen, by (timestamp, partition, offset)."""

    size: int
    count: int = 0
    items: list[tuple[_SampleKey, Any]] = field(default_factory=list)

    def offer(self, key: _SampleKey, make: Any) -> None:
        self.count += 1
        if self.size <= 0 or (len(self.items) >= self.size and key >= self.items[-1][0]):
            return
        bisect.insort(self.items, (key, make()), key=lambda item: item[0])
        del self.items[self.size :]

    def values(self) -> tuple[Any, ...]:
        return tuple(item for _, item in self.items)


class EventsTally:
    """Counts and samples of the messages of one inspection (mutable, single use).

    :param psp: the PSP under investigation.
    :param window: the reconciliation window; applied to the message timestamps.
    :param sample_size: most messages kept as examples per error type, and of malformed ones.
    """

    def __init__(self, psp: str, window: Window, *, sample_size: int = 5) -> None:
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 0:
            raise ValueError(f"sample_size must be a whole number of at least 0, got {sample_size!r}")
        self.psp = psp
        self.window = window
        self.sample_size = sample_size
        self.start_ms = to_millis(window.start)
        self.end_ms = to_millis(window.end)
        self.total_read = 0
        self.ok = 0
        self.other_psps = 0
        self.outside_window = 0
        self._errors: dict[str, _Earliest] = {}
        self._malformed = _Earliest(sample_size)

    def is_past_window(self, timestamp: int | None) -> bool:
        """Whether a message with this timestamp (ms) is at or after the window's end."""
        return timestamp is not None and timestamp >= self.end_ms

    def add(self, *, partition: int, offset: int, timestamp: int | None, value: bytes | str | None) -> None:
        """Count one message read from the topic.

        :param timestamp: the message timestamp in ms, ``None`` when it has none.
        """
        self.total_read += 1
        moment = None if timestamp is None or timestamp < 0 else from_millis(timestamp)
        if moment is None or not self.window.contains(moment):
            self.outside_window += 1
            return
        key = (timestamp, partition, offset)
        try:
            document = decode_event(value)
            psp = document.get("psp")
            if isinstance(psp, str) and psp.strip() and psp != self.psp:
                self.other_psps += 1
                return
            event = event_from_dict(document)
        except MalformedEventError as exc:
            reason = str(exc)
            self._malformed.offer(
                key, lambda: MalformedSample(partition, offset, moment, reason, _raw_excerpt(value))
            )
            return
        if not event.is_error:
            self.ok += 1
            return
        group = self._errors.setdefault(event.error_group, _Earliest(self.sample_size))
        group.offer(key, lambda: EventSample(partition, offset, moment, event))

    def result(
        self, *, topic: str = DEFAULT_TOPIC, partitions_read: int, truncated: bool
    ) -> EventsInspection:
        errors = {
            name: ErrorGroup(name, tally.count, tally.values())
            for name, tally in sorted(self._errors.items())
        }
        return EventsInspection(
            psp=self.psp,
            window=self.window,
            topic=topic,
            total_read=self.total_read,
            for_psp=self.ok + sum(group.count for group in errors.values()),
            ok=self.ok,
            errors_by_type=errors,
            malformed=self._malformed.count,
            malformed_sample=self._malformed.values(),
            other_psps=self.other_psps,
            outside_window=self.outside_window,
            partitions_read=partitions_read,
            truncated=truncated,
        )


def _raw_excerpt(value: bytes | str | None) -> str:
    if value is None:
        return ""
    text = bytes(value).decode("utf-8", errors="replace") if not isinstance(value, str) else value
    return _excerpt(text, RAW_EXCERPT_CHARS)
