"""The dashboard's incident and evidence routes, added to the app of ``dashboard_app``
(mounted at ``/recon``) with the same login and DAG read check as its other routes:

- ``GET /recon/incidents`` and ``GET /recon/api/incidents`` — incidents, open and closed,
  newest first, a page at a time (``page``, ``per_page``, filters ``psp`` and ``state``);
- ``GET /recon/incidents/{incident_id}`` and ``GET /recon/api/incidents/{incident_id}`` —
  one incident: timeline, corrections, tickets, artifacts, closing report;
- ``GET /recon/incidents/{incident_id}/closing-report`` — the closing report stored on the
  incident, as HTML (incidents closed before artifacts were kept in object storage);
- ``GET /recon/artifacts/{artifact_id}`` — the artifact itself, streamed from object
  storage by the API server (never a worker's disk);
- ``GET /recon/runs/{dag_id}/{run_id}/artifacts`` and its ``/recon/api/...`` twin — what a
  DAG run wrote.

Malformed ids answer 400, unknown ones 404, an unreadable database or store 503, each with
a sentence in ``[recon] language`` (pt-BR by default): every route renders inside
:func:`~airflow_recon_provider.i18n.language_scope`.
"""

# no ``from __future__ import annotations``: FastAPI reads the annotations of the route
# functions defined inside add_incident_routes (see dashboard_app)
import base64
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_recon_provider.i18n import _, language_scope
from airflow_recon_provider.plugins.dashboard_data import DashboardUnavailable
from airflow_recon_provider.plugins.dashboard_incidents import (
    ArtifactView,
    IncidentReader,
    parse_artifact_id,
    parse_list_params,
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.responses import Response

log = logging.getLogger(__name__)

#: bytes read from the store per chunk of the response
CHUNK = 256 * 1024
#: what an HTML document from the store (the closing report) may do in the browser: show
#: itself with its own styles; no script, no form, no request anywhere
REPORT_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSV_KINDS = frozenset({"snapshot", "dry_run", "psp_ticket"})


class StoreUnreadable(Exception):
    """The object store could not be opened for this artifact (503)."""


def _content_disposition(disposition: str, name: str) -> str:
    """``attachment; filename="x.csv"; filename*=UTF-8''x.csv`` (RFC 6266; the plain name is
    ASCII without quotes or control characters)."""
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name) or "artifact"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def artifact_headers(artifact: ArtifactView) -> tuple[str, dict[str, str]]:
    """The media type and headers an artifact is served with.

    CSV (snapshot, dry run, PSP ticket) is a download; the closing report in HTML is shown
    in the page, sandboxed; markdown is shown as plain text; a release record as JSON when it
    is JSON; anything else is a download. Size and SHA-256 are those recorded when it was
    written.
    """
    name = artifact.name
    ctype = (artifact.content_type or "").split(";")[0].strip().lower()
    if artifact.kind in _CSV_KINDS or ctype == "text/csv" or name.lower().endswith(".csv"):
        media, disposition = "text/csv; charset=utf-8", "attachment"
    elif artifact.kind == "closing_report_html" and ctype == "text/html":
        media, disposition = "text/html; charset=utf-8", "inline"
    elif artifact.kind == "closing_report" or ctype in {"text/markdown", "text/plain"}:
        media, disposition = "text/plain; charset=utf-8", "inline"
    elif ctype == "application/json":
        media, disposition = "application/json", "inline"
    else:
        media, disposition = "application/octet-stream", "attachment"
    headers = {
        "Content-Disposition": _content_disposition(disposition, name),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
        "Content-Security-Policy": REPORT_CSP,
        "X-Artifact-Id": str(artifact.id),
        "X-Artifact-Kind": artifact.kind,
    }
    if artifact.size_bytes is not None:
        headers["Content-Length"] = str(artifact.size_bytes)
        headers["X-Artifact-Size"] = str(artifact.size_bytes)
    if artifact.sha256:
        headers["X-Artifact-Sha256"] = artifact.sha256
        headers["ETag"] = f'"sha256-{artifact.sha256}"'
        try:
            digest = base64.b64encode(bytes.fromhex(artifact.sha256)).decode("ascii")
            headers["Repr-Digest"] = f"sha-256=:{digest}:"
        except ValueError:
            pass
    return media, headers


