"""The fallback the suite uses on machines without PostgreSQL or Redis: throwaway servers from
pip-installed binaries. Here the machine's own servers answer, so start them explicitly."""

import psycopg2
import redis

from doc_runs_tests import servers


def test_throwaway_postgres_serves_over_loopback_and_goes_away() -> None:
    server = servers.start_throwaway_postgres()
    try:
        assert "127.0.0.1" in server.url and ":5432/" not in server.url
        with psycopg2.connect(server.url) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (41); "
                           "SELECT x + 1 FROM t")
            assert cursor.fetchone() == (42,)
    finally:
        server.stop()
    assert not servers.postgres_answers(server.url)
    assert not server.data_dir.exists()


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

