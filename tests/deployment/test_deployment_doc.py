"""docs/deployment.md shows the commands and settings the end-to-end test runs
(celery_deployment.py), rendered with the doc's illustrative values: one cannot change
without the other. Fast: no component is started."""

from __future__ import annotations

from pathlib import Path

import celery_deployment as cd
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
README = DOC.parents[1] / "README.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def _commands() -> list[str]:
    return [
        cd.PROVIDER_SETUP_COMMAND,
        *cd.SETUP_COMMANDS,
        *cd.COMPONENT_COMMANDS.values(),
        cd.WORKER_COMMAND,
    ]


@pytest.mark.parametrize("command", _commands())
def test_the_doc_shows_each_command_of_the_test(doc, command):
    rendered = cd.render(command, cd.DOC_VALUES)
    assert rendered in doc, f"docs/deployment.md does not show `{rendered}`"


@pytest.mark.parametrize("key", sorted(cd.CELERY_SETTINGS))
def test_the_doc_shows_each_setting_of_the_test(doc, key):
    line = f"{key}={cd.render(cd.CELERY_SETTINGS[key], cd.DOC_VALUES)}"
    assert line in doc, f"docs/deployment.md does not show `{line}`"


def test_the_doc_names_the_shared_secrets_the_pin_and_the_private_folders(doc):
    for key in cd.SHARED_SECRETS:
        assert f"{key}=" in doc
    assert "celery[redis]>=5.6,<5.7" in doc
    assert "unshare --mount --uts --propagation private" in doc
    assert cd.PRIVATE_FOLDERS_SCRIPT.name in doc


def test_the_pin_is_the_packages(doc):
    pyproject = (DOC.parents[1] / "pyproject.toml").read_text()
    assert '"celery[redis]>=5.6,<5.7"' in pyproject
    assert '"apache-airflow-providers-celery>=3.26"' in pyproject


def test_the_readme_links_the_doc():
    assert "docs/deployment.md" in README.read_text()
