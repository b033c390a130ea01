"""The language of the pages a person reads, chosen in the page: ``?lang=en`` or ``?lang=pt-BR``
on any dashboard or incident page switches it, and a cookie keeps the choice for the pages
after (the default is ``[recon] language``, pt-BR unless configured). What tasks write —
timeline, e-mails, Slack — stays in the configured language."""

from __future__ import annotations

from typing import Any

from airflow_recon_provider.i18n import requested_language_scope
from airflow_recon_provider.reconciliation.i18n import LanguageError, normalize_language

#: the query parameter and the cookie that carry the choice
QUERY_PARAM = "lang"
COOKIE = "recon_lang"
#: a year: the choice is a preference, not a session
COOKIE_MAX_AGE = 365 * 24 * 3600


def chosen_language(value: str | None) -> str | None:
    """A normalized language, or ``None`` for a missing or unknown one (never an error page:
    the configured language is shown instead)."""
    if not value or not value.strip():
        return None
    try:
        return normalize_language(value)
    except LanguageError:
        return None


class LanguageMiddleware:
    """Pure ASGI middleware (so the choice reaches the route's context): reads ``?lang=`` or the
    cookie, renders the request in that language, and remembers a ``?lang=`` in the cookie."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import MutableHeaders
        from starlette.requests import HTTPConnection

        connection = HTTPConnection(scope)
        asked = connection.query_params.get(QUERY_PARAM)
        language = chosen_language(asked) or chosen_language(connection.cookies.get(COOKIE))

        async def send_remembering(message: dict[str, Any]) -> None:
            if asked is not None and message.get("type") == "http.response.start":
                headers = MutableHeaders(scope=message)
                value = chosen_language(asked)
                if value is None:  # an unknown choice forgets the earlier one
                    headers.append("set-cookie", f"{COOKIE}=; Path=/; Max-Age=0; SameSite=Lax")
                else:
                    headers.append(
                        "set-cookie", f"{COOKIE}={value}; Path=/; Max-Age={COOKIE_MAX_AGE}; SameSite=Lax"
                    )
            await send(message)

        with requested_language_scope(language):
            await self.app(scope, receive, send_remembering)


__all__ = ["COOKIE", "QUERY_PARAM", "LanguageMiddleware", "chosen_language"]
