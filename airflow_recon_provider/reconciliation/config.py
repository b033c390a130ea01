"""One configuration object for every fact a site may change.

PSP list, display names, status mappings, thresholds, table mapping, grace period
and window limits live here, not in operators. The configuration is read from the
``RECON_CONFIG`` environment variable (a path to a JSON file, or inline JSON);
without it, runbook defaults apply and the PSP list comes from the database.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_recon_provider.reconciliation.errors import ConfigError, UnknownPspError
from airflow_recon_provider.reconciliation.finance_review import ReviewPolicy
from airflow_recon_provider.reconciliation.mapping import TableMapping
from airflow_recon_provider.reconciliation.money import (
    DEFAULT_REPORTING_CURRENCY,
    CurrencyError,
    check_currency,
)
from airflow_recon_provider.reconciliation.thresholds import ThresholdPolicy
from airflow_recon_provider.reconciliation.window import DEFAULT_MAX_WINDOW

CONFIG_ENV = "RECON_CONFIG"
# used with fullmatch: "$" would also accept a trailing newline
_PSP_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")
_WORK_MEM = re.compile(r"[0-9]{1,6}(kB|MB|GB)")
_PSP_KEYS = frozenset({"name", "display_name", "status_mapping", "ledger_status_mapping"})


def check_psp_name(psp: str) -> str:
    """Refuse anything that is not a plain PSP name before it goes near a query."""
    if not isinstance(psp, str) or not _PSP_NAME.fullmatch(psp):
        raise UnknownPspError(
            f"PSP {psp!r} is not a valid PSP name (lower-case letters, digits and underscores)"
        )
    return psp


@dataclass(frozen=True)
class PspConfig:
    """One payment service provider.

    :param name: the name used in ``payment_intents.provider`` and ``psp_statement_lines.psp``.
    :param display_name: what people see in forms and reports.
    :param status_mapping: PSP status vocabulary -> gateway vocabulary (identity if absent).
    :param ledger_status_mapping: ``ledger.transactions`` status -> the PSP's statement
        vocabulary (identity if absent), for the recovery criterion "Relatório financeiro
        alinhado com extratos PSP": a ledger status is read as the statement status it maps
        to, and that one through ``status_mapping``, so that the ledger, the statement and the
        gateway are compared in the gateway's vocabulary.
    """

    name: str
    display_name: str = ""
    status_mapping: dict[str, str] = field(default_factory=dict)
    ledger_status_mapping: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            check_psp_name(self.name)
        except UnknownPspError as exc:
            raise ConfigError(str(exc)) from None
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)
        if not isinstance(self.status_mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.status_mapping.items()
        ):
            raise ConfigError(f"status_mapping of PSP {self.name!r} must map strings to strings")
        _check_ledger_status_mapping(self.name, self.ledger_status_mapping)

    @property
    def connection_id(self) -> str:
        return f"psp_{self.name}"


#: a live classification of a long window shares the work among this many connections at
#: most (each classifies the keys of one hash part, all in one snapshot); 1 keeps one
DEFAULT_LIVE_CONNECTIONS = 2
MAX_LIVE_CONNECTIONS = 16


@dataclass(frozen=True)
class ReconConfig:
    """Everything a site configures. Defaults follow the runbook."""

    psps: tuple[PspConfig, ...] = ()
    thresholds: ThresholdPolicy = field(default_factory=ThresholdPolicy)
    mapping: TableMapping = field(default_factory=TableMapping)
    match_grace: timedelta = timedelta(hours=1)
    max_window: timedelta = DEFAULT_MAX_WINDOW
    statement_work_mem: str = "256MB"
    #: connections a live classification of a long window may use at once (hooks/_key_parts.py)
    live_connections: int = DEFAULT_LIVE_CONNECTIONS
    #: thresholds and converted figures are in this currency (DESIGN 3a)
    reporting_currency: str = DEFAULT_REPORTING_CURRENCY
    #: when the review with finance takes place after a closure (runbook Encerramento 4)
    finance_review: ReviewPolicy = field(default_factory=ReviewPolicy)

    def __post_init__(self) -> None:
        names = [p.name for p in self.psps]
        if len(names) != len(set(names)):
            raise ConfigError(f"PSP list has duplicates: {names}")
        if self.match_grace < timedelta(0):
            raise ConfigError("match_grace must not be negative")
        if self.max_window <= timedelta(0):
            raise ConfigError("max_window must be positive")
        if not isinstance(self.statement_work_mem, str) or not _WORK_MEM.fullmatch(self.statement_work_mem):
            raise ConfigError(f"work_mem {self.statement_work_mem!r} must look like 256MB")
        if (
            isinstance(self.live_connections, bool)
            or not isinstance(self.live_connections, int)
            or not 1 <= self.live_connections <= MAX_LIVE_CONNECTIONS
        ):
            raise ConfigError(
                f"live_connections {self.live_connections!r} must be a whole number from 1 to "
                f"{MAX_LIVE_CONNECTIONS}"
            )
        try:
            object.__setattr__(self, "reporting_currency", check_currency(self.reporting_currency))
        except CurrencyError as exc:
            raise ConfigError(f"reporting_currency: {exc}") from None

    @property
    def psp_names(self) -> list[str]:
        return [p.name for p in self.psps]

    def psp(self, name: str) -> PspConfig:
        """The configuration of a PSP; unconfigured PSPs get identity status mapping."""
        for psp in self.psps:
            if psp.name == name:
                return psp
        return PspConfig(name=check_psp_name(name))

    def resolve_psp(self, name: str, known_in_database: set[str] | None = None) -> PspConfig:
        """Check that ``name`` is a known PSP (DESIGN section 3) and return its configuration.

        Known means: in the configured list or, where no list is configured, present in
        ``payment_intents.provider`` (``known_in_database``).
        """
        check_psp_name(name)
        if self.psps:
            if name not in self.psp_names:
                raise UnknownPspError(f"unknown PSP {name!r}; configured PSPs: {', '.join(self.psp_names)}")
            return self.psp(name)
        if known_in_database is None or name not in known_in_database:
            known = ", ".join(sorted(known_in_database or ())) or "none"
            raise UnknownPspError(f"unknown PSP {name!r}; PSPs seen in payment_intents: {known}")
        return self.psp(name)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReconConfig:
        if not isinstance(data, dict):
            raise ConfigError("the reconciliation configuration must be a JSON object")
        known = {
            "psps",
            "thresholds",
            "mapping",
            "match_grace_minutes",
            "max_window_days",
            "work_mem",
            "live_connections",
            "reporting_currency",
            "finance_review",
        }
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {sorted(unknown)}; expected {sorted(known)}")
        psps = []
        for item in data.get("psps") or []:
            if isinstance(item, str):
                psps.append(PspConfig(name=item))
            elif isinstance(item, dict):
                # a misspelt key (e.g. "status_mappings") would silently drop a status mapping
                extra = set(item) - _PSP_KEYS
                if extra:
                    raise ConfigError(
                        f"unknown key(s) {sorted(extra)} in PSP entry {item.get('name')!r}; "
                        f"expected {sorted(_PSP_KEYS)}"
                    )
                psps.append(
                    PspConfig(
                        name=item.get("name", ""),
                        display_name=item.get("display_name", ""),
                        status_mapping=_copy_if_dict(item.get("status_mapping") or {}),
                        ledger_status_mapping=_copy_if_dict(item.get("ledger_status_mapping", {})),
                    )
                )
            else:
                raise ConfigError(f"PSP entry {item!r} must be a name or an object")
        kwargs: dict[str, Any] = {
            "psps": tuple(psps),
            "thresholds": ThresholdPolicy.from_dict(data.get("thresholds")),
            "mapping": TableMapping.from_dict(data.get("mapping")),
        }
        if "match_grace_minutes" in data:
            kwargs["match_grace"] = timedelta(minutes=_number(data, "match_grace_minutes"))
        if "max_window_days" in data:
            kwargs["max_window"] = timedelta(days=_number(data, "max_window_days"))
        if "work_mem" in data:
            kwargs["statement_work_mem"] = str(data["work_mem"])
        if "live_connections" in data:
            kwargs["live_connections"] = data["live_connections"]
        if "reporting_currency" in data:
            kwargs["reporting_currency"] = data["reporting_currency"]
        if "finance_review" in data:
            kwargs["finance_review"] = ReviewPolicy.from_dict(data["finance_review"])
        return cls(**kwargs)

    @classmethod
    def load(cls, source: str | None = None) -> ReconConfig:
        """Load from ``source`` or ``$RECON_CONFIG`` (a JSON file path or inline JSON).

        Parsed once per distinct document: the same inline JSON, or the same file unchanged
        (path, size and modification time), returns the configuration parsed before (it is
        immutable). A bad document raises :class:`ConfigError` each time it is read."""
        source = source if source is not None else os.environ.get(CONFIG_ENV, "")
        source = source.strip()
        if not source:
            return cls()
        if source.startswith("{"):
            return _parse_config(cls, source, None)
        path = Path(source)
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if stat is None or not path.is_file():
            raise ConfigError(f"{CONFIG_ENV} points at {source!r}, which is not a file")
        return _parse_config(cls, source, (stat.st_size, stat.st_mtime_ns))

    @classmethod
    def load_for_form(cls) -> tuple[ReconConfig, str | None]:
        """What a DAG's form is built from when its file is parsed: the configuration, or —
        when ``$RECON_CONFIG`` cannot be read — the defaults and the reason. The DAG files
        still import (a bad document must not take the remediation DAG out of the UI in
        the middle of an incident), the form says the reason, and every task, which loads
        the configuration again, fails with it until the document is fixed."""
        try:
            return cls.load(), None
        except ConfigError as exc:
            return cls(), str(exc)


@functools.lru_cache(maxsize=8)
def _parse_config(cls: type[ReconConfig], source: str, file_key: tuple[int, int] | None) -> ReconConfig:
    """One parse per document (``file_key`` changes when the file does)."""
    text = source if file_key is None else Path(source).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"reconciliation configuration is not valid JSON: {exc}") from None
    return cls.from_dict(data)


def _check_ledger_status_mapping(psp: str, mapping: Any) -> None:
    """Each problem of a PSP's ``ledger_status_mapping`` named, with the entry at fault: a
    wrong entry would silently leave ledger rows in a status no statement line has."""
    what = f"ledger_status_mapping of PSP {psp!r}"
    if not isinstance(mapping, dict):
        raise ConfigError(
            f"{what} must be an object of ledger status -> statement status "
            f'(e.g. {{"captured": "succeeded"}}), got {mapping!r}'
        )
    for ledger_status, statement_status in mapping.items():
        for role, value in (("ledger status", ledger_status), ("statement status", statement_status)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"{what}: {role} {value!r} (entry {ledger_status!r}: {statement_status!r}) "
                    "must be a non-empty string"
                )
            if value != value.strip():
                raise ConfigError(
                    f"{what}: {role} {value!r} has spaces around it; statuses are compared exactly"
                )


def _number(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _copy_if_dict(value: Any) -> Any:
    # a copy, so the frozen config does not share a dict with its source; other shapes are
    # left for PspConfig to reject with a ConfigError
    return dict(value) if isinstance(value, dict) else value
