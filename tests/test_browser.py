"""The calculator panel in a real JupyterLab, in headless Chromium, worked by typing and clicking as a person would."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_lab import RunningLab, jupyter_lab
from browser_page import (
    SLOW_TIMEOUT,
    UI_TIMEOUT,
    PageWatcher,
    add_cell_below_and_run,
    launch_chromium,
    open_notebook,
    require_chromium,
    run_all_cells,
    type_number,
)
from playwright.sync_api import Locator, Page, expect, sync_playwright

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03-calculator-panel.ipynb"
# The notebook names its server `server` and its panel `panel`; a second panel joins the same session.
SECOND_PANEL_CELL = "CalculatorPanel(server, token=panel.token)"
DIVISION_BY_ZERO = re.compile(r"division by zero.*INVALID_ARGUMENT", re.IGNORECASE)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def fresh_copy(notebook: Path) -> bytes:
    """The notebook without its saved outputs, execution counts and widget state, as if never run."""
    content = json.loads(notebook.read_text(encoding="utf-8"))
    content["metadata"].pop("widgets", None)
    for cell in content["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return json.dumps(content, indent=1).encode()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    """JupyterLab on loopback serving a fresh copy of the panel's notebook; stopped, kernels and all, afterwards."""
    require_chromium()
    # Without saved outputs, a cell's prompt shows a number only once this test's run has reached it.
    with jupyter_lab(tmp_path / "lab", {NOTEBOOK.name: fresh_copy(NOTEBOOK)}) as running:
        yield running


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the test leaves its screenshots (printed, so that they can be looked at)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture
def browser_page(lab: RunningLab, screenshots: Path) -> Iterator[tuple[Page, PageWatcher]]:
    """A page in headless Chromium, closed before JupyterLab stops; the whole window is saved as last.png."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            watcher = PageWatcher()
            watcher.attach(page)
            yield page, watcher
            page.screenshot(path=screenshots / "last.png")
        finally:
            for error in watcher.errors:
                print(error)
            browser.close()


def enter(watcher: PageWatcher, panel: Locator, number: str, button: str) -> None:
    """Type number into the panel's number field, then click the button with CSS class button."""
    type_number(watcher, panel.locator(".remotecalc-number input"), number)
    panel.locator(f".{button}").click()


def test_panel_computes_shows_errors_and_shares_a_session_live(
    lab: RunningLab, browser_page: tuple[Page, PageWatcher], screenshots: Path
) -> None:
    """New session, + - × ÷ and a division by zero, clicked in the panel; a second panel on the session follows live."""
    page, watcher = browser_page
    notebook = open_notebook(page, lab.notebook_url(NOTEBOOK.name))
    run_all_cells(page)
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
    executed = [re.compile(rf"\[{count}\]") for count in range(1, prompts.count() + 1)]
    expect(prompts, "not every cell ran: one failed, or the kernel is stuck").to_have_text(
        executed, timeout=SLOW_TIMEOUT
    )
    stderr = notebook.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    expect(stderr, "a cell wrote to stderr").to_have_count(0)

    panels = notebook.locator(".remotecalc-panel")
    expect(panels).to_have_count(1)
    first = panels.first
    value, error = first.locator(".remotecalc-value"), first.locator(".remotecalc-error")
    # The notebook's own cells leave the panel at 10 with an error shown: New session must reset both.
    enter(watcher, first, "0", "remotecalc-new")
    expect(value).to_have_text("0", timeout=UI_TIMEOUT)
    expect(error).to_have_text("", timeout=UI_TIMEOUT)
    expect(first.locator(".remotecalc-status")).to_have_text("connected", timeout=UI_TIMEOUT)
    for number, button, shown in [
        ("5", "remotecalc-op-add", "5"),
        ("3", "remotecalc-op-subtract", "2"),
        ("10", "remotecalc-op-multiply", "20"),
        ("2", "remotecalc-op-divide", "10"),
    ]:
        enter(watcher, first, number, button)
        expect(value).to_have_text(shown, timeout=UI_TIMEOUT)

    enter(watcher, first, "0", "remotecalc-op-divide")
    expect(error).to_have_text(DIVISION_BY_ZERO, timeout=UI_TIMEOUT)
    expect(first.locator(".remotecalc-log")).to_contain_text("INVALID_ARGUMENT", timeout=UI_TIMEOUT)
    expect(value).to_have_text("10")
    first.screenshot(path=screenshots / "panel-error.png")
    expect(first.locator(".remotecalc-history tbody tr")).to_have_count(4)
    # One marker per step, the session's start included: the chart really drew in the page.
    expect(first.locator(".remotecalc-chart .scatterlayer .point")).to_have_count(5, timeout=UI_TIMEOUT)

    add_cell_below_and_run(page, notebook, SECOND_PANEL_CELL)
    expect(panels).to_have_count(2, timeout=UI_TIMEOUT)
    second = panels.nth(1)
    second_value = second.locator(".remotecalc-value")
    expect(second_value).to_have_text("10", timeout=UI_TIMEOUT)
    expect(second.locator(".remotecalc-token")).to_have_text(first.locator(".remotecalc-token").inner_text())
    expect(second.locator(".remotecalc-status")).to_have_text("connected", timeout=UI_TIMEOUT)

    # A click in one panel reaches the other through the server's Watch stream alone.
    enter(watcher, first, "5", "remotecalc-op-add")
    expect(value).to_have_text("15", timeout=UI_TIMEOUT)
    expect(second_value).to_have_text("15", timeout=UI_TIMEOUT)
    enter(watcher, second, "3", "remotecalc-op-multiply")
    expect(second_value).to_have_text("45", timeout=UI_TIMEOUT)
    expect(value).to_have_text("45", timeout=UI_TIMEOUT)
    expect(first.locator(".remotecalc-chart .scatterlayer .point")).to_have_count(7, timeout=UI_TIMEOUT)

    first.screenshot(path=screenshots / "panel.png")
    second.screenshot(path=screenshots / "second-panel.png")
    print(f"panel screenshots: {screenshots / 'panel-error.png'}, {screenshots / 'panel.png'}")
    assert not watcher.external_requests, f"the page tried to leave the machine: {watcher.external_requests}"
