"""Browser tests of the Airflow UI: one local UI stack and one Chromium for the package, a fresh page per test.

Chromium is Debian's package (``tools/install_chromium.sh``, run by ``make test``);
Playwright drives it headless. Screenshots go to ``.local/ui-screenshots/``, a
failed test's last page too; the stack's logs stay in ``.local/ui-test-stack/``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ndjson_pipeline.steps.reporting import day_report
from tests.ui.pages import log_in
from tools.local_stack import REPO_ROOT
from tools.ui_stack import UiStack, tail_logs, ui_stack

CHROMIUM = Path("/usr/bin/chromium")
# Root needs --no-sandbox; the closed network needs Chromium's background connections off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = REPO_ROOT / ".local" / "ui-screenshots"
STACK_HOME = REPO_ROOT / ".local" / "ui-test-stack"
FILES_PER_DAY = 3  # plus the sample day's gzip, empty, .txt, awkwardly named and overwritten files
MAX_FILES_PER_MANIFEST = 5  # so a day of FILES_PER_DAY makes two manifests: the grid shows a mapped conversion
VIEWPORT = {"width": 1600, "height": 1200}  # tall enough for the whole backfill dialog

expect.set_options(timeout=30_000)  # the UI bundle is 7 MB: a loaded 2-core machine is slow to render it


@pytest.fixture(scope="package")
def ui(aws_endpoint) -> Iterator[UiStack]:
    """The stack (DAGs paused, as after a deployment); its home and logs stay until the next run."""
    shutil.rmtree(STACK_HOME, ignore_errors=True)
    with ui_stack(
        STACK_HOME,
        name_prefix=f"ui-{uuid.uuid4().hex[:8]}",
        endpoint=aws_endpoint,
        max_files_per_manifest=MAX_FILES_PER_MANIFEST,
    ) as stack:
        yield stack


@pytest.fixture(scope="package")
def browser(screenshots) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install-browser` (Debian's chromium package)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # only this run's pictures
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.ui_failed = report.failed
    return report


@contextlib.contextmanager
def logged_in_page(browser: Browser, ui: UiStack) -> Iterator[Page]:
    """A page in a fresh browser context (UTC, the UI's default time zone), logged in."""
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC")
    try:
        page = context.new_page()
        log_in(page, ui)
        yield page
    finally:
        context.close()


def save_failure(page: Page, ui: UiStack, name: str) -> None:
    path = SCREENSHOTS / f"FAILED-{name}.png"
    page.screenshot(path=path, full_page=True)
    print(f"last page: {path} ({page.url})\n{tail_logs(ui.logs)}")


@pytest.fixture
def page(request, browser: Browser, ui: UiStack, screenshots: Path) -> Iterator[Page]:
    with logged_in_page(browser, ui) as page:
        yield page
        if getattr(request.node, "ui_failed", False):
            save_failure(page, ui, request.node.name)


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS.exists() and any(SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"UI screenshots: {SCREENSHOTS}/")


def day_event_ids(ui: UiStack, day: str) -> list[str]:
    """Every event id in the day's Parquet partition, duplicates kept."""
    keys = day_parquet_snapshot(ui, day)
    if not keys:
        return []
    s3 = ui.s3()
    with tempfile.TemporaryDirectory(prefix="ui-parquet-") as target:
        paths = [f"{target}/{n:05d}.parquet" for n in range(len(keys))]
        for key, path in zip(keys, paths, strict=True):
            s3.download_file(ui.settings.names.lake_bucket, key, path)
        files = ", ".join(f"'{p}'" for p in paths)
        return [row[0] for row in duckdb.sql(f"SELECT event_id FROM read_parquet([{files}])").fetchall()]


def day_manifest_ids(ui: UiStack, day: str) -> set[str]:
    """Manifests of the day with a result written (the job writes its result last)."""
    prefix = ui.settings.layout.result_uri(day, "").removesuffix(".json")
    return {uri.removeprefix(prefix).removesuffix(".json") for uri in ui.storage().list(prefix)}


def day_parquet_snapshot(ui: UiStack, day: str) -> dict[str, str]:
    """Key -> eTag of the day's Parquet objects: identical snapshots mean identical output."""
    pages = (
        ui.s3()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=ui.settings.names.lake_bucket, Prefix=f"{ui.settings.dataset}/dt={day}/")
    )
    return {
        obj["Key"]: obj["ETag"] for page in pages for obj in page.get("Contents", []) if obj["Key"].endswith(".parquet")
    }


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


def assert_day_closed_exactly(ui, sample) -> dict:
    """Every file of the day terminal in the ledger, its report written, its Parquet rows exactly the valid rows."""
    report = day_report(ui.ledger(), ui.storage(), ui.settings, sample.day)
    assert report["complete"], report
    assert report["not_terminal"] == [], report
    assert "FAILED" not in report["files_by_state"], report
    written = ui.day_report(sample.day)
    assert written is not None, f"no report for {sample.day} in the lake"
    assert written["complete"]
    assert written["files_by_state"] == report["files_by_state"]
    ids = day_event_ids(ui, sample.day)
    assert len(ids) == len(set(ids)), f"duplicate rows in dt={sample.day}"
    assert set(ids) == sample.expected_rows
    assert report["rows_out"] == len(ids)
    assert report["rows_quarantined"] == sample.expected_bad_lines
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"], report
    return report


def pytest_collection_modifyitems(items):
    """The browser tests share one stack (one home, one database): under xdist they all run on one worker."""
    for item in items:
        if "tests/ui/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("ui-stack"))
