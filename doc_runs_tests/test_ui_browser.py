"""An operator re-executes a failed run from its failed step by clicking through the Dagster UI
in a real browser (Debian's Chromium, driven by Playwright; no browser is downloaded).

The webserver and the daemon run as `dagster dev` runs them, on PostgreSQL storage; the
failing run is started as runs start in production, by the inbox sensor; the cause is real
(chunking cannot write its artifacts) and is fixed before the click. A screenshot of the
re-executed run is kept (see `artifact_dir`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from doc_runs_tests.helpers import PROJECT_ROOT
from doc_runs_tests.live import (
    dagster_answers,
    start_detached,
    stop_dagster_dev,
    wait_until,
)
from doc_runs_tests.servers import free_port

FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def chromium_path() -> str:
    """Debian's Chromium, as bin/test installs it. Missing, the test fails saying so: a UI
    test that silently skipped would prove nothing."""
    for candidate in (os.environ.get("DOC_RUNS_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium", shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no Chromium for the browser test: install Debian's `chromium` package "
                "(bin/test does where it runs as root with apt-get), or set DOC_RUNS_CHROMIUM "
                "to a Chromium or Chrome executable")


def artifact_dir() -> Path:
    """Where screenshots are kept: DOC_RUNS_TEST_ARTIFACTS, else test-artifacts/ in the
    checkout (git-ignored)."""
    folder = Path(os.environ.get("DOC_RUNS_TEST_ARTIFACTS") or PROJECT_ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def choose_from_failure(page, caret) -> None:
    """Opens the Re-execute menu and clicks "From failure". The newsletter dialog can open
    over the menu at any moment; skipping it (the page's locator handler) closes the menu, so
    the menu is opened again, up to three times."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        caret.click()
        try:
            page.get_by_role("menuitem", name="From failure").click(timeout=15_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def document_runs(instance: DagsterInstance) -> list:
    return instance.get_runs(RunsFilter(job_name="document_pipeline"))


def test_operator_reexecutes_a_failed_run_from_failure_by_clicking_in_the_ui(
        project, text_pdf, own_postgres_database_url, monkeypatch) -> None:
    from playwright.sync_api import expect, sync_playwright

    browser_path = chromium_path()
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", own_postgres_database_url.replace(
        "postgresql://", "postgresql+psycopg2://", 1))
    monkeypatch.setenv("DOC_RUNS_STAGE_RETRIES", "0")
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.postgres.yaml",
                    project / "dagster_home" / "dagster.yaml")
    shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
    # The real cause: a file stands where chunking's artifact folder should be.
    blocker = project / "data" / "store" / "artifacts" / "document_chunks"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")

    port = free_port()
    server = start_detached(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)], project, log=project / "dagster-dev.log")
    shots = artifact_dir()
    try:
        wait_until(lambda: dagster_answers(port), 180, "the Dagster webserver")
        (project / "data" / "inbox" / "quarterly-report.pdf").write_bytes(text_pdf)
        with DagsterInstance.get() as instance:
            def failed_run():
                runs = [r for r in document_runs(instance) if r.status in FINISHED]
                return runs[0] if runs else None

            failed = wait_until(failed_run, 240, "the inbox sensor's run to fail")
            assert failed.status == DagsterRunStatus.FAILURE
            assert failed.tags.get("dagster/sensor_name") == "inbox_sensor"
            blocker.unlink()  # the operator fixes the cause

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=browser_path, headless=True,
                    # As root in a container Chromium refuses its sandbox; /dev/shm is small.
                    args=["--no-sandbox", "--disable-dev-shm-usage"])
                try:
                    page = browser.new_page(viewport={"width": 1600, "height": 1000})
                    page.set_default_timeout(60_000)
                    # A new browser profile is greeted once by a newsletter dialog, which an
                    # operator skips.
                    page.add_locator_handler(
                        page.get_by_text("Join the Dagster community"),
                        lambda: page.get_by_role("button", name="Skip").click())
                    page.goto(f"http://127.0.0.1:{port}/runs/{failed.run_id}")
                    # The menu is enabled once the run's events are loaded.
                    expect(page.get_by_text("Loading run logs")).to_have_count(0)
                    # The "Re-execute" split button: its caret opens the strategies.
                    caret = page.locator("button[class*='LaunchButton_dropdownArrow']")
                    expect(caret).to_be_enabled()
                    page.screenshot(path=str(shots / "failed-run.png"))
                    choose_from_failure(page, caret)
                    page.wait_for_url(lambda url: failed.run_id not in url, timeout=60_000)
                    child_id = page.url.rstrip("/").rsplit("/", 1)[-1]

                    def child_finished():
                        run = instance.get_run_by_id(child_id)
                        return run if run is not None and run.status in FINISHED else None

                    child = wait_until(child_finished, 240, "the re-executed run")
                    page.reload()
                    expect(page.get_by_text("Loading run logs")).to_have_count(0)
                    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
                    expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
                    page.screenshot(path=str(shots / "reexecuted-run.png"), full_page=True)
                except BaseException:
                    page.screenshot(path=str(shots / "browser-test-failure.png"))
                    raise
                finally:
                    browser.close()

            assert child.status == DagsterRunStatus.SUCCESS
            assert child.parent_run_id == failed.run_id
            ran = {s.step_key for s in instance.get_run_step_stats(child_id)}
            assert ran == {"document_chunks", "document_findings", "document_summary"}
    finally:
        stop_dagster_dev(server, project)
    print(f"screenshot of the re-executed run: {shots / 'reexecuted-run.png'}")
