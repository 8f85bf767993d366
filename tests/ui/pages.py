"""What an operator does in Airflow 3.3's UI, as Playwright steps: the one home of the UI's selectors.

Selectors are the UI's own test ids, roles and labels (checked against the
React UI that apache-airflow 3.3.1 ships). Every wait is on a condition; the
long ones (a run or a backfill finishing) reload the page between chunks so a
missed auto-refresh cannot stall them, and fail with the last state seen.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import quote, unquote

from playwright.sync_api import Locator, Page, expect

from tools.ui_stack import UiStack

CHUNK_MS = 10_000  # one wait between reloads while a run or backfill is in progress
FINAL_STATES = {"Success", "Failed", "Skipped", "Upstream Failed"}


def log_in(page: Page, ui: UiStack) -> None:
    """Open the UI, get redirected to SimpleAuthManager's login form, sign in."""
    page.goto(f"{ui.url}/")
    expect(page).to_have_url(re.compile(r"/auth/login"))
    page.get_by_label("Username").fill(ui.username)
    page.get_by_label("Password").fill(ui.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{ui.url}/")
    expect(page.get_by_test_id("nav-dags-link")).to_be_visible()


def open_dag(page: Page, ui: UiStack, dag_id: str) -> None:
    page.goto(f"{ui.url}/dags/{dag_id}")
    expect(page.get_by_role("heading", name=dag_id, exact=True)).to_be_visible()


def open_trigger_dialog(page: Page) -> Locator:
    page.get_by_test_id("trigger-dag-button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    return dialog


def trigger_with_params(
    page: Page, ui: UiStack, dag_id: str, *, switches: dict[str, bool] | None = None, **params: str
) -> str:
    """Trigger one run through the form, filling the DAG's params; returns the new run's id.

    :param switches: boolean params (the form's switches) to set on or off.
    """
    open_dag(page, ui, dag_id)
    dialog = open_trigger_dialog(page)
    for name, value in params.items():
        dialog.locator(f"#element_{name}").fill(value)
    for name, on in (switches or {}).items():
        state = dialog.locator(f"input[name=element_{name}]")  # the switch's hidden checkbox
        if state.is_checked() != on:
            dialog.locator(f"label:has(input[name=element_{name}])").click()
        expect(state).to_be_checked(checked=on)
    unpause = dialog.get_by_role("checkbox", name=f"Unpause {dag_id} on trigger")
    if unpause.count():  # offered only while the DAG is paused; checked by default
        expect(unpause).to_be_checked()
    dialog.get_by_test_id("trigger-dag-submit").click()
    # The UI opens the new run's page.
    expect(page).to_have_url(re.compile(rf"/dags/{dag_id}/runs/[^/]+$"))
    return unquote(page.url.rsplit("/runs/", 1)[1])


def run_url(ui: UiStack, dag_id: str, run_id: str) -> str:
    return f"{ui.url}/dags/{dag_id}/runs/{quote(run_id)}"


def wait_for_run_state(page: Page, ui: UiStack, dag_id: str, run_id: str, state: str, timeout_s: float) -> None:
    """Watch the run's page until its state badge reads ``state``; fail early on another final state."""
    page.goto(run_url(ui, dag_id, run_id))
    _wait_for_badge(page, run_id, state, timeout_s, f"{dag_id} run {run_id}")


def wait_for_task_state(
    page: Page, ui: UiStack, dag_id: str, run_id: str, task_id: str, map_index: int, state: str, timeout_s: float
) -> str:
    """Watch a mapped task instance's page until its state reads ``state``; returns its label (map index label)."""
    page.goto(f"{run_url(ui, dag_id, run_id)}/tasks/{task_id}/mapped/{map_index}")
    heading = re.compile(rf"^{re.escape(task_id)} \[.+\]$")
    _wait_for_badge(page, heading, state, timeout_s, f"{task_id}[{map_index}] of {run_id}")
    return page.get_by_role("heading", name=heading).inner_text().removeprefix(task_id).strip(" []")


def _wait_for_badge(page: Page, heading: str | re.Pattern, state: str, timeout_s: float, what: str) -> None:
    """The state badge beside the page's title heading; reloads between chunks until it reads ``state``."""
    title = page.get_by_role("heading", name=heading, exact=True)  # exact is ignored for a pattern
    badge = title.locator("xpath=..").get_by_test_id("state-badge")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            expect(badge).to_have_text(state, timeout=CHUNK_MS)
            return
        except AssertionError:
            seen = badge.inner_text() if badge.count() else "(no state badge)"
            if seen in FINAL_STATES - {state}:
                raise AssertionError(f"{what} ended {seen}, expected {state}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not {state} after {timeout_s:.0f}s: {seen}") from None
            page.reload()


def start_backfill(
    page: Page, ui: UiStack, dag_id: str, start: str, end: str, *, max_active_runs: int, runs: int, screenshot: Path
) -> None:
    """Open the DAG's backfill dialog, fill the range (``YYYY-MM-DDTHH:MM``, UI time zone), check its dry run, start.

    :param runs: how many runs the dialog must announce for the range before it is started.
    :param screenshot: where to save the filled dialog.
    """
    open_dag(page, ui, dag_id)
    dialog = open_trigger_dialog(page)
    dialog.get_by_text("Run this Dag for a range of dates").click()
    expect(dialog.get_by_role("heading", name=f"Run Backfill - {dag_id}")).to_be_visible()
    dialog.locator("input[name=from_date]").fill(start)
    dialog.locator("input[name=to_date]").fill(end)
    dialog.locator("input[name=max_active_runs]").fill(str(max_active_runs))
    expect(dialog.get_by_text(f"{runs} runs will be triggered.")).to_be_visible()
    dialog.screenshot(path=screenshot)
    dialog.get_by_role("button", name="Run Backfill").click()
    expect(page.get_by_role("status").filter(has_text="Backfill generated").first).to_be_visible()


def wait_for_backfill_completed(page: Page, ui: UiStack, dag_id: str, start: str, timeout_s: float) -> None:
    """Watch the DAG's Backfills tab until the backfill starting at ``start`` shows a completion time."""
    page.goto(f"{ui.url}/dags/{dag_id}/backfills")
    row = page.get_by_role("row").filter(has=page.locator("td").first.get_by_text(start.replace("T", " ")))
    completed_at = row.get_by_role("cell").nth(4)  # From, To, Reprocess Behavior, Created at, Completed at, ...
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            expect(completed_at.locator("time")).to_be_visible(timeout=CHUNK_MS)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                seen = row.inner_text() if row.count() else "(no such backfill row)"
                message = f"backfill of {dag_id} from {start} not completed after {timeout_s:.0f}s: {seen}"
                raise AssertionError(message) from None
            page.reload()


def open_mapped_instances(
    page: Page, ui: UiStack, dag_id: str, run_id: str, task_id: str, count: int, *, in_group: bool = True
) -> Locator:
    """The run's grid (task groups expanded when ``in_group``), beside the mapped task's instance list; its rows."""
    page.goto(f"{run_url(ui, dag_id, run_id)}/tasks/{task_id}/mapped")
    if in_group:
        page.get_by_role("button", name="Expand all task groups").click()
    rows = page.get_by_role("table").locator("tbody tr")
    expect(rows).to_have_count(count)
    return rows


def clear_task_instance(page: Page, ui: UiStack, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> None:
    """Clear one task instance from its page, with its downstream tasks (the dialog's default)."""
    suffix = f"/mapped/{map_index}" if map_index >= 0 else ""
    page.goto(f"{run_url(ui, dag_id, run_id)}/tasks/{task_id}{suffix}")
    page.get_by_role("button", name="Press shift+c to clear").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=re.compile(f"Clear Task Instance: {re.escape(task_id)}"))).to_be_visible()
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()
