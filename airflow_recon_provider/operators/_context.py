"""Small facts about the running task that several operators need: who asked, which run.

Kept free of hooks and database drivers so DAG files that import operators parse fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context


def blank(value: Any) -> bool:
    """Whether a templated value is missing (:func:`airflow_recon_provider.reconciliation.inputs.blank`,
    imported at the first call so that DAG files parse without the domain package)."""
    from airflow_recon_provider.reconciliation.inputs import blank as _blank

    return _blank(value)


def run_actor(context: Context) -> str:
    """Who the run acts for: the user who triggered it; runs nobody triggered by hand (the
    schedule, the divergence watch) act as ``airflow:<dag_id>``."""
    dag_run = context.get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None) if dag_run is not None else None
    if user and str(user).strip():
        return str(user).strip()
    dag = context.get("dag")
    ti = context.get("ti")
    dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or "unknown"
    return f"airflow:{dag_id}"


def run_id_of(context: Context) -> str | None:
    run_id = context.get("run_id")
    if run_id:
        return str(run_id)
    dag_run = context.get("dag_run")
    return getattr(dag_run, "run_id", None)


__all__ = ["blank", "run_actor", "run_id_of"]
