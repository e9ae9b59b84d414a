"""Fixtures of the Dagster layer's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def shipped_instance(request, project, monkeypatch) -> Iterator[DagsterInstance]:
    """The instance of each shipped instance file (the local default's SQLite, the production
    PostgreSQL one on a database of the test's own), with its own storages."""
    if request.param == "postgresql":
        url = request.getfixturevalue("own_postgres_database_url")
        monkeypatch.setenv("DAGSTER_POSTGRES_URL",
                           url.replace("postgresql://", "postgresql+psycopg2://", 1))
        shutil.copyfile(DEPLOY / "dagster.postgres.yaml",
                        project / "dagster_home" / "dagster.yaml")
    else:
        shutil.copyfile(DEPLOY / "dagster.local.yaml", project / "dagster_home" / "dagster.yaml")
    with DagsterInstance.get() as opened:
        yield opened
