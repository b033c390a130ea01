"""Stand-ins and the seeded scenario of the remediation DAG tests (importable by name;
conftest modules are not).

The scenario: ``airflow_recon_provider.devtools.seed`` fills two healthy PSPs (``stripe``
with a status mapping, ``adyen``) over 2026-11-20 [09:00, 14:00); then a divergence is
made by hand in stripe's window [11:00, 14:00), designed so that the runbook reaches
recovery:

- 12 captures the gateway still has as ``authorized`` while the PSP's statement says
  ``succeeded`` (mapped to ``captured``): ``status_mismatch``, corrected by finance's
  approval; together well over R$ 500;
- 2 captures whose statement amounts differ by a few cents (``amount_mismatch``) and one
  small authorization missing from the statement (``missing_in_statement``): what remains
  after the corrections — 3 keys, a few reais — is below the recovery thresholds;
- the cycles 12:00 and 13:00 last ``failed`` in ``payment_reconciliation_logs``, so the
  recovery criteria also need the reprocessing to succeed;
- the ledger mirrors the seeded gateway (the 12 captures booked as ``captured``): it agrees
  with the statement but for the three remaining keys, within the ledger's limit.

The local PSP API serves, per cycle, exactly the statement lines the scenario left in the
database (what the PSP really said), so reprocessing reloads the same statement.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fx_support import insert_parity_rates
from werkzeug import Request, Response

WINDOW_START = "2026-11-20T11:00:00Z"
WINDOW_END = "2026-11-20T14:00:00Z"
STATUS_MAPPING = {"succeeded": "captured", "SETTLED": "settled"}
RECON_CONFIG = {
    "psps": [
        {"name": "stripe", "display_name": "Stripe", "status_mapping": STATUS_MAPPING},
        {"name": "adyen", "display_name": "Adyen"},
    ]
}
#: the tables a dry run must leave exactly as they were (payment data, logs, controls, incident)
WATCHED_TABLES = (
    "payment_intents",
    "payment_transactions",
    "psp_statement_lines",
    "payment_reconciliation_logs",
    "ledger.transactions",
    "recon.controls",
    "recon.control_events",
    "recon.incidents",
    "recon.incident_events",
    "recon.corrections",
    "recon.notifications",
)


@dataclass(frozen=True)
class Scenario:
    status_mismatch_ids: tuple[int, ...]
    amount_mismatch_refs: tuple[str, ...]
    missing_ref: str
    missing_amount: int
    status_mismatch_amount: int
    gateway_rows_in_window: int

    @property
    def divergent_count(self) -> int:
        return len(self.status_mismatch_ids) + len(self.amount_mismatch_refs) + 1

    @property
    def remaining_amount(self) -> int:
        return 7 + 13 + self.missing_amount


def seed_scenario(db) -> Scenario:
    from airflow_recon_provider.devtools.seed import SeedSpec, seed_database

    spec = SeedSpec(
        seed=7,
        psps=("stripe", "adyen"),
        rows_per_psp=1200,
        start=datetime(2026, 11, 20, 9, tzinfo=UTC),
        hours=5,
        divergence_rate={"stripe": 0.0, "adyen": 0.0},
        status_mapping={"stripe": STATUS_MAPPING},
    )
    seed_database(db, None, spec)
    insert_parity_rates(db)  # without them the EUR/USD remainder fires fx_rate_missing
    window = {"start": WINDOW_START, "end": WINDOW_END}
    captures = db.execute(
        """SELECT t.id, i.provider_reference, t.amount_minor
             FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
            WHERE i.provider = 'stripe' AND t.transaction_type = 'capture' AND t.status = 'captured'
              AND t.created_at >= %(start)s AND t.created_at < %(end)s
              AND extract(minute FROM t.created_at) < 45 AND t.amount_minor >= 5000
            ORDER BY t.id LIMIT 14""",
        window,
    ).fetchall()
    assert len(captures) == 14, captures
    mismatched, amounts = captures[:12], captures[12:]
    ids = tuple(row[0] for row in mismatched)
    db.execute("UPDATE payment_transactions SET status = 'authorized' WHERE id = ANY(%s)", (list(ids),))
    for (_, ref, _), delta in zip(amounts, (7, -13), strict=True):
        db.execute(
            "UPDATE psp_statement_lines SET amount_minor = amount_minor + %s"
            " WHERE psp = 'stripe' AND provider_reference = %s AND transaction_type = 'capture'",
            (delta, ref),
        )
    taken = [row[1] for row in captures]
    missing_ref, missing_amount = db.execute(
        """SELECT i.provider_reference, t.amount_minor
             FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
            WHERE i.provider = 'stripe' AND t.transaction_type = 'authorization' AND t.status = 'authorized'
              AND t.created_at >= %(start)s AND t.created_at < %(end)s
              AND extract(minute FROM t.created_at) < 45 AND t.amount_minor < 10000
              AND NOT i.provider_reference = ANY(%(taken)s)
            ORDER BY t.id LIMIT 1""",
        {**window, "taken": taken},
    ).fetchone()
    db.execute(
        "DELETE FROM psp_statement_lines WHERE psp = 'stripe' AND provider_reference = %s"
        " AND transaction_type = 'authorization'",
        (missing_ref,),
    )
    # the break: the two latest cycles of the window failed
    db.execute(
        """INSERT INTO payment_reconciliation_logs
           (psp, cycle_start, cycle_end, status, notes, created_at) VALUES
           ('stripe', '2026-11-20T12:00Z', '2026-11-20T13:00Z', 'failed', 'match_transactions failed',
            '2026-11-20T14:10Z'),
           ('stripe', '2026-11-20T13:00Z', '2026-11-20T14:00Z', 'failed', 'match_transactions failed',
            '2026-11-20T14:10Z')"""
    )
    (in_window,) = db.execute(
        """SELECT count(*) FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
            WHERE i.provider = 'stripe' AND t.created_at >= %(start)s AND t.created_at < %(end)s""",
        window,
    ).fetchone()
    return Scenario(
        status_mismatch_ids=ids,
        amount_mismatch_refs=tuple(row[1] for row in amounts),
        missing_ref=missing_ref,
        missing_amount=int(missing_amount),
        status_mismatch_amount=sum(int(row[2]) for row in mismatched),
        gateway_rows_in_window=int(in_window),
    )


# -- the PSP's API -----------------------------------------------------------------------------


@dataclass
class SnapshotPspApi:
    """``GET /statements?psp=&from=&to=`` from the statement lines as they were when the
    scenario was made (the PSP's own record), one page per cycle; ``GET /status`` healthy."""

    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_database(cls, db) -> SnapshotPspApi:
        api = cls()
        rows = db.execute(
            "SELECT psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at"
            " FROM psp_statement_lines ORDER BY id"
        ).fetchall()
        for psp, ref, ttype, status, amount, currency, occurred in rows:
            api.lines.setdefault(psp, []).append(
                {
                    "provider_reference": ref,
                    "transaction_type": ttype,
                    "status": status,
                    "amount_minor": int(amount),
                    "currency": currency,
                    "occurred_at": occurred.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                    "_at": occurred.astimezone(UTC),
                }
            )
        return api

    def statements(self, request: Request) -> Response:
        args = request.args.to_dict()
        self.requests.append(args)
        start = datetime.fromisoformat(args["from"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(args["to"].replace("Z", "+00:00"))
        lines = [
            {k: v for k, v in line.items() if k != "_at"}
            for line in self.lines.get(args.get("psp", ""), [])
            if start <= line["_at"] < end
        ]
        body = {"statement_id": f"{args.get('psp')}-{start:%Y%m%d%H}", "lines": lines}
        return Response(json.dumps(body), content_type="application/json")

    @staticmethod
    def status(request: Request) -> Response:
        return Response(json.dumps({"status": "ok"}), content_type="application/json")


# -- reading results -----------------------------------------------------------------------------


def checksum(db, tables: tuple[str, ...] = WATCHED_TABLES) -> dict[str, str]:
    """A digest per table: equal before and after means the table did not change."""
    digests = {}
    for table in tables:
        rows = db.execute(f"SELECT to_jsonb(t)::text FROM {table} AS t ORDER BY 1").fetchall()
        digests[table] = hashlib.sha256(json.dumps([r[0] for r in rows]).encode()).hexdigest()
    return digests


def xcom(dag_run, task_id: str, key: str = "return_value") -> Any:
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id, key=key)


def run_note(dag_run) -> str:
    """The run's note as Airflow stores it (written by the scope step through the REST API)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_run.dag_id, DagRun.run_id == dag_run.run_id)
        ).one()
        return run.note or ""


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def dag_runs_of(dag_id: str) -> list[Any]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)).all())


# -- another run holding the PSP's remediation lease ------------------------------------------------


def lease_holder(
    state: str | None,
    *,
    run_id: str,
    incident_id: str | None,
    acquired_at: datetime,
    dag_id: str = "billing_gateway_remediation",
    psp: str = "stripe",
) -> str:
    """What the scope of another real run of ``psp`` left: that run in the metadata database in
    ``state`` (``None``: no such run any more) holding the PSP's remediation lease, taken at
    ``acquired_at`` for ``incident_id``. Remove the run with :func:`forget_run`."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    if state is not None:
        with create_session() as session:
            session.add(
                DagRun(
                    dag_id=dag_id,
                    run_id=run_id,
                    run_type=DagRunType.MANUAL,
                    state=DagRunState(state),
                    run_after=acquired_at,
                )
            )
    RemediationLeaseHook().acquire(
        psp, dag_id=dag_id, run_id=run_id, actor="oncall", incident_id=incident_id, at=acquired_at
    )
    return run_id


def forget_run(dag_id: str, run_id: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))


def hitl_requests(dag_id: str, run_id: str) -> int:
    """How many approval requests (HITL) the run made."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(HITLDetail)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        )
