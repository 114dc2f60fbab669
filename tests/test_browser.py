"""The calculator panel in a real JupyterLab (and Notebook 7), in headless Chromium, typed into and clicked as a
person would, with no wait between typing and clicking."""

from __future__ import annotations

import json
import random
import re
import statistics
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
    restart_kernel,
    run_all_cells,
)
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from remotecalc.widgets import NotANumber, format_number, parse_number

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03-calculator-panel.ipynb"
# The notebook names its server `server` and its panel `panel`; a second panel joins the same session.
SECOND_PANEL_CELL = "CalculatorPanel(server, token=panel.token)"
DIVISION_BY_ZERO = re.compile(r"division by zero.*INVALID_ARGUMENT", re.IGNORECASE)
#: A notebook of one cell: a panel on the kernel's embedded server, for the clicking tests.
CLICKS = "clicks.ipynb"
CLICKS_CELL = "import time\n\nfrom remotecalc.widgets import embedded_panel\n\npanel = embedded_panel()\npanel"
#: Each key's button, by its accessible name, and what it does.
BUTTONS = {"new": "New session", "answer": "Answer", "add": "add", "subtract": "subtract", "multiply": "multiply",
           "divide": "divide"}  # fmt: skip
ARITHMETIC = {
    "add": ("+", lambda a, b: a + b),
    "subtract": ("-", lambda a, b: a - b),
    "multiply": ("×", lambda a, b: a * b),
    "divide": ("÷", lambda a, b: a / b),
}
OPERANDS = ["2", "3", "0.5", "4", "1.5", "-2", "8", "0.25", "5", "10", "-0.5", "2.5", "7", "0.1"]
GONE = "kernel gone — re-run the cell"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def fresh_copy(notebook: Path) -> bytes:
    """The notebook without its saved outputs, execution counts and widget state, as if never run."""
    content = json.loads(notebook.read_text(encoding="utf-8"))
    content["metadata"].pop("widgets", None)
    for cell in content["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return json.dumps(content, indent=1).encode()


def one_cell_notebook(source: str) -> bytes:
    """A notebook holding one code cell, never run."""
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    kernel = {"display_name": "Python 3", "language": "python", "name": "python3"}
    content = {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(content, indent=1).encode()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests leave their screenshots (printed, so that they can be looked at)."""
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """One JupyterLab for the module, serving fresh copies; stopped, kernels and all, afterwards."""
    require_chromium()
    files = {NOTEBOOK.name: fresh_copy(NOTEBOOK), CLICKS: one_cell_notebook(CLICKS_CELL)}
    with jupyter_lab(tmp_path_factory.mktemp("lab"), files) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless Chromium for the module."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser) -> tuple[Page, PageWatcher]:
    """A page in its own window, watched for requests leaving the machine and script errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    watcher = PageWatcher()
    watcher.attach(page)
    return page, watcher


def finish(page: Page, watcher: PageWatcher, screenshot: Path) -> None:
    """Save the window, print the page's errors, close it, and fail if it tried to leave the machine."""
    page.screenshot(path=screenshot)
    for error in watcher.errors:
        print(error)
    page.close()
    assert not watcher.external_requests, f"the page tried to leave the machine: {watcher.external_requests}"


@pytest.fixture(scope="module")
def clicks(lab: RunningLab, chromium: Browser, screenshots: Path) -> Iterator[tuple[Page, Locator, Locator]]:
    """The one-cell notebook open and run in JupyterLab: its page, notebook and panel, shared by the clicking tests."""
    page, watcher = new_page(chromium)
    notebook = open_notebook(page, lab.notebook_url(CLICKS))
    run_all_cells(page)
    panel = notebook.locator(".remotecalc-panel")
    expect(panel.locator(".remotecalc-status")).to_have_text("connected", timeout=SLOW_TIMEOUT)
    yield page, notebook, panel
    finish(page, watcher, screenshots / "clicks-last.png")


def press(panel: Locator, key: str, text: str | None = None) -> None:
    """Type text (if given) into the Number field and click a button at once, with no wait between."""
    if text is not None:
        panel.get_by_role("textbox", name="Number", exact=True).fill(text)
    panel.get_by_role("button", name=BUTTONS[key], exact=True).click()


def history_rows(panel: Locator) -> list[list[str]]:
    """The history's rows as shown: #, op, operand, result (newest first)."""
    rows: list[list[str]] = panel.locator(".remotecalc-history tbody tr").evaluate_all(
        "rows => rows.map(row => [...row.cells].map(cell => cell.textContent))"
    )
    return rows


def test_panel_computes_shows_errors_and_shares_a_session_live(
    lab: RunningLab, chromium: Browser, screenshots: Path
) -> None:
    """The panel's notebook run whole; + - × ÷ and a division by zero clicked; a second panel follows live."""
    page, watcher = new_page(chromium)
    notebook = open_notebook(page, lab.notebook_url(NOTEBOOK.name))
    run_all_cells(page)
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    executed = [re.compile(rf"\[{count}\]") for count in range(1, sum(c["cell_type"] == "code" for c in cells) + 1)]
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
    press(first, "new", "0")
    expect(value).to_have_text("0", timeout=UI_TIMEOUT)
    expect(error).to_have_text("", timeout=UI_TIMEOUT)
    expect(first.locator(".remotecalc-status")).to_have_text("connected", timeout=UI_TIMEOUT)
    for text, key, shown in [
        ("5", "add", "5"),
        ("3", "subtract", "2"),
        ("10", "multiply", "20"),
        ("2", "divide", "10"),
    ]:
        press(first, key, text)
        expect(value).to_have_text(shown, timeout=UI_TIMEOUT)

    press(first, "divide", "0")
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
    expect(second.locator(".remotecalc-chart .scatterlayer .point")).to_have_count(5, timeout=UI_TIMEOUT)

    # A click in one panel reaches the other through the server's Watch stream alone.
    press(first, "add", "5")
    expect(value).to_have_text("15", timeout=UI_TIMEOUT)
    expect(second_value).to_have_text("15", timeout=UI_TIMEOUT)
    press(second, "multiply", "3")
    expect(second_value).to_have_text("45", timeout=UI_TIMEOUT)
    expect(value).to_have_text("45", timeout=UI_TIMEOUT)
    expect(first.locator(".remotecalc-chart .scatterlayer .point")).to_have_count(7, timeout=UI_TIMEOUT)

    first.screenshot(path=screenshots / "panel.png")
    second.screenshot(path=screenshots / "second-panel.png")
    print(f"panel screenshots: {screenshots / 'panel-error.png'}, {screenshots / 'panel.png'}")
    finish(page, watcher, screenshots / "notebook-last.png")


def test_clicks_right_after_typing_compute_with_what_was_typed(clicks: tuple[Page, Locator, Locator]) -> None:
    """5 fresh sessions of 20 mixed operations, each typed and clicked at once: every step as the test computes it."""
    _, _, panel = clicks
    rng = random.Random(8)
    token, rows = panel.locator(".remotecalc-token"), panel.locator(".remotecalc-history tbody tr")
    right = 0
    for _ in range(5):
        old_token = token.inner_text()
        start = str(rng.randint(-9, 9))
        press(panel, "new", start)
        value, expected = float(start), []
        for number in range(1, 21):
            key, text = rng.choice(list(ARITHMETIC)), rng.choice(OPERANDS)
            symbol, apply = ARITHMETIC[key]
            value = apply(value, float(text))
            expected.insert(0, [str(number), symbol, format_number(float(text)), format_number(value)])
            press(panel, key, text)
        expect(token).not_to_have_text(old_token, timeout=UI_TIMEOUT)
        expect(rows).to_have_count(20, timeout=UI_TIMEOUT)
        shown = history_rows(panel)
        right += sum(got == wanted for got, wanted in zip(shown, expected, strict=True))
        assert shown == expected
        expect(panel.locator(".remotecalc-value")).to_have_text(format_number(value))
    assert right == 100


#: A cell showing the smallest widget round trip: a button whose click the kernel answers with a count.
ECHO_CELL = """import anywidget
import traitlets


class Echo(anywidget.AnyWidget):
    _esm = \"\"\"export default { render({ model, el }) {
        const button = document.createElement("button"), count = document.createElement("span");
        button.className = "echo-button"; count.className = "echo-count"; button.textContent = "echo";
        button.onclick = () => model.send({});
        model.on("change:count", () => { count.textContent = String(model.get("count")); });
        el.append(button, count);
    } };\"\"\"
    count = traitlets.Int(0).tag(sync=True)


echo = Echo()
echo.on_msg(lambda widget, content, buffers: setattr(widget, "count", widget.count + 1))
echo"""
#: In the page: click, then the milliseconds until the element shows the expected text.
TIME_CLICK = """(root, [button, shown, expected]) => new Promise((resolve) => {
    const target = root.querySelector(shown);
    const start = performance.now();
    const observer = new MutationObserver(() => {
        if (target.textContent === expected) {
            observer.disconnect();
            resolve(performance.now() - start);
        }
    });
    observer.observe(target, { childList: true, characterData: true, subtree: true });
    const field = root.querySelector(".remotecalc-number input");
    if (field) field.value = "1";
    root.querySelector(button).click();
})"""


def summary(timings: list[float]) -> str:
    """Median and p90 of timings in milliseconds."""
    return f"median {statistics.median(timings):.1f} ms, p90 {statistics.quantiles(timings, n=10)[-1]:.1f} ms"


def test_click_to_visible_latency_is_reported(clicks: tuple[Page, Locator, Locator]) -> None:
    """Median and p90 of click-to-visible time over 20 clicks, beside a bare anywidget's round trip (printed only).

    The clock stops when the new value is in the page's DOM. Waiting for the next animation frame as
    well would add headless Chromium's frame scheduling (about 40 ms here even with no chart at all),
    which is not what a person at a screen waits for.
    """
    page, notebook, panel = clicks
    press(panel, "new", "0")
    expect(panel.locator(".remotecalc-value")).to_have_text("0", timeout=UI_TIMEOUT)
    expect(panel.locator(".remotecalc-history tbody tr")).to_have_count(0, timeout=UI_TIMEOUT)
    expect(panel.locator(".remotecalc-history")).to_contain_text("No steps yet")
    add_cell_below_and_run(page, notebook, ECHO_CELL)
    echo = notebook.locator(".echo-button").locator("..")
    expect(echo).to_be_visible(timeout=UI_TIMEOUT)

    clicks_timed = [
        panel.evaluate(TIME_CLICK, ["button[data-key=add]", ".remotecalc-value", str(n)]) for n in range(1, 21)
    ]
    echoes_timed = [echo.evaluate(TIME_CLICK, [".echo-button", ".echo-count", str(n)]) for n in range(1, 21)]

    print(f"\nclick-to-visible over 20 clicks: {summary(clicks_timed)}")
    print(f"a bare anywidget's round trip, same kernel and page: {summary(echoes_timed)}")
    assert len(clicks_timed) == len(echoes_timed) == 20


def test_a_busy_kernel_applies_the_number_typed_last(clicks: tuple[Page, Locator, Locator]) -> None:
    """A cell sleeps 10 s; meanwhile 3 is typed, then 4, then + is clicked: + 4 is applied, nothing else."""
    page, notebook, panel = clicks
    press(panel, "new", "10")
    value = panel.locator(".remotecalc-value")
    expect(value).to_have_text("10", timeout=UI_TIMEOUT)

    add_cell_below_and_run(page, notebook, "time.sleep(10)")
    expect(notebook.locator(".jp-CodeCell .jp-InputPrompt").last).to_have_text(re.compile(r"\[\*\]"))
    field = panel.get_by_role("textbox", name="Number", exact=True)
    field.fill("3")
    field.fill("4")
    panel.get_by_role("button", name="add", exact=True).click()

    expect(value).to_have_text("14", timeout=UI_TIMEOUT)
    assert history_rows(panel) == [["1", "+", "4", "14"]]


def test_a_text_that_is_not_a_number_shows_why_and_applies_nothing(clicks: tuple[Page, Locator, Locator]) -> None:
    _, _, panel = clicks
    press(panel, "new", "6")
    value, error = panel.locator(".remotecalc-value"), panel.locator(".remotecalc-error")
    expect(value).to_have_text("6", timeout=UI_TIMEOUT)
    box = error.bounding_box()

    for text in ["abc", "nan", "1e400", ""]:
        with pytest.raises(NotANumber) as refused:
            parse_number(text)
        press(panel, "add", text)
        expect(error).to_have_text(str(refused.value), timeout=UI_TIMEOUT)
        expect(value).to_have_text("6")
        assert panel.get_by_role("textbox", name="Number", exact=True).input_value() == text

    expect(panel.locator(".remotecalc-history tbody tr")).to_have_count(0)
    # The error line keeps its place: nothing below it moves when a message appears.
    assert box is not None and error.bounding_box() == box


def test_every_control_has_a_name_and_tab_reaches_each_in_order(clicks: tuple[Page, Locator, Locator]) -> None:
    page, _, panel = clicks
    press(panel, "new", "1")
    expect(panel.locator(".remotecalc-value")).to_have_text("1", timeout=UI_TIMEOUT)
    field = panel.get_by_role("textbox", name="Number", exact=True)
    field.fill("2")

    reached = []
    for _ in BUTTONS:
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.getAttribute('aria-label') || document.activeElement.textContent")
        )
    assert reached == ["add", "subtract", "multiply", "divide", "New session", "Answer"]

    field.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # on the add button
    expect(panel.locator(".remotecalc-value")).to_have_text("3", timeout=UI_TIMEOUT)


def test_after_a_kernel_restart_the_panel_says_the_kernel_is_gone(
    clicks: tuple[Page, Locator, Locator], screenshots: Path
) -> None:
    page, _, panel = clicks
    status = panel.locator(".remotecalc-status")
    expect(status).to_have_text("connected", timeout=UI_TIMEOUT)

    restart_kernel(page)

    expect(status).to_have_text(GONE, timeout=UI_TIMEOUT)
    for name in BUTTONS.values():
        expect(panel.get_by_role("button", name=name, exact=True)).to_be_disabled()
    expect(panel.get_by_role("textbox", name="Number", exact=True)).to_be_disabled()
    panel.screenshot(path=screenshots / "kernel-gone.png")


def test_a_re_run_cell_gives_a_live_panel_and_a_kernel_that_dies_shows_as_gone(
    clicks: tuple[Page, Locator, Locator], screenshots: Path
) -> None:
    """After the restart: re-running the panel's cell gives a working panel; a kernel that exits is shown gone."""
    page, notebook, panel = clicks
    notebook.locator(".jp-Cell .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Enter")  # run the panel's cell again, in place
    status = panel.locator(".remotecalc-status")
    expect(status).to_have_text("connected", timeout=SLOW_TIMEOUT)
    press(panel, "add", "2")
    expect(panel.locator(".remotecalc-value")).to_have_text("2", timeout=UI_TIMEOUT)

    add_cell_below_and_run(page, notebook, "import os\n\nos._exit(1)")

    expect(status).to_have_text(GONE, timeout=UI_TIMEOUT)
    expect(panel.get_by_role("button", name="add", exact=True)).to_be_disabled()
    panel.screenshot(path=screenshots / "kernel-died.png")


def test_the_panel_works_in_notebook_7(
    tmp_path_factory: pytest.TempPathFactory, chromium: Browser, screenshots: Path
) -> None:
    """Jupyter Notebook 7 (its own server, the same Chromium) draws the panel, and a click computes."""
    files = {CLICKS: one_cell_notebook(CLICKS_CELL)}
    with jupyter_lab(tmp_path_factory.mktemp("notebook7"), files, app="notebook") as server:
        page, watcher = new_page(chromium)
        page.goto(server.classic_url(CLICKS))
        editor = page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first
        expect(editor, "Notebook 7 did not show the notebook").to_be_visible(timeout=SLOW_TIMEOUT)
        # A cell run before the page has its kernel is dropped: wait for the kernel's indicator to say idle.
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        expect(idle, "the notebook's kernel did not start").to_be_visible(timeout=SLOW_TIMEOUT)
        # Under load, Notebook 7 can drop a run asked for just as its kernel connects (the prompt stays
        # "[ ]"); a person would run the cell again, and so does the test, at most three times.
        prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first
        for _ in range(3):
            editor.click()
            page.keyboard.press("Control+Enter")
            try:
                expect(prompt).to_have_text(re.compile(r"\[(\*|\d+)\]"), timeout=15_000)
                break
            except AssertionError:
                continue
        panel = page.locator(".remotecalc-panel")
        expect(panel.locator(".remotecalc-status")).to_have_text("connected", timeout=SLOW_TIMEOUT)

        press(panel, "add", "5")

        expect(panel.locator(".remotecalc-value")).to_have_text("5", timeout=UI_TIMEOUT)
        assert history_rows(panel) == [["1", "+", "5", "5"]]
        panel.screenshot(path=screenshots / "notebook7-panel.png")
        finish(page, watcher, screenshots / "notebook7-last.png")
