"""The artifact store: every file the runbook produces (snapshot, dry-run CSV, PSP ticket,
closing report, release record), written once to Airflow's object storage and recorded in
``recon.artifacts`` so that anyone can open it from the dashboard, whichever worker wrote it.

Where (the ``[recon]`` section of the Airflow configuration, registered by the provider, so
``AIRFLOW__RECON__ARTIFACTS_BASE_URL`` and friends work):

- ``artifacts_base_url``: ``s3://bucket/prefix`` (or any scheme an Airflow provider registers
  a filesystem for: ``gs://``, ``abfs://`` ...) in production; ``file:///a/shared/disk`` on a
  single host. Empty: ``$RECON_ARTIFACTS_DIR`` (a local directory) when that is set, else
  ``file://$AIRFLOW_HOME/recon-artifacts``.
- ``artifacts_conn_id``: the Airflow connection of that storage (``aws`` type for ``s3://``:
  key, secret and ``endpoint_url`` in its extra for an S3-compatible server); empty for
  ``file://``.
- ``dashboard_base_url``: where people open the artifacts: links are
  ``<dashboard_base_url>/artifacts/<id>``. Empty: ``[api] base_url`` + ``/recon``.

Layout: ``<base>/<dag_id>/<run_id>/<name>`` (each part made path-safe by :func:`safe_name`).

Each object is written **once and atomically**: on ``file://`` into a temporary sibling
that is then hard-linked (or renamed) into place, so a reader never sees half a file and an
existing file is never replaced; elsewhere in one put of the whole object (an object store
shows an object only once its upload completed). Writing the same name again with identical
bytes (a retried task) returns the same record; different bytes raise
:class:`ArtifactConflictError` — evidence is never overwritten. Operators whose content is a
fresh observation (a snapshot, a report with its generation time) keep the first try's
object and store the retry's beside it (``publish_artifact(keep_retries=True)`` in
:mod:`airflow_recon_provider.operators._artifacts`).

What leaves a task (XCom, the incident timeline, the approval text, e-mails, Slack) is the
dashboard link with the name, size and SHA-256 (:meth:`ArtifactRecord.summary`), never a
worker path or a ``file://`` URL. Readers (the dashboard on the api-server) use
:func:`open_artifact` / :func:`read_bytes` with a record from ``recon.artifacts``
(:class:`~airflow_recon_provider.hooks.artifacts.ArtifactsHook`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.errors import ReconError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: the Airflow configuration section of the provider
CONFIG_SECTION = "recon"
#: the legacy environment variable: a local directory, the ``file://`` base when set
ARTIFACTS_ENV = "RECON_ARTIFACTS_DIR"
#: what ``recon.artifacts.kind`` may be (migration 7)
KINDS = ("snapshot", "dry_run", "psp_ticket", "closing_report", "closing_report_html", "release_record")
#: content types by file suffix
CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CHUNK = 1024 * 1024


class ArtifactError(ReconError):
    """The artifact store could not do what was asked (configuration, storage, record)."""


class ArtifactConflictError(ArtifactError):
    """An artifact of that name already exists with other bytes: it is never overwritten."""


class ArtifactNotFoundError(ArtifactError):
    """No such artifact (record or object)."""


# -- configuration -------------------------------------------------------------------------------


def _conf_get(key: str, section: str = CONFIG_SECTION) -> str:
    """A configuration value, ``""`` when unset (or when the configuration cannot be read)."""
    from airflow_recon_provider.configuration import option

    return option(key, section)


def _airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def _file_url(path: str | os.PathLike[str]) -> str:
    return "file://" + str(Path(path).expanduser().absolute())


def normalize_base_url(base: str | os.PathLike[str]) -> str:
    """``base`` as a URL without a trailing slash: a plain path becomes ``file://<abs path>``."""
    text = str(base).strip()
    if not text:
        raise ArtifactError("the artifacts base URL is empty")
    match = _SCHEME.match(text)
    if not match:
        return _file_url(text)
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme in ("file", "local"):
        return _file_url("/" + rest.lstrip("/"))
    rest = rest.rstrip("/")
    if not rest:
        raise ArtifactError(f"artifacts base URL {text!r} names no bucket or container")
    return f"{scheme}://{rest}"


