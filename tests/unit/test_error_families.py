"""The two error families: bad input (``ReconError``, a ``ValueError``) and an unavailable
dependency (``DependencyUnavailableError``, a ``ConnectionError``). No class is both, so a
handler of one never catches the other."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import airflow_recon_provider
from airflow_recon_provider.reconciliation.errors import DependencyUnavailableError, ReconError


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(airflow_recon_provider.__path__, "airflow_recon_provider."):
        if ".plugins" in info.name or ".devtools" in info.name:
            continue  # web apps and demo tools: no errors of their own in the families
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("airflow_recon_provider"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_no_error_is_in_both_families():
    classes = _error_classes()
    both = [
        c.__qualname__
        for c in classes
        if issubclass(c, ReconError) and issubclass(c, DependencyUnavailableError)
    ]
    assert both == []
    unavailable = {c.__qualname__ for c in classes if issubclass(c, DependencyUnavailableError)}
    # every outage of the runbook's dependencies is in the unavailable family, none is bad input
    assert {
        "DatabaseUnavailableError",
        "ServiceUnavailableError",
        "BillingCoreUnavailableError",
        "PspUnavailableError",
        "FxSourceUnavailableError",
        "KafkaUnavailableError",
        "EventsTimeoutError",
        "AirflowApiUnavailableError",
        "PagerDutyUnavailableError",
    } <= unavailable
    assert not any(
        "Unavailable" in c.__qualname__ or "Timeout" in c.__qualname__
        for c in classes
        if issubclass(c, ReconError)
    )


def test_the_families_are_the_builtin_ones():
    assert issubclass(ReconError, ValueError) and not issubclass(ReconError, OSError)
    assert issubclass(DependencyUnavailableError, ConnectionError) and not issubclass(
        DependencyUnavailableError, ValueError
    )
