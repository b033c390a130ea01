"""A local PSP statements API for the tests (served by pytest-httpserver)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug import Request, Response


@dataclass
class FakePspApi:
    """Statements per PSP, served as ``GET /statements?psp=&from=&to=[&page=]``.

    ``statements[psp]`` is a list of pages (dicts, sent as JSON); ``failures[psp]`` is an
    HTTP status to answer instead; ``raw[psp]`` is a body sent as is. Every request is
    recorded in ``requests``.
    """

    statements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    before: Callable[[Request], None] | None = None

    def __call__(self, request: Request) -> Response:
        if self.before is not None:
            self.before(request)
        args = request.args.to_dict()
        self.requests.append({**args, "authorization": request.headers.get("Authorization")})
        psp = args.get("psp", "")
        if psp in self.failures:
            return Response("upstream exploded", status=self.failures[psp])
        if psp in self.raw:
            return Response(self.raw[psp], content_type="application/json")
        pages = self.statements.get(psp, [{"statement_id": f"{psp}-empty", "lines": []}])
        index = int(args["page"].removeprefix("p")) if "page" in args else 0
        return Response(json.dumps(pages[index]), content_type="application/json")

    def requests_for(self, psp: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("psp") == psp]


def paged(statement_id: str, lines: list[dict[str, Any]], per_page: int) -> list[dict[str, Any]]:
    """Split lines into pages linked by ``next_page`` tokens ``p1``, ``p2``, ..."""
    chunks = [lines[i : i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    pages = []
    for n, chunk in enumerate(chunks):
        page: dict[str, Any] = {"statement_id": statement_id, "lines": chunk}
        if n + 1 < len(chunks):
            page["next_page"] = f"p{n + 1}"
        pages.append(page)
    return pages
