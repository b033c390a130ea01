"""Helpers of the remediation tests (importable by name; conftest modules are not)."""

from __future__ import annotations

#: the bearer token of the test core connection; must never show up in logs or XCom
CORE_TOKEN = "core-token-s3cr3t-7f41"
