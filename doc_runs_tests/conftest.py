"""Fixtures shared by every test module: real PostgreSQL and Redis (isolated per session and
per test), a project folder of the test's own, and documents the tests make themselves."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg2
import pytest
import redis

from doc_runs.core.isolation import close_worker_pools
from doc_runs.settings import load_settings
from doc_runs_tests import servers
from doc_runs_tests.documents import make_pdf
from doc_runs_tests.live import running_in, wait_for_none

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _server_url(variable: str, default: str, answers: Callable[[str], bool],
                start: Callable[[], servers.ThrowawayServer]) -> Iterator[str]:
    """The server named by `variable` (it must answer), else the default one when it
    answers, else a throwaway one for this session."""
    url = os.environ.get(variable, default)
    if answers(url):
        yield url
        return
    if variable in os.environ:
        pytest.fail(f"{variable}={url} does not answer")
    server = start()
    try:
        yield server.url
    finally:
        server.stop()


def _refused_under_quick(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--quick"):
        raise AssertionError("a test run by --quick asked for a server: mark it (or the "
                             "fixture's parameter) `pytest.mark.servers`")


@pytest.fixture(scope="session")
def postgres_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    _refused_under_quick(request)
    yield from _server_url("TEST_POSTGRES_URL", servers.DEFAULT_POSTGRES_URL,
                           servers.postgres_answers, servers.start_throwaway_postgres)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server; dropped afterwards (the server outlives us)."""
    name = f"doc_runs_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for this test session."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture
def own_postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for this test alone: for tests whose daemon must see no other
    test's runs."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    _refused_under_quick(request)
    yield from _server_url("TEST_REDIS_URL", servers.DEFAULT_REDIS_URL,
                           servers.redis_answers, servers.start_throwaway_redis)


@contextmanager
def prefixed_redis(url: str) -> Iterator[tuple[redis.Redis, str]]:
    """A client and a key prefix of its own; the keys under it are deleted afterwards (the
    machine's Redis outlives every test)."""
    client = redis.Redis.from_url(url)
    prefix = f"doc_runs_test:{uuid.uuid4().hex[:12]}:"
    try:
        yield client, prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def redis_client(redis_server_url: str) -> Iterator[tuple[redis.Redis, str]]:
    """A client and a key prefix of this test's own."""
    with prefixed_redis(redis_server_url) as pair:
        yield pair


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            redis_server_url: str) -> Iterator[Path]:
    """A project folder of the test's own: store, reports, inbox and secrets, and Redis keys
    under a prefix of its own (the events sensor of a `dagster dev` publishes there), wired
    through the same environment variables a deployment uses."""
    for name in ("store", "reports", "inbox"):
        (tmp_path / "data" / name).mkdir(parents=True)
    monkeypatch.setenv("DOC_RUNS_STORE_DIR", str(tmp_path / "data" / "store"))
    monkeypatch.setenv("DOC_RUNS_REPORTS_DIR", str(tmp_path / "data" / "reports"))
    monkeypatch.setenv("DOC_RUNS_INBOX_DIR", str(tmp_path / "data" / "inbox"))
    secrets_file = tmp_path / ".secrets" / "tenants.json"
    secrets_file.parent.mkdir(mode=0o700)
    secrets_file.write_text('{"tenants": {}}')
    monkeypatch.setenv("DOC_RUNS_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.chdir(tmp_path)
    with prefixed_redis(redis_server_url) as (_, prefix):
        monkeypatch.setenv("DOC_RUNS_REDIS_URL", redis_server_url)
        monkeypatch.setenv("DOC_RUNS_STREAM_PREFIX", prefix)
        yield tmp_path


@pytest.fixture
def text_pdf() -> bytes:
    return make_pdf(["The quarterly report covers revenue and costs. Revenue rose by ten "
                     "percent in the third quarter. Costs fell slightly.",
                     "The board approved the budget for next year. The audit found no "
                     "material weakness in the controls."])


# Tests that use one of these need a server (PostgreSQL, Redis); `--quick` leaves them out.
SERVER_FIXTURES = frozenset({"postgres_server_url", "redis_server_url"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true",
                     help="only the tests that need no server and start no process")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "processes: starts processes (left out by --quick)")
    config.addinivalue_line("markers", "servers: needs PostgreSQL or Redis (left out by "
                            "--quick; implied by the server fixtures)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--quick"):
        return
    kept, left_out = [], []
    for item in items:
        needs_server = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        slow = needs_server or any(item.get_closest_marker(name) is not None
                                   for name in ("processes", "servers"))
        (left_out if slow else kept).append(item)
    config.hook.pytest_deselected(items=left_out)
    items[:] = kept


@pytest.fixture(autouse=True)
def quick_tests_start_no_process(request: pytest.FixtureRequest,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --quick, a test that starts a process fails saying so: the mark is then added
    where it is missing, rather than the quick run slowly growing slow."""
    if not request.config.getoption("--quick"):
        return

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test run by --quick started a process: mark it "
                             "`@pytest.mark.processes` (or its module, with pytestmark)")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refused)
    monkeypatch.setattr(os, "fork", refused)


@pytest.fixture(autouse=True)
def settings_read_afresh() -> None:
    """A process reads its settings once; each test sets its own environment, so the test
    process reads them again for each test."""
    load_settings.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the suite, no process any test started is left: servers, code servers, run
    workers and PDF workers all work in the tests' temporary folders. What is found is
    ended (so the machine is clean) and fails the session."""
    yield
    # This process's own idle PDF workers (tests that run stages in-process) end with it.
    close_worker_pools()
    # So do the `tail -F` processes (and their orphan watchers) of Dagster's log capture for
    # runs this process executed with execute_job: they end when the capture's generator is
    # finalized, which can wait for the collector, and a watcher ends its tail when this
    # process exits. Seen left by two runs of the whole suite (not by their files alone);
    # they are this process's own descendants (the tail's parent may be a process
    # of ours that ran the step), ended here rather than counted as leaked. Killed, not
    # asked: a third full run found them still there 90 s after SIGTERM (a child started
    # from a thread that blocks SIGTERM inherits the blocked mask).
    gc.collect()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if ("compute_logs" in command and command.startswith("tail -F")) or \
                    "watch_orphans.py" in command:
                child.kill()
    base = tmp_path_factory.getbasetemp()
    # `dagster dev` leaves its code servers to end on their own when their heartbeat stops
    # (45 s): they count as left only after that.
    left = wait_for_none(lambda: running_in(base), 90)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "processes left running after the suite:\n" + "\n".join(
        f"{pid}: {command}" for pid, command in left)
