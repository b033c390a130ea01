"""Finance communication: the incident update by e-mail and in the incidents Slack channel.

Runbook *Billing Gateway — Falhas de Reconciliação*, Comunicação: "Enviar resumo para
finance@platform.io a cada 30 minutos até normalização"; Ações de Contenção: "Informar
time financeiro sobre congelamento temporário e estimativa de retomada".

:class:`FinanceNotifier` is an Airflow notifier (``on_success_callback`` /
``on_failure_callback``, or called directly) and the engine of the
``billing_gateway_incident_updates`` DAG. Every message is logged in
``recon.notifications`` before it is sent and marked ``sent`` or ``failed`` after, per
channel: an unreachable mail server never loses an update — the next update carries
everything since the last one delivered and supersedes the failed one — and a re-run never
sends a delivered message twice.

E-mail goes through the smtp provider's ``SmtpHook`` (connection ``smtp_finance``: host,
port, TLS/SSL, login and ``from_email`` from the connection). Its ``send_email_smtp`` builds
an HTML-only ``multipart/mixed`` message, so the message here is a ``multipart/alternative``
(plain text + HTML) built with :mod:`email` and sent through the hook's authenticated
client.

Slack goes through the slack provider, chosen by the connection type of
``slack_incidents``: ``slack`` (a bot token; ``SlackHook`` -> ``chat.postMessage`` to the
incidents channel; set ``base_url`` in the extra to reach another API host) or
``slackwebhook`` (an incoming webhook bound to the channel; ``SlackWebhookHook``). The Web
API is the default: the channel is explicit and configurable, Slack answers with the
message's ``ts`` (kept in the delivery log), and ``ok: false`` errors surface as failures.
Both work against a local HTTP server standing in for Slack, which is how the tests run.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseNotifier

from airflow_recon_provider.hooks._connections import is_missing_connection, missing_connection_error
from airflow_recon_provider.i18n import _, language_scope, ngettext
from airflow_recon_provider.names import (
    BILLING_GATEWAY_CONN_ID,
    INCIDENTS_CHANNEL,
    SLACK_CONN_ID,
    SMTP_CONN_ID,
)
from airflow_recon_provider.reconciliation.errors import ConfigError
from airflow_recon_provider.reconciliation.incident_messages import (
    ContainmentNotice,
    IncidentUpdate,
    MessageKind,
    RenderedMessage,
    render_containment,
    render_update,
)
from airflow_recon_provider.reconciliation.incidents import (
    FINANCE_RECIPIENTS_DEFAULT,
    UPDATE_CADENCE,
    IncidentInputError,
    IncidentState,
    Step,
    check_aware,
    check_incident_id,
    check_text,
    format_time,
    missed_slots,
)
from airflow_recon_provider.reconciliation.steps import channel_name

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.hooks.notifications import Delivery, NotificationOutboxHook
    from airflow_recon_provider.reconciliation.config import ReconConfig
    from airflow_recon_provider.reconciliation.controls import ControlChange
    from airflow_recon_provider.reconciliation.finance_review import FinanceReview
    from airflow_recon_provider.reconciliation.incidents import Incident

DEFAULT_SMTP_CONN_ID = SMTP_CONN_ID
DEFAULT_SLACK_CONN_ID = SLACK_CONN_ID
DEFAULT_SLACK_CHANNEL = INCIDENTS_CHANNEL
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


class FinanceDeliveryError(RuntimeError):
    """Some messages could not be delivered; they are recorded and retried on the next run."""


def parse_recipients(value: str | Sequence[str]) -> list[str]:
    """``"a@x.io, b@x.io"`` or a list -> validated addresses (at least one)."""
    items = re.split(r"\s*[,;]\s*", value.strip()) if isinstance(value, str) else list(value)
    addresses = [a.strip() for a in items if isinstance(a, str) and a.strip()]
    bad = [a for a in addresses if not _EMAIL.fullmatch(a)]
    if bad or not addresses:
        raise ConfigError(
            f"finance recipients {value!r} are not e-mail addresses"
            + (f" ({', '.join(bad)})" if bad else "")
            + f"; e.g. {FINANCE_RECIPIENTS_DEFAULT}"
        )
    return addresses


class DeliveryStatus(enum.Enum):
    """What came of one message on one channel."""

    SENT = "sent"
    #: delivered before (an earlier run, a concurrent one): not sent again
    ALREADY_SENT = "already sent"
    #: not delivered; recorded in ``recon.notifications`` and retried on the next run
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryOutcome:
    """The outcome of one message on one channel, as :meth:`FinanceNotifier._attempt` (and a
    row found already ``sent``) produce it.

    Its text (``str()``) is what the timeline's details, the XComs and the dictionaries the
    notifier returns carry: ``sent``, ``already sent`` or ``failed: <error>``;
    :meth:`parse` reads such a text back.

    :param status: sent, already sent or failed.
    :param error: why it failed, as the server said it (``""`` otherwise).
    """

    status: DeliveryStatus
    error: str = ""

    @classmethod
    def failure(cls, error: str) -> DeliveryOutcome:
        return cls(DeliveryStatus.FAILED, error)

    @classmethod
    def parse(cls, text: str) -> DeliveryOutcome:
        """An outcome from its text (an XCom, a returned dictionary)."""
        status, _sep, error = str(text).partition(": ")
        return cls(DeliveryStatus(status), error if status == DeliveryStatus.FAILED.value else "")

    @property
    def failed(self) -> bool:
        return self.status is DeliveryStatus.FAILED

    @property
    def delivered(self) -> bool:
        """Sent now or before."""
        return self.status is not DeliveryStatus.FAILED

    def for_people(self) -> str:
        """In the language in force; the error itself stays as the server said it."""
        if self.status is DeliveryStatus.SENT:
            return _("sent")
        if self.status is DeliveryStatus.ALREADY_SENT:
            return _("already sent")
        return _("failed: %(why)s", why=self.error)

    def __str__(self) -> str:
        return f"failed: {self.error}" if self.failed else self.status.value


SENT = DeliveryOutcome(DeliveryStatus.SENT)
ALREADY_SENT = DeliveryOutcome(DeliveryStatus.ALREADY_SENT)


def _texts(outcomes: Mapping[Any, DeliveryOutcome]) -> dict[Any, str]:
    """Outcomes as the texts the timeline's details and the returned dictionaries carry."""
    return {key: str(outcome) for key, outcome in outcomes.items()}


