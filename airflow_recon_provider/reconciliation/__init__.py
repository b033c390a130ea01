"""Pure domain of the reconciliation runbook: no Airflow import here.

Windows and cycles, divergence kinds, thresholds, table mapping, the classification
SQL, report models and renderers.
"""

from airflow_recon_provider.reconciliation.config import PspConfig, ReconConfig, check_psp_name
from airflow_recon_provider.reconciliation.errors import (
    ConfigError,
    ConnectionMissingError,
    CorrectionConflictError,
    DatabaseUnavailableError,
    DivergenceKindError,
    MappingError,
    ReconError,
    UnknownPspError,
    WindowError,
)
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind, parse_kinds
from airflow_recon_provider.reconciliation.mapping import TableMapping, TableRef
from airflow_recon_provider.reconciliation.report import (
    DivergenceRow,
    DivergenceSummary,
    KindTotal,
    divergence_pct,
)
from airflow_recon_provider.reconciliation.thresholds import AlertReason, ThresholdPolicy, Thresholds
from airflow_recon_provider.reconciliation.window import Cycle, Window, cycles_between, parse_timestamp

__all__ = [
    "ALL_KINDS",
    "AlertReason",
    "ConfigError",
    "ConnectionMissingError",
    "CorrectionConflictError",
    "Cycle",
    "DatabaseUnavailableError",
    "DivergenceKind",
    "DivergenceKindError",
    "DivergenceRow",
    "DivergenceSummary",
    "KindTotal",
    "MappingError",
    "PspConfig",
    "ReconConfig",
    "ReconError",
    "TableMapping",
    "TableRef",
    "ThresholdPolicy",
    "Thresholds",
    "UnknownPspError",
    "Window",
    "WindowError",
    "check_psp_name",
    "cycles_between",
    "divergence_pct",
    "parse_kinds",
    "parse_timestamp",
]