def open_from_store(artifact: ArtifactView) -> IO[bytes]:
    """The artifact's object, opened for reading through the artifact store's reader
    (:func:`airflow_recon_provider.artifacts.open_artifact`: ``ObjectStoragePath`` with the
    recorded connection); :class:`StoreUnreadable` says why it cannot be."""
    from airflow_recon_provider.artifacts import ArtifactNotFoundError, open_artifact

    try:
        return open_artifact(artifact.record)
    except ArtifactNotFoundError:
        raise StoreUnreadable(
            _(
                "The file of artifact %(id)s (%(name)s) was not found in the artifact store. The record "
                "exists but the object is gone: check the bucket or directory configured in [recon] "
                "artifacts_base_url.",
                id=artifact.id,
                name=artifact.name,
            )
        ) from None
    except Exception as exc:
        log.warning("artifact %s: the store cannot be read: %s", artifact.id, exc, exc_info=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreUnreadable(
            _(
                "The artifact store could not be read for artifact %(id)s (%(name)s): %(error)s. Try "
                "again; if it persists, check [recon] artifacts_base_url and the connection [recon] "
                "artifacts_conn_id of the API server.",
                id=artifact.id,
                name=artifact.name,
                error=first,
            )
        ) from None


def stream_verified(artifact: ArtifactView, handle: IO[bytes], *, first: bytes) -> Iterator[bytes]:
    """The object's bytes, checked against the size and SHA-256 recorded when it was written:
    a mismatch ends the response early (the browser sees an incomplete download), never a
    silently different file."""
    digest = hashlib.sha256()
    sent = 0
    try:
        chunk = first
        while chunk:
            sent += len(chunk)
            if artifact.size_bytes is not None and sent > artifact.size_bytes:
                raise OSError(f"artifact {artifact.id}: the stored object is larger than recorded")
            digest.update(chunk)
            yield chunk
            chunk = handle.read(CHUNK)
        if artifact.sha256 and digest.hexdigest() != artifact.sha256:
            raise OSError(
                f"artifact {artifact.id}: the stored object does not match its recorded SHA-256 "
                f"({digest.hexdigest()[:12]}… instead of {artifact.sha256[:12]}…)"
            )
        if artifact.size_bytes is not None and sent != artifact.size_bytes:
            raise OSError(f"artifact {artifact.id}: {sent} bytes stored, {artifact.size_bytes} recorded")
    except OSError:
        log.error("reconciliation dashboard: artifact %s served incomplete", artifact.id, exc_info=True)
        raise
    finally:
        handle.close()


#: the first path segment of these routes (inside the app, after ``/recon``)
EVIDENCE_PREFIXES = ("/incidents", "/artifacts", "/runs/")


def evidence_page_problem(path_in_app: str, status_code: int) -> "Response | None":
    """The page of an HTTP error (403 without permission, 404 of an unknown path...) raised
    before an incident or evidence page ran, in ``[recon] language``; ``None`` for the
    dashboard's other paths."""
    from fastapi.responses import HTMLResponse

    from airflow_recon_provider.plugins.dashboard_data import REMEDIATION_DAG_ID
    from airflow_recon_provider.plugins.dashboard_incidents_page import render_problem

    if not path_in_app.startswith(EVIDENCE_PREFIXES):
        return None
    root = "../" * path_in_app.count("/", 1) or "./"
    with language_scope():
        message = {
            403: _(
                "You may not read the DAG %(dag)s, so you may not see the incidents or the artifacts. "
                "Ask whoever administers Airflow for access.",
                dag=REMEDIATION_DAG_ID,
            ),
            404: _("This page does not exist."),
            405: _("This address only accepts reading (GET)."),
        }.get(status_code) or _("The request could not be served (HTTP %(status)s).", status=status_code)
        page = render_problem(message, status_code=status_code, root=root)
    return HTMLResponse(page, status_code=status_code)


def add_incident_routes(app: "FastAPI", *, incidents: IncidentReader, dependencies: Sequence[Any]) -> None:
    """Add the incident and evidence routes to the dashboard ``app``.

    :param incidents: reads incidents and artifacts.
    :param dependencies: the login and DAG read check of the dashboard's other routes.
    """
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

    from airflow_recon_provider.plugins.dashboard_incidents_page import (
        render_incident,
        render_incident_list,
        render_problem,
        render_run_artifacts,
    )

    deps = list(dependencies)

    def in_language(route: Callable[..., Any]) -> Callable[..., Any]:
        """Render the route in ``[recon] language``: its page, its errors and its JSON labels."""

        @functools.wraps(route)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with language_scope():
                return route(*args, **kwargs)

        return wrapper

    def problem(exc: DashboardUnavailable, *, root: str) -> HTMLResponse:
        return HTMLResponse(
            render_problem(exc.message, status_code=exc.status_code, root=root), status_code=exc.status_code
        )

    def problem_json(exc: DashboardUnavailable) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)

    def listing(page: str | None, per_page: str | None, psp: str | None, state: str | None) -> Any:
        number, size, psp_name, chosen = parse_list_params(page=page, per_page=per_page, psp=psp, state=state)
        return incidents.incidents(page=number, per_page=size, psp=psp_name, state=chosen)

    @app.get("/incidents", response_class=HTMLResponse, dependencies=deps)
    @in_language
    def incident_list_page(
        page: str | None = None, per_page: str | None = None, psp: str | None = None, state: str | None = None
    ) -> HTMLResponse:
        try:
            return HTMLResponse(render_incident_list(listing(page, per_page, psp, state)))
        except DashboardUnavailable as exc:
            return problem(exc, root="./")

    @app.get("/api/incidents", dependencies=deps)
    @in_language
    def incident_list_json(
        page: str | None = None, per_page: str | None = None, psp: str | None = None, state: str | None = None
    ) -> JSONResponse:
        try:
            return JSONResponse(listing(page, per_page, psp, state).as_dict())
        except DashboardUnavailable as exc:
            return problem_json(exc)

    @app.get("/incidents/{incident_id}", response_class=HTMLResponse, dependencies=deps)
    @in_language
    def incident_page(incident_id: str) -> HTMLResponse:
        try:
            return HTMLResponse(render_incident(incidents.detail(incident_id)))
        except DashboardUnavailable as exc:
            return problem(exc, root="../")

    @app.get("/api/incidents/{incident_id}", dependencies=deps)
    @in_language
    def incident_json(incident_id: str) -> JSONResponse:
        try:
            return JSONResponse(incidents.detail(incident_id).as_dict())
        except DashboardUnavailable as exc:
            return problem_json(exc)

    @app.get("/incidents/{incident_id}/closing-report", response_class=HTMLResponse, dependencies=deps)
    @in_language
    def stored_closing_report(incident_id: str) -> Any:
        from fastapi.responses import PlainTextResponse

        try:
            markdown, html = incidents.closing_report(incident_id)
        except DashboardUnavailable as exc:
            return problem(exc, root="../../")
        headers = {
            "Content-Security-Policy": REPORT_CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        }
        if html:
            return HTMLResponse(html, headers=headers)
        return PlainTextResponse(markdown or "", headers=headers)

    @app.get("/artifacts/{artifact_id}", dependencies=deps)
    @in_language
    def artifact_download(artifact_id: str) -> Any:
        try:
            artifact = incidents.artifact(parse_artifact_id(artifact_id))
        except DashboardUnavailable as exc:
            return problem(exc, root="../")
        try:
            handle = open_from_store(artifact)
        except StoreUnreadable as exc:
            return problem(DashboardUnavailable(str(exc), status_code=503), root="../")
        try:
            # the first read shows whether the store really answers (an S3 object opens lazily):
            # a failure here is still a clean 503 page, not a broken download
            first = handle.read(CHUNK)
        except Exception as exc:
            handle.close()
            log.warning("artifact %s: the store cannot be read: %s", artifact.id, exc, exc_info=True)
            message = _(
                "The artifact store failed reading artifact %(id)s (%(name)s): %(error)s. Try again.",
                id=artifact.id,
                name=artifact.name,
                error=(str(exc).strip().splitlines() or [type(exc).__name__])[0],
            )
            return problem(DashboardUnavailable(message, status_code=503), root="../")
        media, headers = artifact_headers(artifact)
        return StreamingResponse(
            stream_verified(artifact, handle, first=first), media_type=media, headers=headers
        )

    @app.get("/runs/{dag_id}/{run_id}/artifacts", response_class=HTMLResponse, dependencies=deps)
    @in_language
    def run_artifacts_page(dag_id: str, run_id: str) -> HTMLResponse:
        try:
            return HTMLResponse(render_run_artifacts(incidents.run_artifacts(dag_id, run_id)))
        except DashboardUnavailable as exc:
            return problem(exc, root="../../../")

    @app.get("/api/runs/{dag_id}/{run_id}/artifacts", dependencies=deps)
    @in_language
    def run_artifacts_json(dag_id: str, run_id: str) -> JSONResponse:
        try:
            return JSONResponse(incidents.run_artifacts(dag_id, run_id).as_dict())
        except DashboardUnavailable as exc:
            return problem_json(exc)


__all__ = [
    "REPORT_CSP",
    "StoreUnreadable",
    "add_incident_routes",
    "artifact_headers",
    "evidence_page_problem",
    "open_from_store",
]
