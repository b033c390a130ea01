"""The provider's least-privilege PostgreSQL roles (``least_privilege.sql``).

:func:`grant_least_privilege` runs the SQL file (group roles ``recon_remediation`` and
``recon_reconciliation`` with their grants) and creates or updates the login role the
``billing_gateway_db`` connection uses, as a member of them. Run it as the owner of the
tables (or a superuser), after :func:`airflow_recon_provider.schema.migrate`.
"""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql

REMEDIATION_ROLE = "recon_remediation"
RECONCILIATION_ROLE = "recon_reconciliation"


def least_privilege_sql() -> str:
    """The text of ``least_privilege.sql`` (for a DBA to read or run by hand)."""
    return resources.files(__package__).joinpath("least_privilege.sql").read_text()


def grant_least_privilege(
    conn: psycopg.Connection,
    login_role: str,
    password: str | None,
    *,
    reconciliation_writer: bool = True,
) -> None:
    """Create the group roles and their grants, and make ``login_role`` (created when missing,
    ``LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE``) a member of ``recon_remediation`` — and of
    ``recon_reconciliation`` when ``reconciliation_writer`` (the reference hourly DAG runs
    with it). ``password`` is sent as a bound value, never logged; ``None`` leaves the role's
    password as it is."""

    role = sql.Identifier(login_role)
    with conn.transaction():
        conn.execute(least_privilege_sql())
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login_role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {}").format(role))
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT").format(role))
        if password is not None:
            # ALTER ROLE takes no bind parameters: send the SCRAM verifier, never the password
            verifier = conn.pgconn.encrypt_password(
                password.encode(), login_role.encode(), b"scram-sha-256"
            ).decode()
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(verifier)))
        groups = [REMEDIATION_ROLE] + ([RECONCILIATION_ROLE] if reconciliation_writer else [])
        for group in groups:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), role))
        if not reconciliation_writer:
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(RECONCILIATION_ROLE), role))


__all__ = ["RECONCILIATION_ROLE", "REMEDIATION_ROLE", "grant_least_privilege", "least_privilege_sql"]
