"""A local billing-gateway-core for the tests (served by pytest-httpserver).

``POST /payments/reconciliation`` answers from a script of responses (status, headers,
body, delay), then with the default ``202 {"job_id": "job-<n>", "status": "queued"}``.
Every request is recorded with its headers and JSON body.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug import Request, Response


@dataclass
class Scripted:
    status: int = 202
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakeBillingCore:
    script: list[Scripted] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: Request) -> Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "authorization": request.headers.get("Authorization"),
                "idempotency_key": request.headers.get("Idempotency-Key"),
                "content_type": request.headers.get("Content-Type"),
                "json": json.loads(request.get_data() or b"null"),
            }
        )
        answer = self.script.pop(0) if self.script else None
        if answer is None:
            body = {"job_id": f"job-{len(self.requests)}", "status": "queued"}
            return Response(json.dumps(body), status=202, content_type="application/json")
        if answer.delay:
            time.sleep(answer.delay)
        body = answer.body if isinstance(answer.body, str) else json.dumps(answer.body or {})
        return Response(body, status=answer.status, headers=answer.headers, content_type="application/json")
