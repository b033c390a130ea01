"""Where operators write their artifacts (CSV files for finance or a PSP, release records).

``RECON_ARTIFACTS_DIR`` when set, else ``$AIRFLOW_HOME/recon-artifacts``; one directory
per DAG run, so two runs never overwrite each other's files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Context

ARTIFACTS_ENV = "RECON_ARTIFACTS_DIR"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def artifacts_root() -> Path:
    root = os.environ.get(ARTIFACTS_ENV)
    if root:
        return Path(root).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME") or str(Path("~/airflow").expanduser())
    return Path(airflow_home) / "recon-artifacts"


def safe_name(text: str) -> str:
    """``text`` as one path component (run ids carry ``:`` and ``+``)."""
    return _UNSAFE.sub("_", str(text)).strip("._") or "_"


def run_artifact_path(context: Context, filename: str) -> Path:
    """``<root>/<dag_id>/<run_id>/<filename>`` for the running task."""
    ti = context["ti"]
    return artifacts_root() / safe_name(ti.dag_id) / safe_name(ti.run_id) / safe_name(filename)
