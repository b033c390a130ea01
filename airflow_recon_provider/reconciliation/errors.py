"""Errors with messages a finance analyst or an on-call engineer can act on."""

from __future__ import annotations


class ReconError(ValueError):
    """Base class of every error the reconciliation core raises on bad input."""


class WindowError(ReconError):
    """A reconciliation window is malformed (order, timezone, size)."""


class UnknownPspError(ReconError):
    """The PSP is neither configured nor present in the gateway's payment intents."""


class MappingError(ReconError):
    """A configured table or column name is not a plain SQL identifier."""


class ConfigError(ReconError):
    """The reconciliation configuration is invalid."""


class DivergenceKindError(ReconError):
    """A requested divergence kind does not exist."""


class ConnectionMissingError(ReconError):
    """An Airflow connection the step needs is not defined."""


class DatabaseUnavailableError(ReconError):
    """The database could not be reached."""


class CorrectionConflictError(ReconError):
    """A correction would touch a row that changed since it was proposed."""