@dataclass(frozen=True)
class UpdateResult:
    """What one incident update did, per channel."""

    incident_id: str
    kind: str
    channels: Mapping[str, DeliveryOutcome] = field(default_factory=dict)
    skipped: str = ""

    @property
    def failed(self) -> dict[str, DeliveryOutcome]:
        return {ch: outcome for ch, outcome in self.channels.items() if outcome.failed}

    def as_dict(self) -> dict[str, Any]:
        """For an XCom: each channel's outcome as its text (``sent``, ``already sent``,
        ``failed: <error>``)."""
        return {
            "incident_id": self.incident_id,
            "kind": self.kind,
            "channels": _texts(self.channels),
            "skipped": self.skipped,
        }


_T = TypeVar("_T")


def _in_configured_language(method: Callable[..., _T]) -> Callable[..., _T]:
    """What the method composes for people (messages, timeline texts) is in ``[recon]
    language``."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        with language_scope():
            return method(*args, **kwargs)

    return wrapper


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # Slack's error code ("channel_not_found", "invalid_auth") is what on-call needs to read
    slack_error = getattr(getattr(exc, "response", None), "get", lambda _k: None)("error")
    if slack_error:
        text = f"Slack answered {slack_error!r}; {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FinanceNotifier(BaseNotifier):
    """Send an incident update (or a containment notice) to finance by e-mail and to Slack.

    As a callback, the incident is ``incident_id``, else the open incident of ``psp``, else
    the run's ``incident_id`` / ``psp`` params::

        on_failure_callback=FinanceNotifier(psp="{{ params.psp }}", headline="Reprocessing failed")

    Called directly (``FinanceNotifier(incident_id="INCIDENT-472").notify({})``) it sends the
    update at once. The ``billing_gateway_incident_updates`` DAG uses
    :meth:`send_incident_update` every 30 minutes for every incident not yet normalized.

    :param incident_id: the incident (``INCIDENT-<n>``); templated.
    :param psp: the PSP whose open incident to report when ``incident_id`` is empty; templated.
    :param headline: a first line above the update (e.g. what just failed); templated.
    :param recipients: finance's addresses, comma separated or a list; templated.
    :param from_email: the sender; default: ``from_email`` of the SMTP connection's extra.
    :param smtp_conn_id: the SMTP connection (smtp provider).
    :param slack_conn_id: the Slack connection (type ``slack`` or ``slackwebhook``); ``None``
        or empty sends e-mail only.
    :param slack_channel: the incidents channel (``slack`` connections only; a webhook is
        bound to its channel).
    :param billing_gateway_conn_id: the gateway database holding the ``recon`` schema.
    :param actor: the name written on the incident timeline for what this notifier does.
    :param config: reconciliation configuration; ``ReconConfig.load()`` when omitted.
    """

    template_fields: Sequence[str] = (
        "incident_id",
        "psp",
        "headline",
        "recipients",
        "smtp_conn_id",
        "slack_conn_id",
        "slack_channel",
    )

    def __init__(
        self,
        *,
        incident_id: str | None = None,
        psp: str | None = None,
        headline: str = "",
        recipients: str | Sequence[str] = FINANCE_RECIPIENTS_DEFAULT,
        from_email: str | None = None,
        smtp_conn_id: str = DEFAULT_SMTP_CONN_ID,
        slack_conn_id: str | None = DEFAULT_SLACK_CONN_ID,
        slack_channel: str = DEFAULT_SLACK_CHANNEL,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        actor: str = "finance-notifier",
        config: ReconConfig | None = None,
    ) -> None:
        super().__init__()
        self.incident_id = incident_id
        self.psp = psp
        self.headline = headline
        self.recipients = recipients
        self.from_email = from_email
        self.smtp_conn_id = smtp_conn_id
        self.slack_conn_id = slack_conn_id
        self.slack_channel = slack_channel
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.actor = actor
        self.config = config
        self._hook: IncidentHook | None = None

    # -- configuration -------------------------------------------------------------------------
    @property
    def channels(self) -> tuple[str, ...]:
        return ("email", "slack") if self.slack_conn_id else ("email",)

    @property
    def recipient_list(self) -> list[str]:
        return parse_recipients(self.recipients)

    def incident_hook(self) -> IncidentHook:
        if self._hook is None:
            from airflow_recon_provider.hooks.incidents import IncidentHook

            self._hook = IncidentHook(
                billing_gateway_conn_id=self.billing_gateway_conn_id, config=self.config
            )
        return self._hook

    def outbox(self) -> NotificationOutboxHook:
        """The notification outbox (``recon.notifications``) on the incident hook's connection."""
        return self.incident_hook().outbox

    @staticmethod
    def _connection(conn_id: str) -> Any:
        from airflow.sdk import BaseHook

        try:
            return BaseHook.get_connection(conn_id)
        except Exception as exc:
            if is_missing_connection(exc):
                raise missing_connection_error(conn_id) from None
            raise

    def check_connections(self) -> None:
        """Fail before anything is written when a channel is not configured: missing
        connection, wrong connection type, no sender address, bad recipients."""
        self.recipient_list  # noqa: B018 - validates
        smtp = self._connection(self.smtp_conn_id)
        if not self._sender(smtp):
            raise ConfigError(
                f"no sender address: set from_email in the extra of connection {self.smtp_conn_id!r} "
                "or pass from_email to the notifier"
            )
        if self.slack_conn_id:
            slack = self._connection(self.slack_conn_id)
            if slack.conn_type not in {"slack", "slackwebhook"}:
                raise ConfigError(
                    f"connection {self.slack_conn_id!r} is of type {slack.conn_type!r}; expected 'slack' "
                    "(bot token, chat.postMessage) or 'slackwebhook' (incoming webhook)"
                )

    def sender(self) -> str:
        """The sender of finance's e-mails (the organizer of the review invitation)."""
        sender = self._sender(self._connection(self.smtp_conn_id))
        if not sender:
            raise ConfigError(
                f"no sender address: set from_email in the extra of connection {self.smtp_conn_id!r} "
                "or pass from_email to the notifier"
            )
        return sender

    def _sender(self, smtp_conn: Any) -> str | None:
        if self.from_email:
            return self.from_email
        extra = smtp_conn.extra_dejson or {}
        if extra.get("from_email"):
            return str(extra["from_email"])
        login = smtp_conn.login or ""
        return login if _EMAIL.fullmatch(login) else None

    def _email_recipients(self, review: FinanceReview | None = None) -> list[str]:
        """Finance's addresses, and those invited to the review (on-call) when it is attached."""
        recipients = self.recipient_list
        known = {a.lower() for a in recipients}
        return recipients + [a for a in (review.attendees if review else ()) if a.lower() not in known]

    def _recipient_of(self, channel: str, review: FinanceReview | None = None) -> str:
        if channel == "email":
            return ", ".join(self._email_recipients(review))
        return self.slack_channel or f"webhook {self.slack_conn_id}"

    # -- sending ---------------------------------------------------------------------------------
    def deliver(
        self,
        channel: str,
        message: RenderedMessage,
        *,
        delivery_id: int | None = None,
        review: FinanceReview | None = None,
    ) -> dict[str, Any]:
        """Send ``message`` on ``channel`` now; return what the server answered (for the log).

        :param review: the review with finance to invite to (e-mail only): its invitation is
            attached (``text/calendar; method=REQUEST``) and its attendees receive the e-mail.
        """
        if channel == "email":
            return self._send_email(message, delivery_id=delivery_id, review=review)
        if channel == "slack":
            return self._send_slack(message)
        raise IncidentInputError(f"unknown channel {channel!r}")

    def _send_email(
        self, message: RenderedMessage, *, delivery_id: int | None, review: FinanceReview | None = None
    ) -> dict[str, Any]:
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        from airflow.providers.smtp.hooks.smtp import SmtpHook

        recipients = self._email_recipients(review)
        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
            sender = self._sender(hook.conn)
            domain = sender.rsplit("@", 1)[-1] if sender else "localhost"
            mail = EmailMessage()
            mail["Subject"] = message.subject
            mail["From"] = sender
            mail["To"] = ", ".join(recipients)
            mail["Date"] = formatdate(localtime=False, usegmt=True)
            # one Message-ID per logged delivery: a copy re-sent after a crash between the
            # send and its "sent" mark is recognisable as the same message by mail clients
            mail["Message-ID"] = (
                f"<recon-notification-{delivery_id}@{domain}>" if delivery_id else make_msgid(domain=domain)
            )
            mail["X-Recon-Kind"] = message.kind.value
            if delivery_id is not None:
                mail["X-Recon-Delivery"] = str(delivery_id)
            mail.set_content(message.text)
            mail.add_alternative(message.html, subtype="html")
            if review is not None:
                # Encerramento 4: the same UID on every send, so calendars keep one event
                mail.add_attachment(
                    review.to_ical(),
                    maintype="text",
                    subtype="calendar",
                    filename=review.filename,
                    params={"method": "REQUEST", "charset": "utf-8"},
                )
            # SmtpHook connected, negotiated TLS and logged in as its connection says; its
            # send_email_smtp cannot carry a plain-text alternative, so send through its client
            refused = hook._smtp_client.send_message(mail, from_addr=sender, to_addrs=recipients)
        if refused:
            raise FinanceDeliveryError(f"the mail server refused recipient(s) {', '.join(refused)}")
        return {
            "to": recipients,
            "message_id": mail["Message-ID"],
            **({"invitation": review.uid} if review is not None else {}),
        }

    def _send_slack(self, message: RenderedMessage) -> dict[str, Any]:
        conn = self._connection(self.slack_conn_id)  # type: ignore[arg-type]
        blocks = list(message.slack_blocks)
        if conn.conn_type == "slackwebhook":
            from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

            webhook = SlackWebhookHook(slack_webhook_conn_id=self.slack_conn_id, timeout=30)
            response = webhook.send(text=message.slack_text, blocks=blocks or None)
            return {"status": response.status_code, "via": "webhook"}
        from airflow.providers.slack.hooks.slack import SlackHook

        api = SlackHook(slack_conn_id=self.slack_conn_id, timeout=30)
        # SlackHook.call raises SlackApiError on {"ok": false}: a failure, logged and retried
        response = api.call(
            "chat.postMessage",
            json={
                "channel": self.slack_channel,
                "text": message.slack_text,
                "blocks": blocks,
                "unfurl_links": False,
                "unfurl_media": False,
            },
        )
        return {"ok": bool(response.get("ok")), "channel": response.get("channel"), "ts": response.get("ts")}

    def _attempt(
        self,
        row: Delivery,
        message: RenderedMessage,
        *,
        review: FinanceReview | None = None,
    ) -> DeliveryOutcome:
        try:
            response = self.deliver(row.channel, message, delivery_id=row.id, review=review)
        except Exception as exc:
            error = _describe(exc)
            self.outbox().mark_failed(row.id, error)
            self.log.warning(
                "%s %s of %s not delivered (recorded, retried on the next run): %s",
                row.channel,
                row.kind,
                row.incident_id or row.psp,
                error,
            )
            return DeliveryOutcome.failure(error)
        self.outbox().mark_sent(row.id, response)
        self.log.info(
            "%s %s of %s sent to %s", row.channel, row.kind, row.incident_id or row.psp, row.recipient
        )
        return SENT

    # -- the incident update ----------------------------------------------------------------------
    def compose_update(
        self,
        incident: Incident,
        *,
        channel: str,
        slot: datetime,
        figures: Any,
        figures_note: str = "",
        missed: Sequence[datetime] = (),
        cadence: timedelta | None = UPDATE_CADENCE,
        exclude_key: str | None = None,
        review: FinanceReview | None = None,
        recovery: tuple[Mapping[str, Any] | None, str] = (None, ""),
    ) -> tuple[IncidentUpdate, int, list[Delivery]]:
        """The update for ``channel``: steps since the last update delivered there, the figures
        of that update, and the undelivered updates this one carries. Returns the update, the
        newest event id it covers, and those undelivered rows."""
        hook = self.incident_hook()
        last = self.outbox().last_sent(incident.incident_id, channel)
        after = (last.last_event_id or 0) if last is not None else 0
        events = hook.events_after(incident.incident_id, after)
        unsent = self.outbox().unsent(
            kinds=("update", "normalized"),
            incident_id=incident.incident_id,
            channel=channel,
            exclude_key=exclude_key,
        )
        missed_all = sorted({u.slot for u in unsent if u.kind == "update"} | set(missed))
        update = IncidentUpdate(
            incident=incident,
            as_of=slot,
            figures=figures,
            steps=tuple(e for e in events if not e.is_communication),
            previous_figures=last.figures if last is not None else None,
            since=last.slot if last is not None else None,
            missed=tuple(missed_all),
            figures_note=figures_note,
            headline=self.headline or "",
            cadence=cadence,
            review=review,
            recovery=recovery[0],
            recovery_note=recovery[1],
        )
        return update, max([after, *(e.id for e in events)]), unsent

    def _closing_review(self, incident: Incident) -> FinanceReview | None:
        """The review with finance scheduled when ``incident`` was closed, if any."""
        from airflow_recon_provider.reconciliation.finance_review import scheduled_review

        if incident.state is not IncidentState.CLOSED:
            return None
        return scheduled_review(incident.incident_id, self.incident_hook().timeline(incident.incident_id))

    def _invitation_delivered(self, review: FinanceReview) -> bool:
        return any(
            d.channel == "email" and d.status == "sent" and d.response.get("invitation") == review.uid
            for d in self.outbox().deliveries(review.incident_id)
        )

    def _send_review_invitation(
        self, incident: Incident, review: FinanceReview, *, slot: datetime, run_id: str | None
    ) -> UpdateResult:
        """The closing e-mail again, now with the review's invitation, when the final update
        was delivered before the review was scheduled (e.g. by the incident-updates DAG
        between recovery and closure). Once per review."""
        hook = self.incident_hook()
        figures, note = hook.current_figures(incident)
        update, last_event_id, _unsent = self.compose_update(
            incident, channel="email", slot=slot, figures=figures, figures_note=note, cadence=None,
            review=review,
        )  # fmt: skip
        message = render_update(update)
        row = self.outbox().prepare_delivery(
            dedup_key=f"{incident.incident_id}:review:{review.uid}",
            channel="email",
            kind=MessageKind.CLOSING_REPORT.value,
            incident_id=incident.incident_id,
            psp=incident.psp,
            slot=slot,
            recipient=self._recipient_of("email", review),
            message=message,
            figures=figures if not note else None,
            last_event_id=last_event_id,
            run_id=run_id,
        )
        outcome = ALREADY_SENT if row.status == "sent" else self._attempt(row, message, review=review)
        hook.record_event(
            incident.incident_id,
            step=Step.NORMALIZED,
            outcome=_(
                "invitation to the review with finance (%(when)s): e-mail %(outcome)s",
                when=review.when,
                outcome=outcome.for_people(),
            ),
            actor=self.actor,
            run_id=run_id,
            details={"channels": {"email": str(outcome)}, "review_uid": review.uid,
                     "recipients": self._recipient_of("email", review)},
        )  # fmt: skip
        return UpdateResult(incident.incident_id, MessageKind.CLOSING_REPORT.value, {"email": outcome})

    @_in_configured_language
    def send_incident_update(
        self,
        incident_id: str,
        *,
        slot: datetime | None = None,
        run_id: str | None = None,
        cadence: timedelta | None = UPDATE_CADENCE,
        detect_missed: bool = False,
    ) -> UpdateResult:
        """Send the incident's update for ``slot`` on every channel not yet delivered.

        Not normalized: the regular update of ``slot`` (one per slot and channel). Recovered
        or closed: the final "normalized" update, once; after it is delivered everywhere the
        incident is marked as communicated and never reported again (until a relapse).

        :param slot: the moment of the update (the DAG's logical date); default: now.
        :param run_id: the Airflow run sending it.
        :param cadence: time to the next update, written in the message.
        :param detect_missed: record an event for the cadence slots since the previous update
            where no update was even attempted (the DAG was not running).
        """
        check_incident_id(incident_id)
        self.check_connections()
        hook = self.incident_hook()
        incident = hook.get(incident_id)
        slot = check_aware(slot, what="update time") if slot is not None else datetime.now(UTC)
        normalized = incident.normalized
        kind = MessageKind.NORMALIZED if normalized else MessageKind.UPDATE
        if incident.communication_done_at is not None:
            # the final update went out before the review was scheduled: the invitation follows
            review = self._closing_review(incident)
            if review is not None and not self._invitation_delivered(review):
                return self._send_review_invitation(incident, review, slot=slot, run_id=run_id)
            return UpdateResult(incident_id, kind.value, {}, skipped="final update already delivered")
        if normalized:
            # one final message per recovery: a relapse and a new recovery get their own
            moment = incident.recovered_at or incident.closed_at or incident.opened_at
            dedup_key = f"{incident_id}:normalized:{moment.isoformat()}"
        else:
            dedup_key = f"{incident_id}:update:{slot.isoformat()}"

        pending = {ch: self.outbox().delivery(dedup_key, ch) for ch in self.channels}
        todo = [ch for ch in self.channels if pending[ch] is None or pending[ch].status != "sent"]
        outcomes: dict[str, DeliveryOutcome] = {ch: ALREADY_SENT for ch in self.channels if ch not in todo}
        if not todo:
            return UpdateResult(incident_id, kind.value, outcomes, skipped="already sent")

        missed: list[datetime] = []
        if detect_missed and not normalized and all(row is None for row in pending.values()):
            previous = self.outbox().last_update_slot(incident_id, before=slot) or incident.opened_at
            missed = missed_slots(previous, slot, cadence=cadence or UPDATE_CADENCE)
            if missed:
                hook.record_event(
                    incident_id,
                    step=Step.UPDATE_MISSED,
                    outcome=ngettext(
                        "%(num)s finance update due at %(moments)s was never attempted (the "
                        "incident-updates DAG did not run); the next update carries it",
                        "%(num)s finance updates due at %(moments)s were never attempted (the "
                        "incident-updates DAG did not run); the next update carries them",
                        len(missed),
                        moments=", ".join(format_time(m) for m in missed),
                    ),
                    actor=self.actor,
                    run_id=run_id,
                    details={"slots": [m.isoformat() for m in missed]},
                )

        figures, note = hook.current_figures(incident)
        review = self._closing_review(incident) if normalized else None
        # the three recovery criteria with their figures (runbook, Critérios de Recuperação)
        recovery = hook.current_recovery(incident)
        for channel in todo:
            # the closing e-mail carries the review's invitation (Encerramento 4)
            channel_review = review if channel == "email" else None
            update, last_event_id, unsent = self.compose_update(
                incident,
                channel=channel,
                slot=slot,
                figures=figures,
                figures_note=note,
                missed=missed,
                cadence=None if normalized else cadence,
                exclude_key=dedup_key,
                review=channel_review,
                recovery=recovery,
            )
            message = render_update(update)
            row = self.outbox().prepare_delivery(
                dedup_key=dedup_key,
                channel=channel,
                kind=kind.value,
                incident_id=incident_id,
                psp=incident.psp,
                slot=slot,
                recipient=self._recipient_of(channel, channel_review),
                message=message,
                figures=figures,
                last_event_id=last_event_id,
                run_id=run_id,
            )
            if row.status == "sent":  # delivered by a concurrent run meanwhile
                outcomes[channel] = ALREADY_SENT
                continue
            outcomes[channel] = self._attempt(row, message, review=channel_review)
            if outcomes[channel] == SENT:
                self.outbox().supersede([u.id for u in unsent], by=row.id)

        result = UpdateResult(incident_id, kind.value, {ch: outcomes[ch] for ch in self.channels})
        attempted = {ch: outcomes[ch] for ch in todo}
        failed = {ch: o for ch, o in attempted.items() if o.failed}
        sent = [ch for ch, o in attempted.items() if o == SENT]
        summary = (
            _("sent by %(channels)s", channels=_(" and ").join(channel_name(ch) for ch in sent))
            if sent
            else _("not delivered")
        )
        if failed:
            summary += "; " + _(
                "failed: %(why)s",
                why="; ".join(f"{channel_name(ch)} ({o.error})" for ch, o in failed.items()),
            )
            summary += "; " + _("retried on the next run")
        when = format_time(slot)
        hook.record_event(
            incident_id,
            step=Step.NORMALIZED if normalized else Step.UPDATE,
            outcome=(
                _("final update of %(when)s %(summary)s", when=when, summary=summary)
                if normalized
                else _("update of %(when)s %(summary)s", when=when, summary=summary)
            ),
            actor=self.actor,
            run_id=run_id,
            # fresh figures update the incident's divergence (runbook, Comunicação)
            figures=figures if not note else None,
            details={
                "slot": slot.isoformat(),
                "channels": _texts(attempted),
                "recipients": self._recipient_of("email", review),
                **({"review_uid": review.uid} if review is not None else {}),
            },
        )
        if normalized and all(o.delivered for o in result.channels.values()):
            hook.mark_communication_done(incident_id)
        return result

    # -- the containment notice -----------------------------------------------------------------------
    @_in_configured_language
    def send_containment_notice(
        self,
        psp: str,
        *,
        paused_by: str,
        reason: str,
        eta_resumption: datetime | None = None,
        incident_id: str | None = None,
        paused_at: datetime | None = None,
        run_id: str | None = None,
    ) -> dict[str, str]:
        """Tell finance that reconciliation of ``psp`` is frozen and when it should resume.

        The notice is tied to ``incident_id``, else to the PSP's open incident if there is one
        (its resumption estimate is then recorded on it). Returns the outcome per channel, as
        its text (:class:`DeliveryOutcome`: ``sent``, ``already sent``, ``failed: <error>``);
        undelivered notices are retried by the incident-updates DAG.

        :param psp: the paused PSP (must be known).
        :param paused_by: who paused it.
        :param reason: why.
        :param eta_resumption: estimated resumption (timezone-aware); ``None``: not yet known.
        :param incident_id: the incident of the pause.
        :param paused_at: when it was paused; default now. One notice per PSP and moment.
        :param run_id: the Airflow run of the pause.
        """
        from airflow_recon_provider.reconciliation.config import check_psp_name
        from airflow_recon_provider.reconciliation.incidents import IncidentNotFoundError

        check_psp_name(psp)
        paused_by = check_text(paused_by, what="paused_by", max_length=200)
        reason = check_text(reason, what="reason")
        eta = check_aware(eta_resumption, what="estimated resumption") if eta_resumption else None
        paused_at = check_aware(paused_at, what="paused_at") if paused_at else datetime.now(UTC)
        if incident_id:
            check_incident_id(incident_id)
        self.check_connections()
        hook = self.incident_hook()
        hook.gateway.resolve_psp(psp)
        incident = hook.get(incident_id) if incident_id else hook.open_incident_for(psp)
        if incident is not None and incident.psp != psp:
            raise IncidentNotFoundError(
                f"incident {incident.incident_id} is of PSP {incident.psp}, not {psp}"
            )
        if incident is not None and incident.state is IncidentState.CLOSED:
            raise IncidentInputError(
                f"incident {incident.incident_id} is closed; a pause belongs to an open one"
            )

        if incident is not None and eta is not None and incident.eta_resumption != eta:
            incident = hook.set_eta(incident.incident_id, eta, actor=paused_by, run_id=run_id)
        figures, _note = hook.current_figures(incident) if incident is not None else (None, "")
        notice = ContainmentNotice(
            psp=psp,
            paused_at=paused_at,
            paused_by=paused_by,
            reason=reason,
            eta_resumption=eta,
            incident_id=incident.incident_id if incident else None,
            figures=figures,
            psp_ticket=incident.psp_ticket if incident else None,
        )
        message = render_containment(notice)
        dedup_key = f"containment:{psp}:{paused_at.isoformat()}"
        outcomes: dict[str, DeliveryOutcome] = {}
        for channel in self.channels:
            row = self.outbox().prepare_delivery(
                dedup_key=dedup_key,
                channel=channel,
                kind=MessageKind.CONTAINMENT.value,
                incident_id=notice.incident_id,
                psp=psp,
                slot=paused_at,
                recipient=self._recipient_of(channel),
                message=message,
                figures=figures,
                run_id=run_id,
            )
            outcomes[channel] = ALREADY_SENT if row.status == "sent" else self._attempt(row, message)
        if incident is not None:
            hook.record_event(
                incident.incident_id,
                step=Step.CONTAINMENT_NOTICE,
                outcome=_(
                    "finance told reconciliation of %(psp)s is paused, resumption %(eta)s: %(channels)s",
                    psp=psp,
                    eta=format_time(eta) if eta else _("not yet estimated"),
                    channels=", ".join(f"{channel_name(ch)} {o.for_people()}" for ch, o in outcomes.items()),
                ),
                actor=paused_by,
                run_id=run_id,
                details={"channels": _texts(outcomes), "paused_at": paused_at.isoformat()},
            )
        return _texts(outcomes)

    # -- pause / resume in the incidents channel ---------------------------------------------------
    def check_slack_connection(self) -> None:
        """Fail before anything is written when the incidents channel is not configured."""
        if not self.slack_conn_id:
            return
        slack = self._connection(self.slack_conn_id)
        if slack.conn_type not in {"slack", "slackwebhook"}:
            raise ConfigError(
                f"connection {self.slack_conn_id!r} is of type {slack.conn_type!r}; expected 'slack' "
                "(bot token, chat.postMessage) or 'slackwebhook' (incoming webhook)"
            )

    @_in_configured_language
    def send_control_message(self, change: ControlChange, *, run_id: str | None = None) -> dict[str, str]:
        """Tell the incidents channel that reconciliation of a PSP was paused or resumed (the
        runbook's ``/billing-gateway reconciliation pause|resume <psp>``).

        Slack only (the channel is where on-call looks; finance hears of a pause through the
        containment notice). Logged in ``recon.notifications`` like every message, one per
        change: a retry of the same change never posts twice. Returns ``{"slack": outcome}``
        (``{}`` when no Slack connection is configured); a failed delivery is recorded, not
        raised.
        """
        from airflow_recon_provider.reconciliation.controls import render_control_message

        if not self.slack_conn_id:
            return {}
        control = change.control
        moment = control.changed_at or datetime.now(UTC)
        self.check_slack_connection()
        message = render_control_message(change, run_id=run_id)
        row = self.outbox().prepare_delivery(
            dedup_key=f"control:{control.psp}:{control.state.value}:{moment.isoformat()}",
            channel="slack",
            kind=MessageKind.CONTROL.value,
            incident_id=control.incident_id,
            psp=control.psp,
            slot=moment,
            recipient=self._recipient_of("slack"),
            message=message,
            run_id=run_id,
        )
        return {"slack": str(ALREADY_SENT if row.status == "sent" else self._attempt(row, message))}

    def resend_unsent(
        self, *, kinds: Sequence[str] = ("containment",), run_id: str | None = None
    ) -> dict[int, str]:
        """Send again, exactly as composed, the undelivered messages of ``kinds`` (updates are
        not resent this way: the next update carries them). Returns each row's outcome as its
        text (:class:`DeliveryOutcome`)."""
        results: dict[int, str] = {}
        for row in self.outbox().unsent(kinds=kinds):
            if row.channel not in self.channels:
                continue
            results[row.id] = str(self._attempt(row, row.message))
        return results

    # -- as a callback --------------------------------------------------------------------------------
    def _resolve_incident(self, context: Context | Mapping[str, Any]) -> str:
        # a task callback has the run's params; a DAG callback may only have the run's conf
        dag_run = context.get("dag_run")
        given = {**(getattr(dag_run, "conf", None) or {}), **(context.get("params") or {})}

        def pick(own: str | None, key: str) -> str:
            value = (own or "").strip() or str(given.get(key) or "").strip()
            return "" if value == "None" else value

        incident_id = pick(self.incident_id, "incident_id")
        if incident_id:
            return check_incident_id(incident_id)
        psp = pick(self.psp, "psp")
        if not psp:
            raise IncidentInputError("FinanceNotifier needs an incident_id or a psp (argument or run params)")
        incident = self.incident_hook().open_incident_for(psp)
        if incident is None:
            from airflow_recon_provider.reconciliation.incidents import IncidentNotFoundError

            raise IncidentNotFoundError(f"PSP {psp} has no open incident to report on")
        return incident.incident_id

    def notify(self, context: Context | Mapping[str, Any]) -> None:
        """Send the update now (callback, or a direct call with any context, even ``{}``)."""
        incident_id = self._resolve_incident(context)
        dag_run = context.get("dag_run")
        run_id = context.get("run_id") or getattr(dag_run, "run_id", None)
        result = self.send_incident_update(incident_id, run_id=run_id)
        if result.failed:
            raise FinanceDeliveryError(
                f"update of {incident_id} not delivered by {', '.join(result.failed)} (recorded in "
                "recon.notifications; the next update carries it)"
            )


