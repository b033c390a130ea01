"""Data the dashboard tests share (a module of its own: test modules import it by name, which
is not safe for ``conftest``, a name every test folder has)."""

from __future__ import annotations

#: text an attacker could put in an incident (reason, outcome, ticket, file name): it must
#: come back escaped on every page
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "q"'
EVIDENCE_DAG = "billing_gateway_remediation"
EVIDENCE_RUN = "manual__2026-11-20T12:30:00+00:00"
#: the snapshot has non-ASCII text and a CRLF: served byte for byte
SNAPSHOT_CSV = (
    "provider_reference,transaction_type,status,amount_minor,processed_at\r\n"
    "pi_ação_1,capture,captured,1050,2026-11-20T10:00:00Z\r\n"
    '"pi_2,""x""",capture,authorized,99,\r\n'
).encode()
DRY_RUN_CSV = b"transaction_id,before,after,amount_minor,currency\n9001,authorized,captured,1000,BRL\n"
