"""Demo and test stand-in of PagerDuty's Events API v2: ``POST /v2/enqueue`` on 127.0.0.1.

It is **not** PagerDuty. It checks each event as the real API documents it and answers like
it: ``202 {"status": "success", "message": "Event processed", "dedup_key": ...}``, or
``400 {"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``.
Checked: a JSON object; ``routing_key`` of 32 characters; ``event_action`` trigger,
acknowledge or resolve; ``dedup_key`` text of at most 255 characters (required for
acknowledge and resolve); for a trigger, ``payload`` with ``summary`` (1 to 1024
characters), ``source``, ``severity`` (critical, error, warning or info), optional
``component``/``group``/``class`` text and ``custom_details``; ``links`` (``href``, optional
``text``) and ``images`` (``src``); no other top-level field.

It keeps PagerDuty's incidents by dedup key as the real service does: a trigger opens an
incident, a trigger with the key of an open (triggered or acknowledged) incident is added to
it (deduplicated), acknowledge and resolve move it, and a trigger after a resolve opens a new
one. Every event received is kept in :attr:`DemoPagerDuty.events`; :meth:`report` lists them
without the routing key.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from airflow_recon_provider.devtools._json_server import JsonServer

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
TOP_LEVEL = {"routing_key", "event_action", "dedup_key", "payload", "links", "images", "client", "client_url"}
PAYLOAD_FIELDS = {
    "summary",
    "source",
    "severity",
    "timestamp",
    "component",
    "group",
    "class",
    "custom_details",
}


def validate_event(event: Any) -> list[str]:
    """The errors PagerDuty would give for ``event`` (empty: valid)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors = [f"'{name}' is not a valid field" for name in sorted(set(event) - TOP_LEVEL)]
    key = event.get("routing_key")
    if not isinstance(key, str) or not key:
        errors.append("'routing_key' is missing or blank")
    elif len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(ACTIONS)})")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not dedup or len(dedup) > 255):
        errors.append("'dedup_key' must be a non-empty string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dedup is None:
        errors.append(f"'dedup_key' is required for event_action '{action}'")
    payload = event.get("payload")
    if action == "trigger":
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object")
        else:
            errors += _payload_errors(payload)
    elif payload is not None and not isinstance(payload, dict):
        errors.append("'payload' must be an object")
    for name, required in (("links", "href"), ("images", "src")):
        items = event.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            errors.append(f"'{name}' must be an array")
            continue
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get(required), str) or not item[required]:
                errors.append(f"'{name}[{n}].{required}' is missing or blank")
            elif "text" in item and not isinstance(item["text"], str):
                errors.append(f"'{name}[{n}].text' must be a string")
    return errors


def _payload_errors(payload: dict[str, Any]) -> list[str]:
    errors = [f"'payload.{name}' is not a valid field" for name in sorted(set(payload) - PAYLOAD_FIELDS)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        errors.append("Length of 'payload.summary' is incorrect (should be at most 1024 characters)")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"'payload.{name}' must be a string")
    return errors


@dataclass
class PagerDutyIncident:
    """One incident of the stand-in: what PagerDuty would show for a dedup key."""

    number: int
    dedup_key: str
    status: str
    summary: str
    severity: str
    events: list[str] = field(default_factory=list)

    @property
    def urgency(self) -> str:
        """The urgency a service whose urgency follows severity (PagerDuty's dynamic
        notifications) gives the incident: set when it opens, kept by deduplicated triggers."""
        return "high" if self.severity in ("critical", "error") else "low"


class DemoPagerDuty(JsonServer):
    """Stand-in of the Events API v2 (``POST /v2/enqueue``).

    :param fail_status: answer every event with this HTTP status (an outage) ...
    :param fail_times: ... only this many times, then normally (``None``: always).
    """

    name = "demo stand-in: PagerDuty Events API v2"

    def __init__(
        self, port: int | None = None, *, fail_status: int | None = None, fail_times: int | None = None
    ) -> None:
        super().__init__(port)
        self.fail_status = fail_status
        self.fail_times = fail_times
        self.failed = 0
        #: every event received, as received (``accepted`` and ``errors`` added)
        self.events: list[dict[str, Any]] = []
        self.incidents: list[PagerDutyIncident] = []

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: Any) -> Any:
        if method != "POST" or path.rstrip("/") != "/v2/enqueue":
            return 404, {"status": "not found", "message": f"no such endpoint {method} {path}"}
        with self.lock:
            if self.fail_status is not None and (self.fail_times is None or self.failed < self.fail_times):
                self.failed += 1
                self.events.append({"accepted": False, "http_status": self.fail_status, "errors": ["outage"]})
                return self.fail_status, {"status": "error", "message": "demo outage"}
            try:
                event = json.loads(body or b"null")
            except ValueError:
                self.events.append({"accepted": False, "http_status": 400, "errors": ["not JSON"]})
                return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": []}
            errors = validate_event(event)
            record = dict(event) if isinstance(event, dict) else {"body": event}
            record.update(accepted=not errors, errors=errors, http_status=400 if errors else 202)
            self.events.append(record)
            if errors:
                return 400, {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": errors,
                }
            key = event.get("dedup_key") or uuid.uuid4().hex
            record["dedup_key"] = key
            self._apply(event["event_action"], key, event.get("payload") or {})
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}

    def _apply(self, action: str, key: str, payload: dict[str, Any]) -> None:
        current = next((i for i in reversed(self.incidents) if i.dedup_key == key), None)
        if action == "trigger":
            if current is not None and current.status != "resolved":
                current.events.append("trigger (deduplicated)")
                return
            self.incidents.append(
                PagerDutyIncident(
                    number=len(self.incidents) + 1,
                    dedup_key=key,
                    status="triggered",
                    summary=str(payload.get("summary", "")),
                    severity=str(payload.get("severity", "")),
                    events=["trigger"],
                )
            )
            return
        if current is None or current.status == "resolved":
            return  # PagerDuty accepts it and does nothing: no open alert has that key
        current.status = "acknowledged" if action == "acknowledge" else "resolved"
        current.events.append(action)

    # -- what tests and the demo read ---------------------------------------------------------------
    def accepted(self, action: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e.get("accepted") and action in (None, e.get("event_action"))]

    def incidents_for(self, key: str) -> list[PagerDutyIncident]:
        with self.lock:
            return [i for i in self.incidents if i.dedup_key == key]

    def report(self) -> list[dict[str, Any]]:
        """One row per event received, without the routing key."""
        with self.lock:
            rows = []
            for event in self.events:
                payload = event.get("payload") or {}
                rows.append(
                    {
                        "action": event.get("event_action", "-"),
                        "dedup_key": event.get("dedup_key", "-"),
                        "severity": payload.get("severity", "-"),
                        "summary": payload.get("summary", ""),
                        "http_status": event.get("http_status"),
                        "errors": list(event.get("errors") or []),
                    }
                )
            return rows


__all__ = ["DemoPagerDuty", "PagerDutyIncident", "validate_event"]
