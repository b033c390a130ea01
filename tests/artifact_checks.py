"""Checks shared by the tests of the steps that write artifacts: what leaves a task (XCom,
the approval text, the incident timeline, e-mails and Slack) carries the artifact's
dashboard link, never a worker path or a ``file://`` URL; and the artifact read back the way
the dashboard reads it (``recon.artifacts`` + the object store), never from a worker disk.

Importable from any test module (``tests/`` is on ``sys.path`` through ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: an absolute POSIX path to a file, not the path part of a URL (``host:8080/recon/...``)
_FILE_PATH = re.compile(r"(?<![\w:/.%-])/(?:[\w.@+-]+/)+[\w.@+-]+\.(?:csv|md|html|json|part)\b")


#: the checkout and the Python environment: paths under them are code, not artifacts
_CODE_ROOTS = tuple(
    sorted(
        {str(Path(__file__).resolve().parents[1]), sys.prefix, os.path.realpath(sys.prefix)},
        key=len,
        reverse=True,
    )
)


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, bytes):
        yield where, value.decode("utf-8", "replace")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(str(key), f"{where}.<key>")
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, Iterable):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")
    elif value is not None and not isinstance(value, int | float | bool):
        yield where, str(value)


def assert_no_local_paths(*values: Any, roots: Iterable[Any] = (), what: str = "value") -> None:
    """Fail if any string in ``values`` (nested mappings and lists too) holds a ``file://``
    URL, a path under one of ``roots`` (the test's tmp dirs), under ``$AIRFLOW_HOME`` or the
    system temp directory, or any absolute path to a .csv/.md/.html/.json file."""
    bases = {str(r).rstrip("/") for r in roots if str(r).strip("/")}
    bases |= {os.environ.get("AIRFLOW_HOME", "").rstrip("/"), tempfile.gettempdir().rstrip("/")}
    bases.discard("")
    for i, value in enumerate(values):
        for where, text in _strings(value, f"{what}[{i}]"):
            assert "file://" not in text, f"{where} carries a file:// URL: {text[:500]!r}"
            # source locations in a collected traceback name code, not a file handed out; a
            # CI clone (and its .venv) may sit under the temp directory
            code_free = text
            for code in _CODE_ROOTS:
                code_free = code_free.replace(code, "<code>")
            for base in bases:
                assert base not in code_free, f"{where} carries a worker path under {base}: {text[:500]!r}"
            found = _FILE_PATH.search(text)
            assert found is None, f"{where} carries a filesystem path {found.group(0)!r}: {text[:500]!r}"


def assert_artifact_link(summary: Any, *, kind: str | None = None) -> dict[str, Any]:
    """``summary`` is an artifact's ``summary()`` (id, name, link, size, SHA-256) whose link
    points at the dashboard; returns it."""
    from airflow_recon_provider.artifacts import artifact_link

    assert isinstance(summary, Mapping), f"not an artifact summary: {summary!r}"
    assert summary["link"] == artifact_link(summary["id"]), summary
    assert summary["link"].startswith(("http://", "https://")), summary
    assert re.fullmatch(r"[0-9a-f]{64}", summary["sha256"]), summary
    if kind is not None:
        assert summary["kind"] == kind, summary
    assert_no_local_paths(summary, what="artifact summary")
    return dict(summary)


def artifact_bytes(summary_or_id: Any) -> bytes:
    """The artifact's content the dashboard's way: its ``recon.artifacts`` row, then the
    object store; checks the size and SHA-256 recorded."""
    import hashlib

    from airflow_recon_provider.artifacts import read_bytes
    from airflow_recon_provider.hooks.artifacts import ArtifactsHook

    artifact_id = summary_or_id["id"] if isinstance(summary_or_id, Mapping) else int(summary_or_id)
    record = ArtifactsHook().get(artifact_id)
    data = read_bytes(record)
    assert len(data) == record.size_bytes and hashlib.sha256(data).hexdigest() == record.sha256
    return data


def artifact_text(summary_or_id: Any) -> str:
    return artifact_bytes(summary_or_id).decode("utf-8")


__all__ = ["artifact_bytes", "artifact_text", "assert_artifact_link", "assert_no_local_paths"]
