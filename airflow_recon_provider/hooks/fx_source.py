"""Hook on the FX rates service (connection ``fx_rates_source``, an ``http`` connection):
the Banco Central do Brasil PTAX OData service, or anything that answers like it.

The connection's host is the service base URL, port included
(``https://olinda.bcb.gov.br/olinda/servico/PTAX/versao/v1/odata``). Extras: ``timeout``
(seconds, HttpHook's own), ``max_attempts`` and ``backoff_seconds`` (retries while the
service is unavailable); other extras are sent as HTTP headers (HttpHook behaviour).

Failures: HTTP 5xx or 429, a timeout or a refused connection are retried a bounded number of
times with exponential backoff, then :class:`FxSourceUnavailableError`; another 4xx is
:class:`FxSourceRequestError` at once; an answer that is not a quotation of the day is
:class:`PtaxFormatError`.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_recon_provider.hooks._connections import check_header_extras, is_missing_connection
from airflow_recon_provider.hooks._http import send_with_retries, setting
from airflow_recon_provider.names import FX_RATES_SOURCE_CONN_ID
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError
from airflow_recon_provider.reconciliation.fx import (
    PTAX_QUOTE_CURRENCY,
    FxSourceRequestError,
    FxSourceUnavailableError,
    check_ptax_applies,
    parse_ptax_day,
    ptax_day_endpoint,
)
from airflow_recon_provider.reconciliation.money import FxRate

#: connection extras read by this hook, not sent as headers
RETRY_EXTRAS = ("max_attempts", "backoff_seconds")


class PtaxHook(HttpHook):
    """Read the day's PTAX quotation of a currency (reais per unit).

    :param fx_rates_conn_id: Airflow connection of the rates service.
    :param timeout: seconds to connect and to answer, per attempt (the connection extra
        ``timeout`` wins).
    :param max_attempts: attempts per request while the service is unavailable (extra
        ``max_attempts`` wins), at least 1.
    :param backoff_seconds: first wait between attempts, doubling (extra ``backoff_seconds``
        wins).
    :param max_backoff_seconds: longest wait between attempts.
    """

    conn_name_attr = "fx_rates_conn_id"
    default_conn_name = FX_RATES_SOURCE_CONN_ID
    conn_type = "http"
    hook_name = "FX rates service (PTAX)"

    #: how the hook waits between attempts (tests replace it)
    _sleep = staticmethod(time.sleep)

    def __init__(
        self,
        fx_rates_conn_id: str = default_conn_name,
        *,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(method="GET", http_conn_id=fx_rates_conn_id, **kwargs)
        self.fx_rates_conn_id = fx_rates_conn_id
        self.timeout = float(setting(timeout, "timeout"))
        self.max_attempts = int(setting(max_attempts, "max_attempts", integer=True))
        self.backoff_seconds = float(setting(backoff_seconds, "backoff_seconds", zero=True))
        self.max_backoff_seconds = float(setting(max_backoff_seconds, "max_backoff_seconds", zero=True))

    def _configure_session_from_extra(
        self, session: Any, connection: Any, extra_options: dict[str, Any]
    ) -> Any:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        for name in RETRY_EXTRAS:  # settings of this hook, not headers for the service
            session.headers.pop(name, None)
        check_header_extras(session.headers, connection.conn_id)
        extra = connection.extra_dejson
        where = f"connection {connection.conn_id!r}: extra"
        if "max_attempts" in extra:
            self.max_attempts = int(setting(extra["max_attempts"], f"{where} max_attempts", integer=True))
        if "backoff_seconds" in extra:
            self.backoff_seconds = float(
                setting(extra["backoff_seconds"], f"{where} backoff_seconds", zero=True)
            )
        if "timeout" in extra:
            self.timeout = float(setting(extra["timeout"], f"{where} timeout"))
        return session

    def _session(self) -> requests.Session:
        try:
            return self.get_conn(headers={"Accept": "application/json"})
        except Exception as exc:
            if is_missing_connection(exc):
                conn_id = self.fx_rates_conn_id
                raise ConnectionMissingError(
                    f"Airflow connection {conn_id!r} is not defined; create it (type http, host = "
                    "https://olinda.bcb.gov.br/olinda/servico/PTAX/versao/v1/odata) or set "
                    f"AIRFLOW_CONN_{conn_id.upper()}"
                ) from None
            raise

    def fetch_day(self, currency: str, day: date) -> bytes:
        """The raw ``CotacaoMoedaDia`` answer of ``currency`` on ``day`` (JSON bytes)."""
        session = self._session()
        try:
            url = self.url_from_endpoint(ptax_day_endpoint(currency, day))
            prepared = session.prepare_request(requests.Request("GET", url))
            response = send_with_retries(
                self,
                session,
                prepared,
                where=f"FX rates service {self.base_url} (connection {self.fx_rates_conn_id})",
                what=f"the PTAX quotation of {currency} on {day.isoformat()}",
                unavailable=FxSourceUnavailableError,
                refused=FxSourceRequestError,
                hints={404: "; check the service base URL (host) of the connection"},
                timeout=self.timeout,
                max_attempts=self.max_attempts,
                backoff_seconds=self.backoff_seconds,
                max_backoff_seconds=self.max_backoff_seconds,
                max_retry_after_seconds=self.max_backoff_seconds,
                sleep=self._sleep,
            )
            return response.content
        finally:
            session.close()

    def rate_of_day(
        self, currency: str, day: date, *, reporting_currency: str = PTAX_QUOTE_CURRENCY
    ) -> FxRate | None:
        """The day's PTAX rate of ``currency`` (closing bulletin, selling rate), or ``None``
        on a day without a bulletin (weekend, holiday). Refused before any request when the
        reporting currency is not BRL."""
        code = check_ptax_applies(currency, reporting_currency)
        payload = self.fetch_day(code, day)
        return parse_ptax_day(payload, currency=code, day=day, reporting_currency=reporting_currency)
