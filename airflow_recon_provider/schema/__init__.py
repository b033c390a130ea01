"""Database schemas: the provider's own ``recon`` schema (versioned migrations) and a
DDL of the runbook's tables for tests, the demo and the seed."""

from airflow_recon_provider.schema.migrations import (
    MIGRATIONS,
    applied_versions,
    create_runbook_tables,
    migrate,
)

__all__ = ["MIGRATIONS", "applied_versions", "create_runbook_tables", "migrate"]
