"""The translations people read (docs/i18n.md): every marked message is translated in every
catalog, with the same placeholders, and the language is chosen by ``[recon] language``.

The messages are extracted from the source at test time with the project's own mapping
(``babel.cfg``), so a string marked today and not translated fails here, never reaches a
person in English by accident.
"""

from __future__ import annotations

import ast
import re
import threading
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from airflow_recon_provider.reconciliation import i18n
from airflow_recon_provider.reconciliation.i18n import (
    N_,
    LanguageError,
    _,
    current_language,
    format_number,
    ngettext,
    normalize_language,
    pgettext,
    read_catalog,
    use_language,
)
from airflow_recon_provider.reconciliation.steps import (
    SECTIONS,
    STEPS,
    section_title,
    step_name,
    step_section,
    step_title,
)

REPO = Path(__file__).resolve().parents[2]
#: the languages with a catalog (English is the message ids themselves)
CATALOG_LANGUAGES = [lang for lang in i18n.LANGUAGES if lang != "en"]
#: ``%(name)s``-style placeholders (python-format); bare ``%s`` is refused (not reorderable)
_NAMED = re.compile(r"%\((\w+)\)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
_BARE = re.compile(r"%(?!\(|%)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")


def _extracted() -> dict[tuple[str | None, str], tuple[tuple[str, ...], list[str]]]:
    """(context, msgid) -> (ids: the msgid and its plural, where it is), from the source."""
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with (REPO / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: dict[tuple[str | None, str], tuple[tuple[str, ...], list[str]]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(REPO),
        method_map,
        options_map,
        keywords=DEFAULT_KEYWORDS,
        directory_filter=lambda path: not Path(path).name.startswith(".") and "venv" not in path,
    ):
        ids = message if isinstance(message, tuple) else (message,)
        key = (context, ids[0])
        entry = found.setdefault(key, (ids, []))
        entry[1].append(f"{filename}:{lineno}")
    return found


@pytest.fixture(scope="module")
def extracted() -> dict[tuple[str | None, str], tuple[tuple[str, ...], list[str]]]:
    found = _extracted()
    # the extraction really reads the source: the runbook's headings are among the messages
    assert (None, "Containment Actions") in found
    return found


#: the marking functions and where their message id is: (context argument, message argument)
_MARKERS = {"_": (None, 0), "gettext": (None, 0), "N_": (None, 0), "ngettext": (None, 0)}
_MARKERS |= {"pgettext": (0, 1), "npgettext": (0, 1)}


def _marked_in_python() -> dict[tuple[str | None, str], str]:
    """(context, msgid) -> where, of every marking call with a literal message in the Python
    source, found through the syntax tree (independent of Babel's extractor)."""
    found: dict[tuple[str | None, str], str] = {}
    for root in ("airflow_recon_provider", "dags"):
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = (
                    func.id
                    if isinstance(func, ast.Name)
                    else func.attr
                    if isinstance(func, ast.Attribute)
                    else ""
                )
                if name not in _MARKERS:
                    continue
                ctx_at, msg_at = _MARKERS[name]
                args = node.args
                if len(args) <= msg_at or not isinstance(args[msg_at], ast.Constant):
                    continue
                message = args[msg_at].value
                context = (
                    args[ctx_at].value
                    if ctx_at is not None and isinstance(args[ctx_at], ast.Constant)
                    else None
                )
                if isinstance(message, str) and message:
                    found.setdefault((context, message), f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_the_extraction_sees_every_marked_message(extracted):
    """Babel's extractor misses a marking call nested in another call inside ``_()``
    (``_("a %(x)s", x=f(_("b")))``): such a message would never be translated. Every marked
    literal the syntax tree finds must be among the extracted messages."""
    unseen = [
        f"{where}: {msgid!r}"
        for key, where in _marked_in_python().items()
        if key not in extracted
        for msgid in [key[1]]
    ]
    assert not unseen, (
        "Babel does not extract these (a marking call nested in a call inside _()): assign the "
        "inner message to a variable first:\n" + "\n".join(unseen)
    )


def test_no_module_that_translates_rebinds_the_underscore():
    """``figures, _ = ...`` in a module that imports ``_`` makes ``_`` a local string in that
    function, and its ``_("...")`` a TypeError at run time (ruff does not flag it)."""
    rebound: list[str] = []
    for root in ("airflow_recon_provider", "dags"):
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            imports_it = any(
                isinstance(node, ast.ImportFrom) and any(alias.name == "_" for alias in node.names)
                for node in ast.walk(tree)
            )
            if not imports_it:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, ast.Store):
                    rebound.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not rebound, "_ is rebound where it translates (name the value instead): " + ", ".join(rebound)


def _placeholders(text: str) -> list[str]:
    return sorted(_NAMED.findall(text))


@pytest.mark.parametrize("language", CATALOG_LANGUAGES)
def test_every_marked_message_is_translated_with_the_same_placeholders(extracted, language):
    catalog = read_catalog(language)
    problems: list[str] = []
    for (context, msgid), (ids, where) in sorted(extracted.items(), key=lambda kv: kv[0][1]):
        at = ", ".join(where[:3])
        for source in ids:
            if _BARE.search(source):
                problems.append(f"{at}: {source!r} has an unnamed placeholder; use %(name)s")
        message = catalog.get(msgid, context=context)
        if message is None or not message.string:
            problems.append(f"{at}: {msgid!r} has no {language} translation")
            continue
        if message.fuzzy:
            problems.append(f"{at}: {msgid!r} is fuzzy in {language} (check it, then drop the flag)")
            continue
        if len(ids) > 1:
            forms = message.string if isinstance(message.string, tuple) else (message.string,)
            if len(forms) != catalog.num_plurals or not all(forms):
                problems.append(
                    f"{at}: {msgid!r} needs {catalog.num_plurals} plural forms in {language}, "
                    f"has {sum(1 for f in forms if f)}"
                )
                continue
            # every form may leave out the count (pt-BR "um" for 1), never add or rename one
            allowed = set(_placeholders(ids[0])) | set(_placeholders(ids[1])) | {"num"}
            wanted = set(_placeholders(ids[1]))
            for form in forms:
                if not set(_placeholders(form)) <= allowed or not (wanted - {"num"}) <= set(
                    _placeholders(form)
                ):
                    problems.append(
                        f"{at}: {msgid!r}: {language} form {form!r} has placeholders "
                        f"{_placeholders(form)}, the message {sorted(wanted)}"
                    )
        elif _placeholders(message.string) != _placeholders(msgid):
            problems.append(
                f"{at}: {msgid!r}: {language} has placeholders {_placeholders(message.string)}, "
                f"the message {_placeholders(msgid)}"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", CATALOG_LANGUAGES)
def test_the_catalog_holds_no_message_the_source_no_longer_marks(extracted, language):
    catalog = read_catalog(language)
    stale = [
        repr(m.id)
        for m in catalog
        if m.id and (m.context, m.id if isinstance(m.id, str) else m.id[0]) not in extracted
    ]
    assert not stale, f"{language} translates messages no longer in the source: " + ", ".join(stale)


def test_the_catalogs_ship_in_the_package():
    """The ``.po`` files are package data (so a wheel carries them): the glob in
    pyproject.toml covers every catalog, and each is read through importlib.resources."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = project["tool"]["setuptools"]["package-data"]["airflow_recon_provider"]
    for language in CATALOG_LANGUAGES:
        path = i18n.catalog_path(language)
        assert any(fnmatch(path, g) for g in globs), f"{path} is not package data"
        assert len(read_catalog(language)) > 0


def test_portuguese_is_the_default_and_english_selectable():
    assert current_language() == "pt_BR"
    assert _("Containment Actions") == "Ações de Contenção"
    with use_language("en") as chosen:
        assert chosen == "en"
        assert _("Containment Actions") == "Containment Actions"
        with use_language(None):  # keeps the one in force
            assert current_language() == "en"
    assert current_language() == "pt_BR"


def test_placeholders_are_filled_after_translation():
    text = step_name("incident.state", {"from": "open", "to": "mitigating"})
    assert text == "Estado: aberto → em mitigação"
    with use_language("en"):
        assert step_name("incident.state", {"from": "open", "to": "closed"}) == "State: open → closed"
    # no params: a message is returned as it is (a bare % is not a format error)
    assert _("100% sure") == "100% sure"


def test_plurals_follow_the_language_and_the_count_is_formatted():
    catalog = read_catalog("pt_BR")
    # CLDR's Brazilian Portuguese rule: 0 and 1 singular, a round million its own form
    assert catalog.plural_forms.startswith("nplurals=3;")
    assert ngettext("%(num)s key", "%(num)s keys", 1234) == "1.234 keys"  # not in the catalog
    with use_language("en"):
        assert ngettext("%(num)s key", "%(num)s keys", 1) == "1 key"
        assert ngettext("%(num)s key", "%(num)s keys", 1234) == "1,234 keys"
    assert format_number(3164) == "3.164"
    assert pgettext("incident state", "open") == "open"  # unknown context: the message id


def test_marked_tables_are_translated_at_rendering():
    assert N_("Validate Scope") == "Validate Scope"
    assert step_name("investigation.scope") == "Validar Escopo"
    assert step_title("containment.pause") == "Ações de Contenção — Reconciliação automática pausada"
    assert step_title("recovery.criteria") == "Critérios de Recuperação"
    assert section_title(step_section("closure.resume")) == "Encerramento"
    assert section_title(step_section("mitigation.something_new")) == "Mitigação"
    # a step the table does not know keeps its id: never hidden
    assert step_name("custom.step") == "custom.step"
    # the runbook's own headings, exactly as the runbook spells them
    runbook = (
        (REPO.parent / "shared" / "runbook" / "billing-gateway-reconciliation.md").read_text(encoding="utf-8")
        if (REPO.parent / "shared" / "runbook").is_dir()
        else ""
    )
    for section in SECTIONS:
        title = section_title(section)
        if runbook:
            assert title in runbook, f"{title!r} is not a heading of the runbook"
    for step, (_section, name) in STEPS.items():
        assert step_name(step) != name or step == "incident.state", f"{step} is not translated"
    with use_language("en"):
        assert step_title("investigation.scope") == "Investigation — Validate Scope"


def test_languages_are_normalized_and_unknown_ones_refused():
    assert normalize_language("pt-BR") == normalize_language("pt_br") == normalize_language("pt") == "pt_BR"
    assert normalize_language("en-US") == normalize_language("EN") == "en"
    assert normalize_language("") == "pt_BR"
    with pytest.raises(LanguageError, match="pt-BR, en"):
        normalize_language("es")


def test_the_language_is_per_thread():
    seen: dict[str, str] = {}

    def render(language: str) -> None:
        with use_language(language):
            seen[language] = _("Mitigation")

    threads = [threading.Thread(target=render, args=(lang,)) for lang in ("en", "pt_BR")]
    with use_language("en"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seen == {"en": "Mitigation", "pt_BR": "Mitigação"}


def test_jinja_templates_translate_in_the_language_in_force():
    import jinja2

    env = i18n.install_jinja(jinja2.Environment(autoescape=True))
    template = env.from_string(
        '{{ _("Mitigation") }}|{{ _("State: %(before)s → %(after)s", before="<a>", after="b") }}'
    )
    assert template.render() == "Mitigação|Estado: &lt;a&gt; → b"
    with use_language("en"):
        assert template.render() == "Mitigation|State: &lt;a&gt; → b"


def test_the_configured_language(monkeypatch):
    from airflow_recon_provider.get_provider_info import get_provider_info
    from airflow_recon_provider.i18n import configured_language, language_scope

    option = get_provider_info()["config"]["recon"]["options"]["language"]
    assert option["default"] == "pt-BR"
    monkeypatch.delenv("AIRFLOW__RECON__LANGUAGE", raising=False)
    assert configured_language() == "pt_BR"
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    assert configured_language() == "en"
    with language_scope():
        assert _("Closure") == "Closure"
    with language_scope("pt-BR"):  # a page's explicit choice wins over the configuration
        assert _("Closure") == "Encerramento"
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "klingon")
    with pytest.raises(LanguageError, match="klingon"):
        configured_language()


def test_the_investigation_findings_read_as_words_in_both_languages():
    from airflow_recon_provider.reconciliation.i18n import use_language
    from airflow_recon_provider.reconciliation.steps import cycle_counts, health_name, source_status_name

    with use_language("pt_BR"):
        assert cycle_counts({"success": 1, "failed": 2}) == "2 com falha, 1 com sucesso"
        assert cycle_counts({"skipped": 3}) == "3 skipped"  # a status it does not know, as it is
        assert health_name("healthy") == "saudável" and health_name("timeout") == "sem resposta a tempo"
        assert source_status_name("not configured") == "não configurado"
        assert health_name("weird") == "weird"
    with use_language("en"):
        assert cycle_counts({"success": 1, "failed": 2}) == "2 failed, 1 successful"
        assert health_name("connection_refused") == "connection refused"
        assert source_status_name("unavailable") == "unavailable"


def test_the_rates_line_reads_in_the_language_in_force():
    """The dashboard's "Totals in BRL, converted: ..." line follows the page's language (it
    said "a partir de" with a decimal comma on the English page)."""
    from datetime import UTC, datetime
    from decimal import Decimal
    from types import SimpleNamespace

    from airflow_recon_provider.reconciliation.i18n import use_language
    from airflow_recon_provider.reconciliation.money import FxRate
    from airflow_recon_provider.reconciliation.report import rates_text

    rate = FxRate("EUR", Decimal("6.2875"), datetime(2026, 12, 6, tzinfo=UTC), "BCB PTAX")
    summary = SimpleNamespace(
        reporting_currency="BRL", used_rates={"EUR": rate}, unconverted_currencies=("JPY",)
    )
    with use_language("en"):
        assert rates_text(summary) == (
            "1 EUR = 6.2875 BRL (from 2026-12-06 00:00 UTC, BCB PTAX); no rate (left out): JPY"
        )
    with use_language("pt_BR"):
        text = rates_text(summary)
        assert text.startswith("1 EUR = 6,2875 BRL (") and text.endswith("; sem cotação (fora do total): JPY")
    # an explicit locale still wins (the CLI's report)
    with use_language("pt_BR"):
        assert "(from 2026-12-06" in rates_text(summary, locale="en")
