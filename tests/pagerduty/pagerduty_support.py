"""Helpers of the PagerDuty tests (fixtures in ``conftest.py``)."""

from __future__ import annotations

import json

#: a made-up integration key (32 characters, as the Events API wants); the tests look for it
#: where it must never be (timeline, logs, XCom)
ROUTING_KEY = "R0uTiNgKeY-s3cr3t-pagerduty-0032"
assert len(ROUTING_KEY) == 32
PSPS = ["stripe", "adyen"]


def pagerduty_connection(url: str, *, key: str = ROUTING_KEY, **extra: object) -> str:
    """``AIRFLOW_CONN_PAGERDUTY_RECON``: type pagerduty_events, the stand-in as host, no waiting
    between the (3) attempts."""
    return json.dumps(
        {
            "conn_type": "pagerduty_events",
            "host": url,
            "password": key,
            "extra": {"backoff_seconds": 0, "max_attempts": 3, "timeout": 5, **extra},
        }
    )


def paging_events(db, incident_id: str) -> list[tuple[str, dict]]:
    """The incident's ``communication.pagerduty`` events: (outcome, details)."""
    return db.execute(
        "SELECT outcome, details FROM recon.incident_events WHERE incident_id = %s"
        " AND step = 'communication.pagerduty' ORDER BY id",
        (incident_id,),
    ).fetchall()


def whole_timeline_text(db) -> str:
    rows = db.execute("SELECT step, outcome, actor, details::text FROM recon.incident_events").fetchall()
    return "\n".join(" | ".join(str(c) for c in row) for row in rows)
