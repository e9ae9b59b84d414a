"""The one settings object: read once, never at import, from the environment and an optional
file; a bad value said the same way by every entry point; the README's table is its own."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import EnvVar

from doc_runs.queue.roots import AllowedRoot
from doc_runs.settings import Settings, SettingsError, load_settings, settings_table
from doc_runs_tests.batches import LOAD_DEFINITIONS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT_ROOT / "doc_runs"


def test_the_readme_table_is_the_settings_own() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    start = readme.index("<!-- settings table:")
    table = readme[readme.index("\n", start) + 1:readme.index("<!-- end of settings table")]
    assert table.strip() == settings_table().strip(), \
        "README's settings table differs: paste `python -m doc_runs.settings` into it"


def test_every_setting_has_a_variable_a_meaning_and_a_valid_default() -> None:
    defaults = Settings.from_sources({})
    for name, info in Settings.model_fields.items():
        if name == "sources":
            continue
        assert info.alias and info.description, name
    assert defaults.max_documents_per_run == 50 and defaults.allowed_roots == {}
    assert defaults.pdf_engine == "pypdf" and defaults.log_format == "off"


def test_values_are_typed_and_normalized() -> None:
    settings = Settings.from_sources({
        "DOC_RUNS_MAX_BYTES": " 5000 ", "DOC_RUNS_PDF_ENGINE": "PDFium",
        "DOC_RUNS_PDF_SECOND_OPINION": "yes",
        "DOC_RUNS_ALLOWED_ROOTS": '{"in": {"path": "/srv/in", "tenants": ["acme", "beta"]},'
                                  ' "all": {"path": "/srv/all", "shared": true}}',
        "DOC_RUNS_LOG_FORMAT": "JSON", "DOC_RUNS_LOG_LEVEL": "debug",
        "DOC_RUNS_MAX_RUNTIME_S": "0", "DOC_RUNS_MODEL": ""})
    assert settings.max_bytes == 5000 and settings.pdf_engine == "pdfium"
    assert settings.pdf_second_opinion is True and settings.allowed_roots == {
        "in": AllowedRoot("/srv/in", frozenset({"acme", "beta"})),
        "all": AllowedRoot("/srv/all", None)}
    assert settings.allowed_roots["in"].may_use("beta")
    assert not settings.allowed_roots["in"].may_use("globex")
    assert settings.allowed_roots["all"].may_use("globex")
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert settings.max_runtime_s == 0
    assert settings.model == "gpt-4o-mini"  # empty counts as unset


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("DOC_RUNS_MAX_BYTES", "12k", "expected a whole number"),
    ("DOC_RUNS_MAX_PAGES", "-3", "expected greater than or equal to 1"),
    ("DOC_RUNS_EXTRACT_DEADLINE_S", "inf", "expected a finite number"),
    ("DOC_RUNS_PDF_ENGINE", "pdfiun", "expected 'pypdf' or 'pdfium'"),
    ("DOC_RUNS_MODEL_BACKEND", "claude", "expected 'offline' or 'openai'"),
    ("DOC_RUNS_ALLOWED_ROOTS", "{in: /srv}", "expected JSON"),
    ("DOC_RUNS_ALLOWED_ROOTS", '["/srv"]', "expected a valid dictionary"),
    # A root is nobody's by omission: the folder-only form of before says what to write.
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": "/srv/in"}', "names a folder but not who may use it"),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"path": "/srv/in"}}', 'either "tenants" or "shared"'),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"path": "/srv", "tenants": ["a"], "shared": true}}',
     'either "tenants" or "shared"'),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"path": "/srv", "shared": false}}',
     'either "tenants" or "shared"'),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"path": "/srv", "tenants": []}}',
     "a list of tenant names"),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"path": "/srv", "tenants": ["Acme Corp"]}}',
     "a list of tenant names"),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"path": "/srv", "tenants": "acme"}}',
     "a list of tenant names"),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"path": " ", "shared": true}}', 'a folder as its "path"'),
    ("DOC_RUNS_ALLOWED_ROOTS", '{"in": {"folder": "/srv", "shared": true}}',
     '{"NAME": {"path": "/folder", "tenants"'),
    ("DOC_RUNS_EXTRA_FIELDS", '{"law": {"type": "jurisdiction"}}', "a wrong field"),
    ("DOC_RUNS_PDF_SECOND_OPINION", "maybe", "expected a yes/no value"),
    ("DOC_RUNS_NIGHTLY_CRON", "0 25 * * *", "expected a cron string"),
    ("DOC_RUNS_SCHEDULE_TZ", "Mars/Olympus", "expected an IANA time zone"),
    ("DOC_RUNS_INBOX_TENANT", "Two Words", "expected a tenant name"),
    ("DOC_RUNS_LOG_LEVEL", "LOUD", "expected a level"),
])
def test_a_bad_value_names_its_variable_and_what_it_accepts(variable, value, says) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_sources({variable: value})
    assert str(raised.value).startswith(f"invalid setting: {variable}={value!r}: ")
    assert says in str(raised.value)


def test_every_bad_value_is_said_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_sources({"DOC_RUNS_MAX_BYTES": "x", "DOC_RUNS_CHUNK_SIZE": "0"})
    assert "DOC_RUNS_MAX_BYTES='x'" in str(raised.value)
    assert "DOC_RUNS_CHUNK_SIZE='0'" in str(raised.value)


def _said(command: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0, (command, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if "invalid setting:" in line]
    assert lines, (command, done.stderr[-2000:])
    return lines[-1][lines[-1].index("invalid setting:"):]


@pytest.mark.processes
@pytest.mark.parametrize(("variable", "value"), [
    ("DOC_RUNS_MAX_BYTES", "twelve"),          # not a number
    ("DOC_RUNS_STAGE_RETRIES", "-1"),          # negative
    ("DOC_RUNS_PDF_ENGINE", "tesseract"),      # an engine there is not
    ("DOC_RUNS_ALLOWED_ROOTS", "{not json"),   # bad JSON
])
def test_the_api_the_cli_and_the_code_location_say_the_same(tmp_path, variable,
                                                            value) -> None:
    env = {**os.environ, variable: value, "DAGSTER_HOME": str(tmp_path / "home")}
    api = _said([sys.executable, "-m", "doc_runs.cli", "api", "--port", "1"], env, tmp_path)
    cli = _said([sys.executable, "-m", "doc_runs.cli", "status"], env, tmp_path)
    code_location = _said([sys.executable, "-c", LOAD_DEFINITIONS], env, tmp_path)
    # bin/up checks them before it starts anything.
    up = _said(["bash", str(PROJECT_ROOT / "bin" / "up")], env, tmp_path)
    assert api == cli == code_location == up
    assert not (tmp_path / "home").exists()
    assert api.startswith(f"invalid setting: {variable}={value!r}: expected")


@pytest.mark.processes
def test_importing_reads_no_setting_and_writes_nothing(tmp_path) -> None:
    """Importing the code location's module is free: a bad setting stops only its loading,
    and no file (the deployment id) is written into DAGSTER_HOME until then."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DOC_RUNS_MAX_BYTES": "twelve"}
    imported = subprocess.run(
        [sys.executable, "-c", "import doc_runs.definitions, doc_runs.api.server, "
         "doc_runs.cli, doc_runs.defs.schedules, doc_runs.defs.jobs, doc_runs.defs.assets"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert list(home.iterdir()) == []


def test_a_process_reads_its_settings_once(monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_MAX_PAGES", "7")
    first = load_settings()
    monkeypatch.setenv("DOC_RUNS_MAX_PAGES", "8")
    assert load_settings() is first and first.max_pages == 7


def test_an_unknown_doc_runs_variable_is_warned_about_once(monkeypatch, caplog) -> None:
    monkeypatch.setenv("DOC_RUNS_MAX_BYTE", "5")  # DOC_RUNS_MAX_BYTES misspelled
    monkeypatch.setenv("DOC_RUNS_UI_PORT", "3001")  # the compose file's, not Python's
    with caplog.at_level(logging.WARNING, logger="doc_runs.settings"):
        load_settings()
        load_settings()
    warned = [r.getMessage() for r in caplog.records if r.name == "doc_runs.settings"]
    assert warned == ["DOC_RUNS_MAX_BYTE is set but is no doc_runs setting (misspelled?); "
                      "it is ignored"]


def test_every_variable_the_project_names_is_known() -> None:
    """A DOC_RUNS_* name in the docs, scripts, deploy files or code is a setting or one the
    scripts read: none is warned about as misspelled, and none is documented but read by
    nothing."""
    import re

    from doc_runs.settings import DEPLOYMENT_VARIABLES

    known = set(Settings.variables()) | DEPLOYMENT_VARIABLES
    named: dict[str, str] = {}
    places = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "CONTRIBUTING.md",
              *(PROJECT_ROOT / "docs").rglob("*"), *(PROJECT_ROOT / "deploy").rglob("*"),
              *(PROJECT_ROOT / "bin").iterdir(), *(PROJECT_ROOT / "bench").rglob("*.py"),
              *PACKAGE.rglob("*.py")]
    for path in places:
        if path.is_file():
            for name in re.findall(r"\bDOC_RUNS_[A-Z0-9_]+\b", path.read_text(errors="replace")):
                named.setdefault(name, str(path.relative_to(PROJECT_ROOT)))
    assert {name: where for name, where in named.items() if name not in known} == {}


def test_a_settings_file_under_the_environment(tmp_path) -> None:
    settings_file = tmp_path / "doc_runs.toml"
    settings_file.write_text('DOC_RUNS_MAX_PAGES = 40\nDOC_RUNS_CHUNK_SIZE = 800\n'
                             'DOC_RUNS_PDF_SECOND_OPINION = true\n'
                             '[DOC_RUNS_ALLOWED_ROOTS.incoming]\npath = "/srv/incoming"\n'
                             'tenants = ["acme"]\n')
    settings = Settings.from_environ({"DOC_RUNS_SETTINGS_FILE": str(settings_file),
                                      "DOC_RUNS_CHUNK_SIZE": "900"})
    assert (settings.max_pages, settings.chunk_size) == (40, 900)
    assert settings.pdf_second_opinion is True
    assert settings.allowed_roots == {"incoming": AllowedRoot("/srv/incoming",
                                                              frozenset({"acme"}))}
    settings_file.write_text('DOC_RUNS_MAX_PAGES = "many"\n')
    with pytest.raises(SettingsError, match=r"DOC_RUNS_MAX_PAGES='many' \(in the settings "
                                            r"file\): expected a whole number"):
        Settings.from_environ({"DOC_RUNS_SETTINGS_FILE": str(settings_file)})


@pytest.mark.parametrize(("content", "says"), [
    ("DOC_RUNS_MAX_PAGE = 40\n", "DOC_RUNS_MAX_PAGE is not a setting"),
    ('OPENAI_API_KEY = "sk-secret"\n', "OPENAI_API_KEY may only be set in the environment"),
    ("DOC_RUNS_MAX_PAGES = \n", "is not TOML"),
    (None, "cannot read it"),
])
def test_a_settings_file_that_cannot_be_used(tmp_path, content, says) -> None:
    settings_file = tmp_path / "doc_runs.toml"
    if content is not None:
        settings_file.write_text(content)
    with pytest.raises(SettingsError, match=says) as raised:
        Settings.from_environ({"DOC_RUNS_SETTINGS_FILE": str(settings_file)})
    assert "sk-secret" not in str(raised.value)


def test_credentials_reach_dagster_by_name_only(monkeypatch, tmp_path) -> None:
    from doc_runs.definitions import build_definitions

    # The deployment id (the default Redis prefix) is kept in the test's own home.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("DOC_RUNS_REDIS_URL", "redis://:pw@127.0.0.1:6379/0")
    resources = build_definitions(load_settings()).resources
    assert resources["model"].api_key == EnvVar("OPENAI_API_KEY")
    assert resources["queue"].redis_url == EnvVar("DOC_RUNS_REDIS_URL")
    # Given explicitly (a test's settings): as they are.
    given = build_definitions(Settings.from_environ({
        "OPENAI_API_KEY": "sk-given", "DAGSTER_HOME": str(tmp_path)})).resources
    assert given["model"].api_key == "sk-given"


# The only reads of the process environment outside doc_runs/settings.py: each passes a
# variable on to processes Dagster or we start, or is Dagster's instance plugin, which Dagster
# builds before any settings of ours exist.
ENVIRONMENT_ALLOWED = {
    "doc_runs/project.py": "ensure_dagster_home passes DAGSTER_HOME on to Dagster and children",
    "doc_runs/defs/sqlite_event_log.py": "Dagster's event log storage: DAGSTER_HOME, and "
    "DAGSTER_EVENT_BATCH_SIZE passed on to Dagster",
}


def test_no_environment_read_outside_the_settings() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PROJECT_ROOT).as_posix()
        if relative in ("doc_runs/settings.py", *ENVIRONMENT_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"{relative}:{node.lineno}")
    assert not found, found