def send_containment_notice(
    psp: str,
    *,
    paused_by: str,
    reason: str,
    eta_resumption: datetime | None = None,
    incident_id: str | None = None,
    paused_at: datetime | None = None,
    run_id: str | None = None,
    notifier: FinanceNotifier | None = None,
) -> dict[str, str]:
    """Tell finance of the freeze of ``psp`` and of the estimated resumption (runbook, Ações de
    Contenção). For the pause operator: call it right after ``recon.controls`` says paused.

    See :meth:`FinanceNotifier.send_containment_notice`; ``notifier`` chooses recipients and
    connections (default: ``smtp_finance``, ``slack_incidents``, finance@platform.io).
    """
    return (notifier or FinanceNotifier(actor=paused_by)).send_containment_notice(
        psp,
        paused_by=paused_by,
        reason=reason,
        eta_resumption=eta_resumption,
        incident_id=incident_id,
        paused_at=paused_at,
        run_id=run_id,
    )


__all__ = [
    "DEFAULT_SLACK_CHANNEL",
    "DEFAULT_SLACK_CONN_ID",
    "DEFAULT_SMTP_CONN_ID",
    "DeliveryOutcome",
    "DeliveryStatus",
    "FinanceDeliveryError",
    "FinanceNotifier",
    "UpdateResult",
    "parse_recipients",
    "send_containment_notice",
]
