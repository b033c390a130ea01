"""The language people read, from Airflow's configuration: ``[recon] language``.

The translating functions live in the pure domain
(:mod:`airflow_recon_provider.reconciliation.i18n`, no Airflow); this module adds what
needs Airflow: the configured language, and :func:`language_scope` to render in it.
Operators, the notifier and the dashboard wrap what they render::

    from airflow_recon_provider.i18n import _, language_scope

    with language_scope():
        subject = _("Incident %(incident)s opened", incident=incident_id)

How to mark strings and add their translations: ``docs/i18n.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from airflow_recon_provider.reconciliation.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    N_,
    LanguageError,
    _,
    babel_locale,
    current_language,
    format_number,
    gettext,
    install_jinja,
    ngettext,
    normalize_language,
    npgettext,
    pgettext,
    use_language,
)

#: the Airflow configuration section and option (``AIRFLOW__RECON__LANGUAGE``)
CONFIG_SECTION = "recon"
CONFIG_OPTION = "language"


def configured_language() -> str:
    """``[recon] language`` normalized (``pt_BR`` or ``en``); :data:`DEFAULT_LANGUAGE` when
    unset or when the configuration cannot be read. A value that is not an available
    language raises :class:`LanguageError`: a misconfiguration is said, not guessed past."""
    from airflow_recon_provider.configuration import option

    return normalize_language(option(CONFIG_OPTION, CONFIG_SECTION))


#: the language a person chose for the pages they read (the dashboard's ``?lang=``, kept in a
#: cookie), set per request by :class:`airflow_recon_provider.plugins._language.LanguageMiddleware`
_REQUESTED: ContextVar[str | None] = ContextVar("recon_requested_language", default=None)


def requested_language() -> str | None:
    """The language chosen for this request, if any (normalized)."""
    return _REQUESTED.get()


@contextmanager
def requested_language_scope(language: str | None) -> Iterator[None]:
    """Within it, :func:`language_scope` renders in ``language`` (a normalized language, or
    ``None`` for the configured one): a person's choice for the pages they read."""
    token = _REQUESTED.set(language)
    try:
        yield
    finally:
        _REQUESTED.reset(token)


@contextmanager
def language_scope(language: str | None = None) -> Iterator[str]:
    """Render in ``language``, else in the language chosen for this request (the dashboard's
    ``?lang=``), else in the configured one (``[recon] language``)."""
    with use_language(language or _REQUESTED.get() or configured_language()) as chosen:
        yield chosen


__all__ = [
    "CONFIG_OPTION",
    "CONFIG_SECTION",
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "N_",
    "LanguageError",
    "_",
    "babel_locale",
    "configured_language",
    "current_language",
    "format_number",
    "gettext",
    "install_jinja",
    "language_scope",
    "ngettext",
    "normalize_language",
    "npgettext",
    "pgettext",
    "requested_language",
    "requested_language_scope",
    "use_language",
]
