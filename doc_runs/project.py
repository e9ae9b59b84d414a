"""Where the local default keeps its state, so that every process of one deployment (the code
location under `dagster dev`, the daemon's runs, `doc-runs`, the API) finds the same folders and
the same Redis keys, from whatever folder it is started."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

_DEPLOYMENT_FILE = "doc_runs_deployment_id"


def project_dir() -> Path:
    """The checkout this package runs from (an editable install, as `bin/up` makes it), else
    the current folder (a plain install: run it where its data should live)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "workspace.yaml").is_file() and (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


def project_path(*parts: str) -> str:
    return str(project_dir().joinpath(*parts))


def ensure_dagster_home(dagster_home: str) -> Path:
    """The settings' DAGSTER_HOME (the project's own, git-ignored, unless set), with the local
    instance settings (deploy/dagster.local.yaml) as its dagster.yaml where it has none."""
    home = Path(dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = project_dir() / "deploy" / "dagster.local.yaml"
    if not (home / "dagster.yaml").exists() and config.exists():
        shutil.copyfile(config, home / "dagster.yaml")
    # Passed on: Dagster's own instance loading and every process started from here read it.
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def default_stream_prefix(dagster_home: str) -> str:
    """The Redis key prefix when DOC_RUNS_STREAM_PREFIX is not set: `doc_runs:` and an id kept
    in DAGSTER_HOME. Two checkouts sharing one Redis, or one checkout whose state was wiped,
    then never read each other's queue, idempotency keys or events. Deployments whose
    processes have different DAGSTER_HOMEs (several machines) must set the prefix."""
    if not dagster_home:
        return "doc_runs:"
    path = Path(dagster_home) / _DEPLOYMENT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    except OSError:
        return "doc_runs:"  # a read-only or missing home: one shared prefix rather than none
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(uuid.uuid4().hex[:12] + "\n")
    deployment = ""
    for _ in range(50):  # another process may be between creating and writing the file
        deployment = path.read_text().strip()
        if deployment:
            break
        time.sleep(0.01)
    return f"doc_runs:{deployment or 'shared'}:"