def artifacts_base_url() -> str:
    """``[recon] artifacts_base_url``; else ``$RECON_ARTIFACTS_DIR`` as a local directory; else
    ``file://$AIRFLOW_HOME/recon-artifacts``."""
    configured = _conf_get("artifacts_base_url")
    if configured:
        return normalize_base_url(configured)
    legacy = os.environ.get(ARTIFACTS_ENV, "").strip()
    if legacy:
        return _file_url(legacy)
    return _file_url(_airflow_home() / "recon-artifacts")


def artifacts_conn_id() -> str | None:
    """``[recon] artifacts_conn_id`` (``None`` when empty)."""
    return _conf_get("artifacts_conn_id") or None


def dashboard_base_url() -> str:
    """``[recon] dashboard_base_url``, else ``[api] base_url`` + ``/recon`` (no trailing slash)."""
    configured = _conf_get("dashboard_base_url")
    if configured:
        return configured.rstrip("/")
    api = _conf_get("base_url", section="api") or "http://localhost:8080"
    return api.rstrip("/") + "/recon"


def artifact_link(artifact_id: int) -> str:
    """Where people open artifact ``artifact_id``: ``<dashboard_base_url>/artifacts/<id>``."""
    return f"{dashboard_base_url()}/artifacts/{int(artifact_id)}"


def safe_name(text: Any) -> str:
    """``text`` as one path component (run ids carry ``:`` and ``+``)."""
    return _UNSAFE.sub("_", str(text)).strip("._") or "_"


