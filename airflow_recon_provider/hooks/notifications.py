"""Hook on the notification outbox ``recon.notifications`` in the gateway database
(connection ``billing_gateway_db``).

Runbook, Comunicação: every message to finance (the incident updates, the final one, the
containment notice, the closing report's e-mail, the control changes) is recorded here before
it is sent, one row per ``(dedup_key, channel)``, then marked ``sent``, ``failed`` or
``superseded``: a re-run never sends a delivered message twice, and an undelivered one is
carried by the next. :class:`~airflow_recon_provider.notifications.finance.FinanceNotifier`
is the writer; the closing report counts the rows (:meth:`NotificationOutboxHook.delivery_stats`).

The ``recon`` schema has fixed names (the provider owns it), so the SQL is plain text with
bound values; rows are read by column name (``psycopg.rows.dict_row``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_recon_provider.hooks._json import json_details
from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.hooks._rows import by_name
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.reconciliation.figures import Figures
from airflow_recon_provider.reconciliation.incident_messages import RenderedMessage
from airflow_recon_provider.reconciliation.incidents import IncidentInputError, check_aware

CHANNELS = ("email", "slack")
DELIVERY_KINDS = ("update", "normalized", "containment", "closing_report", "control")

_DELIVERY_COLUMNS = (
    "id, dedup_key, channel, kind, incident_id, psp, slot, recipient, subject, body_text, body_html,"
    " slack_blocks, figures, last_event_id, status, attempts, last_error, response, run_id,"
    " created_at, sent_at"
)


@dataclass(frozen=True)
class Delivery:
    """One row of ``recon.notifications``: one message on one channel."""

    id: int
    dedup_key: str
    channel: str
    kind: str
    incident_id: str | None
    psp: str
    slot: datetime
    recipient: str
    subject: str
    body_text: str
    body_html: str
    slack_blocks: tuple[dict[str, Any], ...]
    figures: Figures | None
    last_event_id: int | None
    status: str
    attempts: int
    last_error: str | None
    response: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None

    @property
    def message(self) -> RenderedMessage:
        """The stored message, to send again exactly as it was composed."""
        from airflow_recon_provider.reconciliation.incident_messages import MessageKind

        return RenderedMessage(
            kind=MessageKind(self.kind),
            subject=self.subject,
            text=self.body_text,
            html=self.body_html,
            slack_text=self.subject,
            slack_blocks=self.slack_blocks,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Delivery:
        """A row of ``SELECT {_DELIVERY_COLUMNS}`` read by column name (``dict_row``)."""
        return cls(
            id=int(row["id"]),
            dedup_key=row["dedup_key"],
            channel=row["channel"],
            kind=row["kind"],
            incident_id=row["incident_id"],
            psp=row["psp"],
            slot=row["slot"],
            recipient=row["recipient"],
            subject=row["subject"],
            body_text=row["body_text"],
            body_html=row["body_html"],
            slack_blocks=tuple(row["slack_blocks"] or ()),
            figures=Figures.from_dict(row["figures"]) if row["figures"] else None,
            last_event_id=None if row["last_event_id"] is None else int(row["last_event_id"]),
            status=row["status"],
            attempts=int(row["attempts"]),
            last_error=row["last_error"],
            response=row["response"] or {},
            run_id=row["run_id"],
            created_at=row["created_at"],
            sent_at=row["sent_at"],
        )


class NotificationOutboxHook(ReconPostgresHook):
    """Read and write ``recon.notifications``, the outbox of the messages to finance.

    :param billing_gateway_conn_id: Airflow connection of the gateway database (the ``recon``
        schema lives there).
    :param config: reconciliation configuration; ``ReconConfig.load()`` when omitted.
    """

    conn_name_attr = "billing_gateway_conn_id"
    default_conn_name = BILLING_GATEWAY_CONN_ID
    conn_type = "billing_gateway"
    hook_name = "Billing Gateway notification outbox (PostgreSQL)"

    def __init__(self, *args: Any, billing_gateway_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def _select(self, query: str, params: Mapping[str, Any] | Sequence[Any]) -> list[dict[str, Any]]:
        """The rows of a read-only query, by column name (``dict_row``)."""
        with self.connect(autocommit=True) as conn:
            return by_name(conn).execute(query, params).fetchall()

    def _deliveries(self, query: str, params: Mapping[str, Any] | Sequence[Any]) -> list[Delivery]:
        """The deliveries of a ``SELECT {_DELIVERY_COLUMNS}``."""
        return [Delivery.from_row(r) for r in self._select(query, params)]

    def delivery(self, dedup_key: str, channel: str) -> Delivery | None:
        """The message ``dedup_key`` on ``channel``, if recorded."""
        found = self._deliveries(
            f"SELECT {_DELIVERY_COLUMNS} FROM recon.notifications WHERE dedup_key = %s AND channel = %s",
            (dedup_key, channel),
        )
        return found[0] if found else None

    def prepare_delivery(
        self,
        *,
        dedup_key: str,
        channel: str,
        kind: str,
        psp: str,
        slot: datetime,
        recipient: str,
        message: RenderedMessage,
        incident_id: str | None = None,
        figures: Figures | None = None,
        last_event_id: int | None = None,
        run_id: str | None = None,
    ) -> Delivery:
        """Record a message about to be sent (``pending``) and return its row.

        One row per ``(dedup_key, channel)``: preparing again refreshes the content of a
        message not yet delivered; a delivered one is returned unchanged (``sent``), so a
        re-run never sends it twice.
        """
        from psycopg.types.json import Jsonb

        if channel not in CHANNELS:
            raise IncidentInputError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
        if kind not in DELIVERY_KINDS:
            raise IncidentInputError(f"notification kind {kind!r} is not one of {', '.join(DELIVERY_KINDS)}")
        params = {
            "key": dedup_key,
            "channel": channel,
            "kind": kind,
            "incident_id": incident_id,
            "psp": psp,
            "slot": check_aware(slot, what="notification slot"),
            "recipient": recipient,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "blocks": Jsonb(list(message.slack_blocks)),
            "figures": Jsonb(figures.as_dict()) if figures is not None else None,
            "last_event_id": last_event_id,
            "run_id": run_id,
        }
        with self.connect() as conn:
            row = (
                by_name(conn)
                .execute(
                    "INSERT INTO recon.notifications (dedup_key, channel, kind, incident_id, psp, slot,"
                    " recipient, subject, body_text, body_html, slack_blocks, figures, last_event_id, run_id)"
                    " VALUES (%(key)s, %(channel)s, %(kind)s, %(incident_id)s, %(psp)s, %(slot)s,"
                    " %(recipient)s, %(subject)s, %(text)s, %(html)s, %(blocks)s, %(figures)s,"
                    " %(last_event_id)s, %(run_id)s)"
                    " ON CONFLICT (dedup_key, channel) DO UPDATE SET recipient = EXCLUDED.recipient,"
                    " subject = EXCLUDED.subject, body_text = EXCLUDED.body_text,"
                    " body_html = EXCLUDED.body_html, slack_blocks = EXCLUDED.slack_blocks,"
                    " figures = EXCLUDED.figures, last_event_id = EXCLUDED.last_event_id,"
                    " run_id = EXCLUDED.run_id, status = 'pending', updated_at = now()"
                    " WHERE recon.notifications.status <> 'sent'"
                    f" RETURNING {_DELIVERY_COLUMNS}",
                    params,
                )
                .fetchone()
            )
        return Delivery.from_row(row) if row is not None else self.delivery(dedup_key, channel)  # type: ignore[return-value]

    def mark_sent(self, delivery_id: int, response: Mapping[str, Any] | None = None) -> None:
        """The message was delivered; ``response`` is what the channel answered (JSON-able)."""
        from psycopg.types.json import Jsonb

        with self.connect() as conn:
            conn.execute(
                "UPDATE recon.notifications SET status = 'sent', attempts = attempts + 1, sent_at = now(),"
                " updated_at = now(), last_error = NULL, response = %s WHERE id = %s",
                (Jsonb(json_details(response or {})), delivery_id),
            )

    def mark_failed(self, delivery_id: int, error: str) -> None:
        """The message was not delivered (kept, retried on the next run)."""
        with self.connect() as conn:
            conn.execute(
                "UPDATE recon.notifications SET status = 'failed', attempts = attempts + 1,"
                " updated_at = now(), last_error = %s WHERE id = %s",
                (error[:2000], delivery_id),
            )

    def supersede(self, delivery_ids: Iterable[int], *, by: int) -> int:
        """Mark undelivered messages as carried by a later, delivered one."""
        ids = [int(i) for i in delivery_ids if int(i) != by]
        if not ids:
            return 0
        with self.connect() as conn:
            return conn.execute(
                "UPDATE recon.notifications SET status = 'superseded', superseded_by = %s, updated_at = now()"
                " WHERE id = ANY(%s) AND status IN ('pending', 'failed')",
                (by, ids),
            ).rowcount

    def last_sent(
        self, incident_id: str, channel: str, kinds: Sequence[str] = ("update", "normalized")
    ) -> Delivery | None:
        """The latest delivered update of the incident on ``channel``."""
        found = self._deliveries(
            f"SELECT {_DELIVERY_COLUMNS} FROM recon.notifications WHERE incident_id = %s AND channel = %s"
            " AND kind = ANY(%s) AND status = 'sent' ORDER BY slot DESC, id DESC LIMIT 1",
            (incident_id, channel, list(kinds)),
        )
        return found[0] if found else None

    def unsent(
        self,
        *,
        kinds: Sequence[str],
        incident_id: str | None = None,
        channel: str | None = None,
        exclude_key: str | None = None,
    ) -> list[Delivery]:
        """Messages recorded but not delivered (``pending`` or ``failed``), oldest first."""
        return self._deliveries(
            f"SELECT {_DELIVERY_COLUMNS} FROM recon.notifications WHERE status IN ('pending', 'failed')"
            " AND kind = ANY(%(kinds)s)"
            " AND (%(incident)s::text IS NULL OR incident_id = %(incident)s)"
            " AND (%(channel)s::text IS NULL OR channel = %(channel)s)"
            " AND (%(exclude)s::text IS NULL OR dedup_key <> %(exclude)s)"
            " ORDER BY slot, id",
            {"kinds": list(kinds), "incident": incident_id, "channel": channel, "exclude": exclude_key},
        )

    def last_update_slot(self, incident_id: str, *, before: datetime) -> datetime | None:
        """The latest slot for which an update of the incident was attempted, before ``before``."""
        (row,) = self._select(
            "SELECT max(slot) AS slot FROM recon.notifications WHERE incident_id = %s"
            " AND kind IN ('update', 'normalized') AND slot < %s",
            (incident_id, before),
        )
        return row["slot"]

    def deliveries(self, incident_id: str | None = None) -> list[Delivery]:
        """Every delivery (of one incident), in the order they were recorded."""
        return self._deliveries(
            f"SELECT {_DELIVERY_COLUMNS} FROM recon.notifications"
            " WHERE %(incident)s::text IS NULL OR incident_id = %(incident)s ORDER BY id",
            {"incident": incident_id},
        )

    def delivery_stats(self, incident_id: str) -> dict[str, dict[str, int]]:
        """``{channel: {status: count}}`` of the incident's messages."""
        rows = self._select(
            "SELECT channel, status, count(*) AS n FROM recon.notifications WHERE incident_id = %s"
            " GROUP BY channel, status",
            (incident_id,),
        )
        stats: dict[str, dict[str, int]] = {}
        for row in rows:
            stats.setdefault(row["channel"], {})[row["status"]] = int(row["n"])
        return stats


__all__ = ["CHANNELS", "DELIVERY_KINDS", "Delivery", "NotificationOutboxHook"]
