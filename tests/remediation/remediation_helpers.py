"""Helpers of the remediation tests (importable by name; conftest modules are not)."""

from __future__ import annotations

#: the bearer token of the test core connection; must never show up in logs or XCom
CORE_TOKEN = "core-token-s3cr3t-7f41"


def run_queued_dag_runs(sdk_dag, run_ids: list[str]) -> list[str]:
    """Execute the queued runs ``run_ids`` of ``sdk_dag`` to their end, like the scheduler
    and a worker would: the same minimal loop as ``dag.test()``, on runs created by someone
    else (here, by a reprocess through the execution API). Returns the run ids executed."""
    from airflow import settings
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    session = settings.Session()
    run_ids = session.scalars(
        select(DagRun.run_id).where(
            DagRun.dag_id == sdk_dag.dag_id, DagRun.run_id.in_(run_ids), DagRun.state == DagRunState.QUEUED
        )
    ).all()
    executed = []
    for run_id in run_ids:
        # the tasks run below close the scoped session: always re-read the run
        session = settings.Session()
        dag_run = session.scalar(
            select(DagRun).where(DagRun.dag_id == sdk_dag.dag_id, DagRun.run_id == run_id)
        )
        dag_run.state = DagRunState.RUNNING
        dag_run.start_date = timezone.utcnow()
        session.commit()
        for _ in range(50):  # a bound, not a timing: each round runs at least one task
            session = settings.Session()
            session.expire_all()
            dag_run = session.scalar(
                select(DagRun).where(DagRun.dag_id == sdk_dag.dag_id, DagRun.run_id == run_id)
            )
            if dag_run.state != DagRunState.RUNNING:
                break
            dag_run.dag = DBDagBag().get_dag_for_run(dag_run, session=session)
            schedulable, _ = dag_run.update_state(session=session)
            for ti in schedulable:
                if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                    ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
                ti.scheduled_dttm = timezone.utcnow()
            session.commit()
            scheduled = [
                ti
                for ti in dag_run.get_task_instances(session=session)
                if ti.state == TaskInstanceState.SCHEDULED
            ]
            for ti in scheduled:
                _run_task(ti=ti, task=sdk_dag.task_dict[ti.task_id])
        executed.append(run_id)
    return executed
