"""FX rates coming in (DESIGN 3a, issue 13 item 3): a rates CSV file checked line by line,
and the Banco Central do Brasil PTAX answer the daily DAG reads. No Airflow import here.

**Rates file** (``airflow-recon fx-rates load FILE.csv``): UTF-8 CSV, header on line 1
exactly ``currency,rate,valid_from,source``, then one rate per line:

- ``currency``: an ISO 4217 code with minor units (``USD``, ``JPY``; lower case is read as
  upper case). Codes without minor units (``XAU``, ``XDR``) and the reporting currency
  itself (it needs no row: its rate is 1) are refused.
- ``rate``: units of the reporting currency per one unit of ``currency``, a positive
  decimal written with digits and at most one dot (``5.4321``, ``0.035``). Read with
  :class:`~decimal.Decimal`, never a float; zero, negative, ``NaN``, ``Infinity``,
  exponents (``1e3``), digit separators and thousands commas are refused.
- ``valid_from``: when the rate comes into force, either an ISO 8601 date-time **with** an
  offset (``2026-12-04T13:10:00-03:00``, ``2026-12-04T16:10:00Z``) or a plain date
  ``YYYY-MM-DD``, which means **00:00 UTC** of that day. A date-time without an offset is
  refused (a time without a zone is ambiguous for money).
- ``source``: where the rate comes from (``BCB PTAX``, ``treasury 2026-12``); required.

Blank lines are skipped. Any bad line (or a ``(currency, valid_from)`` appearing twice,
compared as instants: ``2026-12-04`` and ``2026-12-04T00:00:00Z`` are the same) refuses the
whole file with :class:`FxFileError`, whose message names the file and the line of the
first bad line (header = line 1) and how many more bad lines follow.

**PTAX** (``CotacaoMoedaDia``): the OData JSON of one currency and day,
``{"value": [{"cotacaoCompra", "cotacaoVenda", "dataHoraCotacao", "tipoBoletim", ...}]}``,
one entry per bulletin (opening, intermediate, closing). The day's rate is the closing
bulletin (``tipoBoletim`` ``Fechamento PTAX``; the latest bulletin when there is no
closing one yet), and the rate taken is ``cotacaoVenda``, the **selling** rate: the
reference Brazilian tax and accounting rules use for converting foreign-currency amounts
(and the larger of the two, so a converted divergence is never understated). It is in force
from the bulletin's time (Brasília time, ``America/Sao_Paulo``, converted to UTC). PTAX
quotes reais per unit, so it only serves a reporting currency of ``BRL``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from airflow_recon_provider.reconciliation.errors import ServiceRequestError, ServiceUnavailableError
from airflow_recon_provider.reconciliation.money import CurrencyError, FxRate, FxRateError, check_currency

HEADER = ("currency", "rate", "valid_from", "source")
#: the PTAX service quotes reais per unit of the other currency
PTAX_QUOTE_CURRENCY = "BRL"
#: Brasília time: the PTAX bulletins' dataHoraCotacao
PTAX_TIMEZONE = ZoneInfo("America/Sao_Paulo")
PTAX_CLOSING = "Fechamento PTAX"
PTAX_SOURCE_PREFIX = "BCB PTAX"

_RATE = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)
_PTAX_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?")
_MAX_RATE_CHARS = 40
_MAX_SOURCE_CHARS = 200


class FxFileError(FxRateError):
    """A rates file is refused as a whole; the message names the file and its first bad line.

    :param name: the file as the user named it.
    :param line: the file line of the first problem (header = line 1), ``None`` for the file.
    :param problems: ``(line, message)`` of every bad line found.
    """

    def __init__(self, message: str, *, name: str = "", line: int | None = None, problems=()) -> None:
        super().__init__(message)
        self.name = name
        self.line = line
        self.problems: tuple[tuple[int | None, str], ...] = tuple(problems)


class FxTableMissingError(FxRateError):
    """``recon.fx_rates`` does not exist: ``airflow-recon migrate`` has not run (migration 6)."""


class PtaxFormatError(FxRateError):
    """The PTAX service answered something that is not a valid quotation of the day."""


class PtaxNotApplicableError(FxRateError):
    """PTAX rates (reais per unit) asked for a reporting currency other than BRL, or for BRL."""


class FxSourceUnavailableError(ServiceUnavailableError):
    """The rates service did not answer: HTTP 5xx or 429, a timeout or a refused connection,
    after the bounded retries."""


class FxSourceRequestError(ServiceRequestError):
    """The rates service refused the request (HTTP 4xx other than 429): never retried."""


@dataclass(frozen=True)
class RateLine:
    """One rate and the file line it came from (header = line 1)."""

    line: int
    rate: FxRate


@dataclass(frozen=True)
class RatesFile:
    """The rates of one file (or one in-memory set), each with its line, no key twice."""

    name: str
    lines: tuple[RateLine, ...]

    def __post_init__(self) -> None:
        seen: dict[tuple[str, datetime], int] = {}
        for item in self.lines:
            key = (item.rate.currency, item.rate.valid_from)
            if key in seen:
                raise FxFileError(
                    f"{self.name} line {item.line}: {_key_text(*key)} is already on line {seen[key]}",
                    name=self.name,
                    line=item.line,
                )
            seen[key] = item.line

    @classmethod
    def of(cls, rates: Iterable[FxRate], *, name: str = "rates") -> RatesFile:
        """An in-memory set; its "lines" are the positions 1, 2, ..."""
        return cls(name, tuple(RateLine(n, rate) for n, rate in enumerate(rates, start=1)))

    @property
    def rates(self) -> list[FxRate]:
        return [item.rate for item in self.lines]

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[RateLine]:
        return iter(self.lines)

    def count_by_currency(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.lines:
            counts[item.rate.currency] = counts.get(item.rate.currency, 0) + 1
        return dict(sorted(counts.items()))


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _key_text(currency: str, valid_from: datetime) -> str:
    return f"{currency} valid from {iso_utc(valid_from)}"


# -- the rates file ------------------------------------------------------------------------


def parse_rate(text: str) -> Decimal:
    """A positive decimal written with digits and at most one dot, exactly, or FxRateError."""
    value = text.strip()
    if len(value) <= _MAX_RATE_CHARS and _RATE.fullmatch(value):
        rate = Decimal(value)
        if rate > 0:
            return rate
    shown = value if len(value) <= _MAX_RATE_CHARS else value[:_MAX_RATE_CHARS] + "..."
    raise FxRateError(f"rate {shown!r} must be a positive decimal (digits and a dot, e.g. 5.4321)")


def parse_valid_from(text: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 UTC of that day) or an ISO 8601 date-time with an offset, in UTC."""
    value = text.strip()
    match = _DATE_TIME.fullmatch(value)
    if match and match.group(3) is None:
        raise FxRateError(
            f"valid_from {value!r} has no timezone; give an offset (Z, -03:00) or a plain "
            "date YYYY-MM-DD (00:00 UTC)"
        )
    try:
        if _DATE.fullmatch(value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        if match:
            iso = value[:-1] + "+00:00" if value[-1] in "Zz" else value
            return datetime.fromisoformat(iso).astimezone(UTC)
    except ValueError:
        pass  # 2026-02-30, 25:00, an offset of 24 hours: said below
    raise FxRateError(
        f"valid_from {value!r} is not a date YYYY-MM-DD or an ISO 8601 date-time with an offset "
        "(e.g. 2026-12-04T13:10:00-03:00)"
    )


def _parse_row(row: Sequence[str], reporting_currency: str | None) -> FxRate:
    currency_text, rate_text, valid_from_text, source_text = (cell.strip() for cell in row)
    try:
        currency = check_currency(currency_text)
    except CurrencyError as exc:
        raise FxRateError(str(exc)) from None
    if reporting_currency and currency == reporting_currency:
        raise FxRateError(f"{currency} is the reporting currency (rate 1): it needs no rate")
    rate = parse_rate(rate_text)
    valid_from = parse_valid_from(valid_from_text)
    if not source_text:
        raise FxRateError("source is empty; say where the rate comes from (e.g. BCB PTAX)")
    if len(source_text) > _MAX_SOURCE_CHARS:
        raise FxRateError(f"source is longer than {_MAX_SOURCE_CHARS} characters")
    return FxRate(currency=currency, rate=rate, valid_from=valid_from, source=source_text)


def parse_rates_csv(
    data: str | bytes, *, name: str = "rates.csv", reporting_currency: str | None = None
) -> RatesFile:
    """Every rate of a rates file, or :class:`FxFileError` naming the first bad line.

    :param data: the file's content (bytes are read as UTF-8, with or without a BOM).
    :param name: the file as the user named it, for the messages.
    :param reporting_currency: refuse rows of this currency (it needs no rate).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FxFileError(
                f"{name} is not UTF-8 text (byte {exc.start + 1}); save it as UTF-8 CSV", name=name
            ) from None
    data = data.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(data, newline=""), strict=True)
    problems: list[tuple[int | None, str]] = []
    lines: list[RateLine] = []
    seen: dict[tuple[str, datetime], int] = {}
    header_seen = False
    previous_end = 0
    try:
        for row in reader:
            line, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            if not header_seen:
                header_seen = True
                if line != 1 or tuple(c.strip().lower() for c in row) != HEADER:
                    problems.append(
                        (line, f"the header must be {','.join(HEADER)} on line 1, got {','.join(row)!r}")
                    )
                    break
                continue
            if len(row) != len(HEADER):
                problems.append(
                    (line, f"expected {len(HEADER)} columns ({','.join(HEADER)}), got {len(row)}")
                )
                continue
            try:
                rate = _parse_row(row, reporting_currency)
            except FxRateError as exc:
                problems.append((line, str(exc)))
                continue
            key = (rate.currency, rate.valid_from)
            if key in seen:
                problems.append((line, f"{_key_text(*key)} is already on line {seen[key]}"))
                continue
            seen[key] = line
            lines.append(RateLine(line, rate))
    except csv.Error as exc:
        problems.append((previous_end + 1, f"not valid CSV ({exc})"))
    if problems:
        first_line, first = problems[0]
        more = len(problems) - 1
        suffix = f" ({more} more bad line{'s' if more > 1 else ''} after it)" if more else ""
        raise FxFileError(
            f"{name} line {first_line}: {first}{suffix}; nothing was loaded",
            name=name,
            line=first_line,
            problems=problems,
        )
    if not header_seen:
        raise FxFileError(
            f"{name} is empty: expected the header {','.join(HEADER)} on line 1 and then the rates",
            name=name,
        )
    if not lines:
        raise FxFileError(f"{name} has no rates after its header (line 1)", name=name, line=1)
    return RatesFile(name, tuple(lines))


def table_conflict_error(rates: RatesFile, existing: Iterable[tuple[Any, ...]]) -> FxFileError | None:
    """The error for rates whose ``(currency, valid_from)`` is already in ``recon.fx_rates``
    (``existing``: its rows ``currency, rate, valid_from, source, loaded_at``), naming the first
    such file line and the row in the table; ``None`` when there is none."""
    stored = {(row[0], row[2].astimezone(UTC)): row for row in existing}
    clashes = [item for item in rates if (item.rate.currency, item.rate.valid_from) in stored]
    if not clashes:
        return None
    first = clashes[0]
    currency, rate, valid_from, source, loaded_at = stored[(first.rate.currency, first.rate.valid_from)]
    more = len(clashes) - 1
    suffix = f" ({more} more line{'s' if more > 1 else ''} of the file also in the table)" if more else ""
    loaded = f", loaded {iso_utc(loaded_at)}" if isinstance(loaded_at, datetime) else ""
    return FxFileError(
        f"{rates.name} line {first.line}: {_key_text(currency, valid_from)} is already in recon.fx_rates "
        f"(rate {format(Decimal(rate).normalize(), 'f')}, source {source!r}{loaded}){suffix}; "
        "nothing was loaded",
        name=rates.name,
        line=first.line,
        problems=[(item.line, "already in recon.fx_rates") for item in clashes],
    )


# -- PTAX (Banco Central do Brasil) --------------------------------------------------------


def ptax_day_endpoint(currency: str, day: date) -> str:
    """The OData path and query of ``CotacaoMoedaDia`` for one currency and day, relative to
    the service base URL (``https://olinda.bcb.gov.br/olinda/servico/PTAX/versao/v1/odata``).
    The OData parameter names keep their ``@``/``$`` and quotes unescaped, as the service
    documents them; both values are checked (three letters, a date), so nothing else can
    reach the URL."""
    code = check_currency(currency)
    return (
        "CotacaoMoedaDia(moeda=@moeda,dataCotacao=@dataCotacao)"
        f"?@moeda='{code}'&@dataCotacao='{day:%m-%d-%Y}'&$format=json"
    )


def check_ptax_reporting_currency(reporting_currency: str) -> None:
    """PTAX rates serve a reporting currency of BRL only; otherwise :class:`PtaxNotApplicableError`."""
    if reporting_currency != PTAX_QUOTE_CURRENCY:
        raise PtaxNotApplicableError(
            f"PTAX quotes reais (BRL) per unit of a currency, but the reporting currency is "
            f"{reporting_currency}: its rates cannot come from PTAX; load them with "
            "`airflow-recon fx-rates load` or another source"
        )


def check_ptax_applies(currency: str, reporting_currency: str) -> str:
    """``currency`` checked for a PTAX quotation into ``reporting_currency``, or an error."""
    check_ptax_reporting_currency(reporting_currency)
    code = check_currency(currency)
    if code == PTAX_QUOTE_CURRENCY:
        raise PtaxNotApplicableError("BRL is the reporting currency (rate 1): it needs no PTAX rate")
    return code


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _ptax_number(item: dict[str, Any], field: str, where: str) -> Decimal:
    value = item.get(field)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise PtaxFormatError(f"{where}: {field} {value!r} is not a number")
    return Decimal(value)


def _ptax_time(item: dict[str, Any], where: str) -> datetime:
    text = item.get("dataHoraCotacao")
    if not isinstance(text, str) or not _PTAX_TIME.fullmatch(text.strip()):
        raise PtaxFormatError(f"{where}: dataHoraCotacao {text!r} is not a date-time YYYY-MM-DD HH:MM:SS")
    value = text.strip().replace("T", " ")
    head, dot, fraction = value.partition(".")
    try:
        local = datetime.fromisoformat(head + (dot + fraction[:6] if dot else ""))
    except ValueError:
        raise PtaxFormatError(f"{where}: dataHoraCotacao {text!r} is not a valid date-time") from None
    return local.replace(tzinfo=PTAX_TIMEZONE)


@dataclass(frozen=True)
class PtaxBulletin:
    kind: str
    buying: Decimal
    selling: Decimal
    at: datetime  # Brasília time

    @property
    def closing(self) -> bool:
        return self.kind.strip().lower().startswith("fechamento")


def parse_ptax_bulletins(payload: str | bytes, *, currency: str, day: date) -> list[PtaxBulletin]:
    """The bulletins of a ``CotacaoMoedaDia`` answer (an empty list on a day without
    quotation: weekend, holiday, before the first bulletin), numbers as Decimal."""
    where = f"PTAX answer for {currency} on {day.isoformat()}"
    try:
        doc = json.loads(payload, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise PtaxFormatError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("value"), list):
        raise PtaxFormatError(f'{where} has no "value" list')
    bulletins = []
    for n, item in enumerate(doc["value"], start=1):
        at = f"{where}, bulletin {n}"
        if not isinstance(item, dict):
            raise PtaxFormatError(f"{at} is not an object")
        kind = item.get("tipoBoletim")
        if not isinstance(kind, str) or not kind.strip():
            raise PtaxFormatError(f"{at}: tipoBoletim {kind!r} is not a bulletin type")
        when = _ptax_time(item, at)
        if when.date() != day:
            raise PtaxFormatError(f"{at} is of {when.date().isoformat()}, not of the day asked")
        bulletins.append(
            PtaxBulletin(
                kind=kind.strip(),
                buying=_ptax_number(item, "cotacaoCompra", at),
                selling=_ptax_number(item, "cotacaoVenda", at),
                at=when,
            )
        )
    return bulletins


def choose_ptax_bulletin(bulletins: Sequence[PtaxBulletin]) -> PtaxBulletin | None:
    """The day's closing bulletin (the latest if several), else the latest bulletin."""
    if not bulletins:
        return None
    closing = [b for b in bulletins if b.closing]
    return max(closing or bulletins, key=lambda b: b.at)


def parse_ptax_day(
    payload: str | bytes, *, currency: str, day: date, reporting_currency: str = PTAX_QUOTE_CURRENCY
) -> FxRate | None:
    """The rate of ``currency`` in reais from a PTAX ``CotacaoMoedaDia`` answer for ``day``:
    the closing bulletin's ``cotacaoVenda`` (else the latest bulletin's), in force from the
    bulletin's time in UTC, source ``BCB PTAX <tipoBoletim>``. ``None`` on a day without a
    bulletin (weekend, holiday).

    :raises PtaxNotApplicableError: the reporting currency is not BRL, or ``currency`` is BRL.
    :raises PtaxFormatError: the answer is not a valid quotation of that day.
    """
    code = check_ptax_applies(currency, reporting_currency)
    chosen = choose_ptax_bulletin(parse_ptax_bulletins(payload, currency=code, day=day))
    if chosen is None:
        return None
    try:
        return FxRate(
            currency=code,
            rate=chosen.selling,
            valid_from=chosen.at.astimezone(UTC),
            source=f"{PTAX_SOURCE_PREFIX} {chosen.kind}",
        )
    except FxRateError:
        raise PtaxFormatError(
            f"PTAX answer for {code} on {day.isoformat()}: cotacaoVenda {chosen.selling} of the "
            f"{chosen.kind} bulletin is not a positive rate"
        ) from None


# -- the daily DAG -------------------------------------------------------------------------

#: currencies the daily DAG converts when nothing else is configured (all quoted by PTAX)
DEFAULT_DAILY_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD")


def parse_currency_list(value: Any, *, reporting_currency: str | None = None) -> tuple[str, ...]:
    """Currencies to fetch rates for, from a list or a text (``"USD, EUR"``, ``"USD EUR"``
    or a JSON list): upper case, checked, each once, in the order given. The reporting
    currency is refused (it needs no rate); an empty list is refused."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise FxRateError(f"currency list {text!r} is not a JSON list") from None
        else:
            value = [part for part in re.split(r"[,\s;]+", text) if part]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise FxRateError(f"currency list must be a list of ISO 4217 codes, got {value!r}")
    codes: list[str] = []
    for item in value:
        try:
            code = check_currency(item)
        except CurrencyError as exc:
            raise FxRateError(f"currency list: {exc}") from None
        if reporting_currency and code == reporting_currency:
            raise FxRateError(f"currency list: {code} is the reporting currency (rate 1); leave it out")
        if code not in codes:
            codes.append(code)
    if not codes:
        raise FxRateError("currency list is empty; give at least one ISO 4217 code (e.g. USD)")
    return tuple(codes)


def parse_day(value: Any, *, name: str = "day") -> date:
    """A calendar day ``YYYY-MM-DD`` (a ``date`` is taken as is)."""
    if isinstance(value, datetime):
        raise FxRateError(f"{name} must be a day YYYY-MM-DD, got a date-time {value.isoformat()}")
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise FxRateError(f"{name} {value!r} is not a day YYYY-MM-DD")


def quotation_day(start: datetime | None, end: datetime | None, *, fallback: datetime) -> date:
    """The PTAX day (Brasília calendar) a daily run covers: the day of its data interval's
    middle; without an interval, the Brasília day before ``fallback`` (the run's time)."""
    if start is not None and end is not None and end > start:
        return (start + (end - start) / 2).astimezone(PTAX_TIMEZONE).date()
    return (fallback.astimezone(PTAX_TIMEZONE) - timedelta(days=1)).date()
