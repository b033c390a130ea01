"""The provider's ``[recon]`` Airflow configuration section, read in one place.

Options are declared (with their descriptions and defaults) in :mod:`get_provider_info`;
Airflow's ``conf`` serves them from ``airflow.cfg`` or ``AIRFLOW__RECON__<OPTION>``. Values
are read when a task or a page needs them, never at DAG parse time: a bad value fails the
task that reads it, with the option named, and every DAG file still imports.
"""

from __future__ import annotations

import math
import os
from typing import Any

from airflow_recon_provider.reconciliation.errors import ConfigError

CONFIG_SECTION = "recon"


def _conf() -> Any:  # Airflow's AirflowConfigParser
    try:
        from airflow.providers.common.compat.sdk import conf
    except ImportError:  # pragma: no cover - older compat provider
        from airflow.configuration import conf  # type: ignore[no-redef]
    return conf


def option(key: str, section: str = CONFIG_SECTION) -> str:
    """An option's value stripped, ``""`` when unset (or when the configuration cannot be read)."""
    try:
        value = _conf().get(section, key, fallback="")
    except Exception:
        return ""
    return "" if value is None else str(value).strip()


def option_or_env(key: str, env: str) -> str:
    """``[recon] <key>``, else the environment variable ``env`` that set it before the option
    existed (a documented fallback: deployments that set it keep working); ``""`` when neither
    is set."""
    return option(key) or os.environ.get(env, "").strip()


def seconds(key: str, *, default: float, minimum: float, maximum: float) -> float:
    """A duration option in seconds: ``default`` when unset; a value that is not a number
    within ``[minimum, maximum]`` is a :class:`ConfigError` naming the option."""
    raw = option(key)
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise ConfigError(
            f"[{CONFIG_SECTION}] {key} (AIRFLOW__{CONFIG_SECTION.upper()}__{key.upper()}) must be a "
            f"number of seconds from {minimum:g} to {maximum:g}, got {raw!r}"
        )
    return value


__all__ = ["CONFIG_SECTION", "option", "option_or_env", "seconds"]
