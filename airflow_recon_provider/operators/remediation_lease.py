"""The end of a real remediation run: give the PSP back (one real remediation per PSP at a time).

The scope step of a real run takes the PSP's remediation lease
(:class:`~airflow_recon_provider.operators.investigation.ValidateScopeOperator` with ``lease``);
:class:`ReleaseRemediationLeaseOperator` is the run's last task, a teardown that runs whether
the runbook succeeded or failed, and gives the lease back so the next real run of the PSP may
start at once. A run that ends without it (killed, marked failed or success by hand) keeps the
row until the next real run finds that run no longer running and takes the lease over.

The hook is imported inside ``execute`` so DAG files parse fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.operators._context import run_actor, run_id_of

if TYPE_CHECKING:
    from airflow.sdk import Context


class ReleaseRemediationLeaseOperator(BaseOperator):
    """Give back the PSP's remediation lease this run holds, if it holds one (idempotent: a
    dry run, a refused run or a lease already taken over have nothing to give back).

    Returns (XCom)::

        {"released": bool, "psp", "incident_id", "acquired_at"}  # the last three None when nothing

    :param billing_gateway_conn_id: the gateway database (``recon`` schema; the primary).
    """

    ui_color = "#f1f3f4"

    def __init__(self, *, billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

        dag_id = context["ti"].dag_id
        run_id = run_id_of(context)
        hook = RemediationLeaseHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        released = hook.release(dag_id=dag_id, run_id=run_id, actor=run_actor(context))
        if released is None:
            self.log.info(
                "%s run %s holds no remediation lease (a dry run, a refused run, or a lease "
                "already given back or taken over): nothing to release",
                dag_id,
                run_id,
            )
            return {"released": False, "psp": None, "incident_id": None, "acquired_at": None}
        self.log.info(
            "PSP %s is free for the next real remediation: %s run %s (incident %s) released its lease",
            released.psp,
            dag_id,
            run_id,
            released.incident_id or "none",
        )
        return {
            "released": True,
            "psp": released.psp,
            "incident_id": released.incident_id,
            "acquired_at": released.acquired_at.isoformat(),
        }


__all__ = ["ReleaseRemediationLeaseOperator"]
