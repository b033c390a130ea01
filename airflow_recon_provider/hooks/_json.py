"""JSON-able extras of the ``recon`` rows (timeline details, delivery responses): checked and
round-tripped, so what is stored is exactly what reads back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow_recon_provider.reconciliation.incidents import IncidentInputError


def json_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``details`` as stored in a ``jsonb`` column (datetimes as ISO text).

    :raises IncidentInputError: not a mapping, or not JSON-able.
    """
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise IncidentInputError(f"event details must be a mapping, got {type(details).__name__}")
    try:
        # a round trip: what is stored is exactly what reads back (datetimes as ISO text)
        return json.loads(json.dumps(dict(details), default=_json_default))
    except (TypeError, ValueError) as exc:
        raise IncidentInputError(f"event details are not JSON: {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


__all__ = ["json_details"]
