"""What people read, in their language: gettext catalogs through Babel. Pure: no Airflow.

Message ids are English; the Brazilian Portuguese catalog
(``airflow_recon_provider/locale/pt_BR/LC_MESSAGES/messages.po``) translates every one of
them, and a test extracts the marked messages from the source and fails on any message
without a translation (so a missing one is caught there, never shown to people). English
needs no catalog: it is the message ids themselves.

The language of a rendering is a context variable: the shell (operators, the notifier,
the dashboard) resolves it from ``[recon] language`` (:mod:`airflow_recon_provider.i18n`)
and renders inside :func:`use_language`; the domain's renderers call :func:`_`,
:func:`ngettext` ... which translate into the language in force (Brazilian Portuguese when
none was set). Catalogs are read from their ``.po`` source at first use and compiled in
memory (no binary catalog is committed or built): a fresh clone, an editable install and a
wheel behave the same.

How to mark a string, format placeholders, plurals and add a translation: ``docs/i18n.md``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.errors import ReconError

if TYPE_CHECKING:
    import gettext as _gettext_module

#: what people read unless configured otherwise (DESIGN 5: pt-BR by default, en selectable)
DEFAULT_LANGUAGE = "pt_BR"
#: the languages people can choose, with the name each is known by in the configuration
LANGUAGES: dict[str, str] = {"pt_BR": "pt-BR", "en": "en"}
#: the catalogs' gettext domain and where they live inside the package
DOMAIN = "messages"
LOCALE_PACKAGE = "airflow_recon_provider"
LOCALE_DIR = "locale"

_ALIASES = {
    "pt": "pt_BR",
    "pt_br": "pt_BR",
    "pt-br": "pt_BR",
    "en": "en",
    "en_us": "en",
    "en-us": "en",
    "en_gb": "en",
    "en-gb": "en",
}

_current: ContextVar[str | None] = ContextVar("recon_language", default=None)


class LanguageError(ReconError):
    """A configured or requested language is not one the package has a catalog for."""


def normalize_language(value: str | None) -> str:
    """``"pt-BR"``, ``"pt_br"``, ``"pt"`` -> ``"pt_BR"``; ``"en"``, ``"en-US"`` -> ``"en"``;
    empty -> :data:`DEFAULT_LANGUAGE`; anything else :class:`LanguageError`."""
    text = (value or "").strip()
    if not text:
        return DEFAULT_LANGUAGE
    language = _ALIASES.get(text.lower())
    if language is None:
        raise LanguageError(
            f"language {value!r} is not available; choose one of {', '.join(LANGUAGES.values())}"
        )
    return language


def current_language() -> str:
    """The language in force (:func:`use_language`), else :data:`DEFAULT_LANGUAGE`."""
    return _current.get() or DEFAULT_LANGUAGE


@contextmanager
def use_language(language: str | None) -> Iterator[str]:
    """Render in ``language`` inside the block (``None``: keep the one in force). Yields the
    normalized language. Safe across threads and asyncio tasks (a context variable)."""
    chosen = normalize_language(language) if language else current_language()
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def catalog_path(language: str) -> str:
    """The ``.po`` catalog of ``language``, relative to the package (for docs and tests)."""
    return f"{LOCALE_DIR}/{language}/LC_MESSAGES/{DOMAIN}.po"


def read_catalog(language: str) -> Any:
    """The ``.po`` catalog of ``language`` as a :class:`babel.messages.catalog.Catalog`."""
    from babel.messages.pofile import read_po

    source = resources.files(LOCALE_PACKAGE).joinpath(catalog_path(language))
    with source.open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


@cache
def translations(language: str) -> _gettext_module.NullTranslations:
    """The translations of ``language``, read from its ``.po`` at first use and compiled in
    memory (fuzzy entries are left out, as ``msgfmt`` does). English: the message ids."""
    import gettext as gettext_module

    language = normalize_language(language)
    if language == "en":
        return gettext_module.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.support import Translations

    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(language), use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


def _format(text: str, params: dict[str, Any]) -> str:
    return text % params if params else text


def _(message: str, /, **params: Any) -> str:
    """``message`` in the language in force, its ``%(name)s`` placeholders filled from
    ``params`` (only when ``params`` are given: a message without placeholders may hold a
    bare ``%``)."""
    return _format(translations(current_language()).gettext(message), params)


gettext = _


def ngettext(singular: str, plural: str, n: int, /, **params: Any) -> str:
    """The singular or plural form for ``n`` by the language's own plural rule (pt-BR: 0
    and 1 are singular). ``%(num)s`` is ``n`` in the language's number format (``1.234``)
    unless ``num`` is given."""
    params.setdefault("num", format_number(n))
    return _format(translations(current_language()).ngettext(singular, plural, n), params)


def pgettext(context: str, message: str, /, **params: Any) -> str:
    """:func:`_` for a message whose translation depends on a context (``"state"``,
    ``"open"``): the same English word may need different Portuguese ones."""
    return _format(translations(current_language()).pgettext(context, message), params)


def npgettext(context: str, singular: str, plural: str, n: int, /, **params: Any) -> str:
    """:func:`ngettext` with a context."""
    params.setdefault("num", format_number(n))
    return _format(translations(current_language()).npgettext(context, singular, plural, n), params)


def N_(message: str, /) -> str:
    """Marks ``message`` for extraction without translating it now: for module-level
    tables (step names, labels) translated at rendering with ``_(value)``."""
    return message


def babel_locale(language: str | None = None) -> str:
    """The Babel locale for number, money and date formatting: the language in force."""
    return normalize_language(language) if language else current_language()


def format_number(value: int, *, language: str | None = None) -> str:
    """An integer in the language's number format: ``1.234`` (pt-BR), ``1,234`` (en)."""
    from babel.numbers import format_decimal

    return format_decimal(int(value), format="#,##0", locale=babel_locale(language))


def install_jinja(env: Any) -> Any:
    """Give a Jinja environment ``{{ _("...") }}``, ``{{ ngettext(...) }}`` and
    ``{{ pgettext(...) }}`` translating into the language in force at rendering time
    (``jinja2.ext.i18n``, new-style: placeholders ``%(name)s`` filled from keyword
    arguments, ``num`` in ``ngettext``, autoescaped). Returns ``env``."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(
        gettext=lambda message: translations(current_language()).gettext(message),
        ngettext=lambda s, p, n: translations(current_language()).ngettext(s, p, n),
        pgettext=lambda c, m: translations(current_language()).pgettext(c, m),
        npgettext=lambda c, s, p, n: translations(current_language()).npgettext(c, s, p, n),
        newstyle=True,
    )
    return env


__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "N_",
    "LanguageError",
    "_",
    "babel_locale",
    "current_language",
    "format_number",
    "gettext",
    "install_jinja",
    "ngettext",
    "normalize_language",
    "npgettext",
    "pgettext",
    "read_catalog",
    "translations",
    "use_language",
]