def content_type_of(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def is_local_url(url: str) -> bool:
    return not _SCHEME.match(url) or url.lower().startswith(("file://", "local://"))


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """An object in the store: where it is, how big, its SHA-256; ``created`` is false when
    it was already there with these bytes (a retry)."""

    url: str
    size_bytes: int
    sha256: str
    created: bool = True


@dataclass(frozen=True)
class ArtifactRecord:
    """One row of ``recon.artifacts``."""

    id: int
    dag_id: str
    run_id: str
    task_id: str
    psp: str | None
    incident_id: str | None
    kind: str
    name: str
    url: str
    conn_id: str | None
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime | None = None

    @property
    def link(self) -> str:
        """The dashboard link people open: ``<dashboard_base_url>/artifacts/<id>``."""
        return artifact_link(self.id)

    def summary(self) -> dict[str, Any]:
        """What XCom, timeline details and messages carry: the link, never the storage URL."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "link": self.link,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
        }

    def describe(self) -> str:
        """One line for people: ``name (12,345 bytes, sha256 0123456789ab…) <link>``."""
        return f"{self.name} ({self.size_bytes:,} bytes, sha256 {self.sha256[:12]}…) {self.link}"


# -- the store ---------------------------------------------------------------------------------


def _sha256_of_stream(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _sha256_of_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    with open(path, "rb") as handle:
        return _sha256_of_stream(handle)


class ArtifactStore:
    """Objects under one base URL: remote schemes through :class:`airflow.sdk.ObjectStoragePath`
    (the filesystem an Airflow provider registers for the scheme, with the connection);
    ``file://`` through the local filesystem directly, for the atomic hard link.

    :param base_url: ``file:///dir``, a plain directory, ``s3://bucket/prefix`` ...; default
        :func:`artifacts_base_url`.
    :param conn_id: the storage's Airflow connection; default ``[recon] artifacts_conn_id``
        (ignored for ``file://``).
    """

    def __init__(self, base_url: str | os.PathLike[str] | None = None, *, conn_id: str | None = None):
        self.base_url = normalize_base_url(base_url) if base_url is not None else artifacts_base_url()
        self.scheme = self.base_url.split("://", 1)[0]
        self.local = self.scheme == "file"
        if conn_id is None and not self.local:
            conn_id = artifacts_conn_id()
        self.conn_id = None if self.local else (conn_id or None)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.base_url!r}, conn_id={self.conn_id!r})"

    # -- where -------------------------------------------------------------------------------
    def url_for(self, dag_id: str, run_id: str, name: str) -> str:
        """The object's URL (without the connection): ``<base>/<dag_id>/<run_id>/<name>``."""
        return "/".join((self.base_url, safe_name(dag_id), safe_name(run_id), safe_name(name)))

    # -- write -------------------------------------------------------------------------------
    def put(
        self, dag_id: str, run_id: str, name: str, source: bytes | str | os.PathLike[str]
    ) -> StoredObject:
        """Write ``source`` (bytes, or a local file to copy) as ``<dag_id>/<run_id>/<name>``,
        once. Identical bytes already there: nothing written, ``created=False``. Other bytes
        already there: :class:`ArtifactConflictError`."""
        url = self.url_for(dag_id, run_id, name)
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            sha, size = hashlib.sha256(data).hexdigest(), len(data)
            local_source: str | None = None
        else:
            data = None
            local_source = os.fspath(source)
            sha, size = _sha256_of_file(local_source)
        if self.local:
            created = self._put_local(url, data, local_source, sha)
        else:
            created = self._put_remote(url, data, local_source, sha)
        return StoredObject(url=url, size_bytes=size, sha256=sha, created=created)

    def _put_local(self, url: str, data: bytes | None, source: str | None, sha: str) -> bool:
        target = _local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            return self._same_or_conflict(url, sha)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                if data is not None:
                    out.write(data)
                else:
                    with open(source, "rb") as src:  # type: ignore[arg-type]
                        shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o640)
            try:
                # a hard link never replaces an existing name: write-once even when two
                # writers race
                os.link(tmp_name, target)
            except FileExistsError:
                return self._same_or_conflict(url, sha)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # a filesystem without hard links: rename (checked just above)
                if target.exists():
                    return self._same_or_conflict(url, sha)
                os.replace(tmp_name, target)
            return True
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    def _put_remote(self, url: str, data: bytes | None, source: str | None, sha: str) -> bool:
        path = self.path(url)
        fs, key = path.fs, path.path
        with contextlib.suppress(Exception):
            fs.invalidate_cache(key)
        try:
            exists = fs.exists(key)
        except Exception as exc:
            raise ArtifactError(f"artifact store {self.base_url}: cannot check {url}: {exc}") from exc
        if exists:
            return self._same_or_conflict(url, sha)
        try:
            # one put of the whole object: it appears only once complete
            if data is not None:
                fs.pipe_file(key, data)
            else:
                fs.put_file(source, key)
        except Exception as exc:
            raise ArtifactError(f"artifact store {self.base_url}: cannot write {url}: {exc}") from exc
        with contextlib.suppress(Exception):
            fs.invalidate_cache(key)
        return True

    def _same_or_conflict(self, url: str, sha: str) -> bool:
        with self.open(url) as existing:
            found, _ = _sha256_of_stream(existing)
        if found != sha:
            raise ArtifactConflictError(
                f"artifact {url} already exists with other content (sha256 {found[:12]}…, new "
                f"{sha[:12]}…): evidence is never overwritten"
            )
        return False

    # -- read --------------------------------------------------------------------------------
    def path(self, url: str) -> ObjectStoragePath:
        """``url`` as an :class:`ObjectStoragePath` with this store's connection."""
        return _storage_path(url, self.conn_id)

    def open(self, url: str) -> IO[bytes]:
        """``url`` opened for binary reading (streamed)."""
        return _open_url(url, self.conn_id)

    def exists(self, url: str) -> bool:
        if is_local_url(url):
            return _local_path(url).is_file()
        path = self.path(url)
        with contextlib.suppress(Exception):
            path.fs.invalidate_cache(path.path)
        return path.exists()


def _local_path(url: str) -> Path:
    for prefix in ("file://", "local://"):
        if url.lower().startswith(prefix):
            return Path(url[len(prefix) :])
    return Path(url)


def _storage_path(url: str, conn_id: str | None) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    try:
        return ObjectStoragePath(url, conn_id=None if is_local_url(url) else conn_id)
    except ValueError as exc:
        scheme = url.split("://", 1)[0]
        raise ArtifactError(f"artifact {url}: {exc}{_provider_hint(scheme)}") from None


def _open_url(url: str, conn_id: str | None) -> IO[bytes]:
    if is_local_url(url):
        try:
            return open(_local_path(url), "rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"artifact {url} does not exist") from None
    path = _storage_path(url, conn_id)
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ArtifactNotFoundError(f"artifact {url} does not exist") from None


def _provider_hint(scheme: str) -> str:
    if scheme in ("s3", "s3a", "s3n"):
        return " (install the s3 extra: pip install 'airflow-recon-provider[s3]')"
    return f" (install the Airflow provider that registers the {scheme}:// filesystem)"


# -- reading, for the dashboard ------------------------------------------------------------------


def open_artifact(ref: ArtifactRecord | Mapping[str, Any] | str, *, conn_id: str | None = None) -> IO[bytes]:
    """A binary file object (streamed) of an artifact; the caller closes it (``with``).

    :param ref: an :class:`ArtifactRecord` (from :class:`ArtifactsHook`), a row mapping with
        ``url`` (and ``conn_id``), or the object's URL.
    :param conn_id: the storage connection; default the record's, else ``[recon]
        artifacts_conn_id``.

    Raises :class:`ArtifactNotFoundError` when the object is gone.
    """
    url, ref_conn = _url_of(ref)
    return _open_url(url, conn_id or ref_conn or artifacts_conn_id())


def read_bytes(ref: ArtifactRecord | Mapping[str, Any] | str, *, conn_id: str | None = None) -> bytes:
    """The whole content of an artifact (see :func:`open_artifact`)."""
    with open_artifact(ref, conn_id=conn_id) as handle:
        return handle.read()


def _url_of(ref: ArtifactRecord | Mapping[str, Any] | str) -> tuple[str, str | None]:
    if isinstance(ref, ArtifactRecord):
        return ref.url, ref.conn_id
    if isinstance(ref, Mapping):
        if not ref.get("url"):
            raise ArtifactError("the artifact has no url (pass a recon.artifacts record)")
        return str(ref["url"]), ref.get("conn_id")
    return str(ref), None


# -- writing, for operators: :func:`airflow_recon_provider.operators._artifacts.publish_artifact`
# (it records through the artifacts hook, which builds on this module) -----------------------


@contextlib.contextmanager
def spool_file(name: str) -> Iterator[Path]:
    """A temporary local file of this task to stream an artifact into before it is
    published (removed afterwards, whatever happens)."""
    folder = Path(tempfile.mkdtemp(prefix="recon-artifact-"))
    try:
        yield folder / f"{uuid.uuid4().hex}-{safe_name(name)}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = [
    "ARTIFACTS_ENV",
    "CONFIG_SECTION",
    "KINDS",
    "ArtifactConflictError",
    "ArtifactError",
    "ArtifactNotFoundError",
    "ArtifactRecord",
    "ArtifactStore",
    "StoredObject",
    "artifact_link",
    "artifacts_base_url",
    "artifacts_conn_id",
    "content_type_of",
    "dashboard_base_url",
    "normalize_base_url",
    "open_artifact",
    "read_bytes",
    "safe_name",
    "spool_file",
]
