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
from remotecalc.widgets.panel import NEEDS_OPERATOR
from remotecalc.widgets.render import cell_number

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
    expect(first.locator(".remotecalc-chart .remotecalc-point")).to_have_count(5, timeout=UI_TIMEOUT)

    add_cell_below_and_run(page, notebook, SECOND_PANEL_CELL)
    expect(panels).to_have_count(2, timeout=UI_TIMEOUT)
    second = panels.nth(1)
    second_value = second.locator(".remotecalc-value")
    expect(second_value).to_have_text("10", timeout=UI_TIMEOUT)
    expect(second.locator(".remotecalc-token")).to_have_text(first.locator(".remotecalc-token").inner_text())
    expect(second.locator(".remotecalc-status")).to_have_text("connected", timeout=UI_TIMEOUT)
    expect(second.locator(".remotecalc-chart .remotecalc-point")).to_have_count(5, timeout=UI_TIMEOUT)

    # A click in one panel reaches the other through the server's Watch stream alone.
    press(first, "add", "5")
    expect(value).to_have_text("15", timeout=UI_TIMEOUT)
    expect(second_value).to_have_text("15", timeout=UI_TIMEOUT)
    press(second, "multiply", "3")
    expect(second_value).to_have_text("45", timeout=UI_TIMEOUT)
    expect(value).to_have_text("45", timeout=UI_TIMEOUT)
    expect(first.locator(".remotecalc-chart .remotecalc-point")).to_have_count(7, timeout=UI_TIMEOUT)

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
            expected.insert(0, [str(number), symbol, cell_number(float(text)), cell_number(value)])
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
import ipywidgets
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
    padding = traitlets.Unicode("").tag(sync=True)


def echo(size):
    made = Echo()

    def answer(widget, content, buffers):
        with widget.hold_sync():  # one message: the count, and size characters that change each time
            widget.count += 1
            widget.padding = str(widget.count % 10) * size

    made.on_msg(answer)
    return made


ipywidgets.HBox([echo(0), echo(12_000)])"""
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
    buttons = notebook.locator(".echo-button")
    expect(buttons).to_have_count(2, timeout=UI_TIMEOUT)
    small, large = (buttons.nth(index).locator("..") for index in range(2))

    clicks_timed = [
        panel.evaluate(TIME_CLICK, ["button[data-key=add]", ".remotecalc-value", str(n)]) for n in range(1, 21)
    ]
    echoes_timed = [small.evaluate(TIME_CLICK, [".echo-button", ".echo-count", str(n)]) for n in range(1, 21)]
    large_timed = [large.evaluate(TIME_CLICK, [".echo-button", ".echo-count", str(n)]) for n in range(1, 21)]

    print(f"\nclick-to-visible over 20 clicks: {summary(clicks_timed)}")
    print(f"a bare anywidget's round trip, same kernel and page: {summary(echoes_timed)}")
    print(f"the same echo answering with a 12 kB message: {summary(large_timed)}")
    assert len(clicks_timed) == len(echoes_timed) == len(large_timed) == 20


#: In the page: click the button count times in a row, as fast as the page takes clicks; resolve with the
#: milliseconds from the last click until the value shows expected (rejected, not hung, after a minute).
CLICK_BURST = """(root, [count, expected]) => new Promise((resolve, reject) => {
    const value = root.querySelector(".remotecalc-value"), button = root.querySelector("button[data-key=add]");
    let last = 0;
    const observer = new MutationObserver(() => {
        if (value.textContent === expected) { observer.disconnect(); resolve(performance.now() - last); }
    });
    observer.observe(value, { childList: true, characterData: true, subtree: true });
    setTimeout(() => { observer.disconnect(); reject(new Error(`still ${value.textContent}`)); }, 60000);
    root.querySelector(".remotecalc-number input").value = "1";
    for (let n = 0; n < count; n++) { last = performance.now(); button.click(); }
})"""


def test_two_hundred_clicks_with_no_wait_all_count(clicks: tuple[Page, Locator, Locator]) -> None:
    """200 clicks on + with 1 in the field, made in the page one after another with no wait: each one counts."""
    _, _, panel = clicks
    press(panel, "new", "0")
    expect(panel.locator(".remotecalc-value")).to_have_text("0", timeout=UI_TIMEOUT)

    after_last = panel.evaluate(CLICK_BURST, [200, "200"])

    print(f"\n200 clicks made at once: 200 shown {after_last:.0f} ms after the last")
    rows = panel.locator(".remotecalc-history tbody tr")
    expect(rows.first).to_have_text(re.compile(r"^200\+1200$"), timeout=UI_TIMEOUT)
    expect(rows).to_have_count(200)
    assert panel.locator(".remotecalc-history-note").inner_text() == ""
    ticks = panel.locator(".remotecalc-chart .remotecalc-x-tick").evaluate_all("ticks => ticks.map(t => t.textContent)")
    assert ticks == ["0", "50", "100", "150", "200"]


#: In the page: for each element of root that shows text, its text, the WCAG contrast ratio of its colour
#: against the colour behind it (backgrounds composited up the tree), and whether it is disabled.
CONTRASTS = """(root) => {
    const rgba = (text) => {
        const parts = text.match(/[\\d.]+/g).map(Number);
        return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
    };
    const over = ([r, g, b, a], [br, bg, bb]) => [r * a + br * (1 - a), g * a + bg * (1 - a), b * a + bb * (1 - a)];
    const background = (node) => {
        const layers = [];
        for (let at = node; at && at.nodeType === 1; at = at.parentElement) {
            const colour = rgba(getComputedStyle(at).backgroundColor);
            if (colour[3] > 0) layers.push(colour);
            if (colour[3] >= 1) break;
        }
        return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255]);
    };
    const luminance = (rgb) => {
        const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const shown = [...root.querySelectorAll("*")].filter((node) => {
        const own = [...node.childNodes].some((child) => child.nodeType === 3 && child.textContent.trim());
        return (own || (node.tagName === "INPUT" && node.value)) && node.getClientRects().length > 0;
    });
    return shown.map((node) => {
        const style = getComputedStyle(node);
        const behind = background(node);
        const ink = over(rgba(node instanceof SVGElement ? style.fill : style.color), behind);
        const [light, dark] = [luminance(ink), luminance(behind)].sort((a, b) => b - a);
        const text = (node.value || node.textContent).trim().slice(0, 40);
        return [text, (light + 0.05) / (dark + 0.05), Boolean(node.closest(":disabled"))];
    });
}"""
#: The look that tells a disabled control from an enabled one.
LOOK = "(node) => { const s = getComputedStyle(node); return [s.opacity, s.borderStyle, s.cursor]; }"


def switch_theme(page: Page, name: str, light: bool) -> None:
    """Settings > Theme > name, from the menu bar (unless the page has it already); wait until the page has it."""
    body = page.locator("body")
    if body.get_attribute("data-jp-theme-name") != name:
        theme_menu = page.locator("li.lm-Menu-item[data-type='submenu']", has_text=re.compile(r"^Theme$"))
        # The menu bar can stay active after a menu closes, so that a click closes instead of opening: retry.
        for _ in range(3):
            page.keyboard.press("Escape")
            page.locator("#jp-menu-panel li.lm-MenuBar-item", has_text=re.compile(r"^Settings$")).click()
            try:
                expect(theme_menu).to_be_visible(timeout=5_000)
                break
            except AssertionError:
                continue
        theme_menu.hover()
        page.get_by_role("menuitem", name=name, exact=True).click()
    expect(body).to_have_attribute("data-jp-theme-light", str(light).lower(), timeout=UI_TIMEOUT)
    expect(body).to_have_attribute("data-jp-theme-name", name, timeout=UI_TIMEOUT)


def test_every_text_reads_at_4_5_to_1_in_light_and_dark_and_disabled_looks_disabled(
    clicks: tuple[Page, Locator, Locator], screenshots: Path
) -> None:
    """Each text of the panel, chart included, against what is behind it, in JupyterLab Light, then Dark."""
    page, _, panel = clicks
    press(panel, "new", "6")
    expect(panel.locator(".remotecalc-value")).to_have_text("6", timeout=UI_TIMEOUT)
    for text, key in [("1.5", "multiply"), ("2", "add"), ("0", "divide")]:
        press(panel, key, text)
    expect(panel.locator(".remotecalc-error")).to_have_text(DIVISION_BY_ZERO, timeout=UI_TIMEOUT)
    expect(panel.locator(".remotecalc-chart .remotecalc-point")).to_have_count(3, timeout=UI_TIMEOUT)
    try:
        for theme, light in [("JupyterLab Light", True), ("JupyterLab Dark", False)]:
            switch_theme(page, theme, light)
            panel.screenshot(path=screenshots / f"panel-{'light' if light else 'dark'}.png")
            ratios = [(text, ratio) for text, ratio, disabled in panel.evaluate(CONTRASTS) if not disabled]
            print(f"\n{theme}: {len(ratios)} texts, lowest contrast {min(ratio for _, ratio in ratios):.2f}:1")
            texts = {text for text, _ in ratios}
            # Everything a person reads is among them: value, status, error, hint, tables, chart ticks.
            assert {"11", "connected", "Enter repeats +", "step", "value", "INVALID_ARGUMENT", "Answer"} <= texts
            assert any(DIVISION_BY_ZERO.search(text) for text in texts)
            assert [(text, round(ratio, 2)) for text, ratio in ratios if ratio < 4.5] == []

        press(panel, "answer")
        add, field = (
            panel.get_by_role("button", name="add", exact=True),
            panel.get_by_role("textbox", name="Number", exact=True),
        )
        expect(add).to_be_disabled(timeout=UI_TIMEOUT)
        enabled = panel.get_by_role("button", name="New session", exact=True)
        assert add.evaluate(LOOK) == ["0.45", "dashed", "not-allowed"]
        assert enabled.evaluate(LOOK) == ["1", "solid", "pointer"] and field.evaluate(LOOK)[0] == "1"
        panel.screenshot(path=screenshots / "panel-dark-answered.png")
    finally:
        switch_theme(page, "JupyterLab Light", True)


#: In the page: the cells of the history and of the log's time column that take more than one line or
#: hide part of their text, with their text.
OVERFLOWING = """(root) => {
    const cells = [...root.querySelectorAll(".remotecalc-history td, .remotecalc-log td:nth-child(4)")];
    const line = parseFloat(getComputedStyle(cells[0]).lineHeight);
    return cells.filter((cell) => cell.getClientRects().length !== 1 || cell.scrollWidth > cell.clientWidth
        || [...cell.childNodes].some((text) => { const range = document.createRange(); range.selectNodeContents(text);
                                                 return range.getClientRects().length > 1; })
        || cell.getBoundingClientRect().height > 1.6 * line).map((cell) => cell.textContent);
}"""


def test_long_numbers_keep_to_one_line_with_every_digit_on_hover(clicks: tuple[Page, Locator, Locator]) -> None:
    """A session of 200-digit numbers: no history cell wraps or hides digits, the log's times keep their unit."""
    _, _, panel = clicks
    press(panel, "new", "-" + "8" * 200)
    expect(panel.locator(".remotecalc-value")).to_have_text("-8.88888888889e+199", timeout=UI_TIMEOUT)
    for text, key in [("1." + "3" * 198, "multiply"), ("9" * 200, "subtract"), ("0.000" + "7" * 196, "divide"),
                      ("-" + "1" * 199 + ".5", "add"), ("123456789.123456789", "multiply")]:  # fmt: skip
        press(panel, key, text)
    expect(panel.locator(".remotecalc-history tbody tr")).to_have_count(5, timeout=UI_TIMEOUT)

    assert panel.evaluate(OVERFLOWING) == []
    cells = panel.locator(".remotecalc-history tbody tr").first.locator("td")
    assert cells.nth(3).inner_text() == format_number_short(cells.nth(3).get_attribute("title") or "")
    times = panel.locator(".remotecalc-log td:nth-child(4)").all_inner_texts()
    assert times and all(re.fullmatch(r"(open )?[\d.]+ m?s", time) for time in times), times


def format_number_short(full: str) -> str:
    """The history's abbreviation of a number given with all its digits."""
    return cell_number(float(full))


def test_enter_in_the_number_field_repeats_the_last_operator(clicks: tuple[Page, Locator, Locator]) -> None:
    """Type a number, press Enter: the last step's operator is applied to it, and the panel says which it is."""
    page, _, panel = clicks
    press(panel, "new", "2")
    value, hint = panel.locator(".remotecalc-value"), panel.locator(".remotecalc-hint")
    expect(value).to_have_text("2", timeout=UI_TIMEOUT)
    field = panel.get_by_role("textbox", name="Number", exact=True)
    field.fill("3")
    field.press("Enter")
    expect(panel.locator(".remotecalc-error")).to_have_text(NEEDS_OPERATOR, timeout=UI_TIMEOUT)
    expect(hint).to_have_text("Enter repeats the last operator")

    press(panel, "multiply", "3")
    expect(hint).to_have_text("Enter repeats ×", timeout=UI_TIMEOUT)
    field.fill("5")
    field.press("Enter")
    expect(value).to_have_text("30", timeout=UI_TIMEOUT)
    page.keyboard.type("0")  # the field keeps the focus: type on, Enter again
    page.keyboard.press("Enter")
    expect(value).to_have_text("1500", timeout=UI_TIMEOUT)
    expect(panel.locator(".remotecalc-history tbody tr")).to_have_count(3, timeout=UI_TIMEOUT)
    assert history_rows(panel) == [["3", "×", "50", "1500"], ["2", "×", "5", "30"], ["1", "×", "3", "6"]]


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
    expect(panel.locator(".remotecalc-history tbody tr")).to_have_count(1, timeout=UI_TIMEOUT)
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
        expect(panel.locator(".remotecalc-history tbody tr")).to_have_count(1, timeout=UI_TIMEOUT)
        assert history_rows(panel) == [["1", "+", "5", "5"]]
        panel.screenshot(path=screenshots / "notebook7-panel.png")
        finish(page, watcher, screenshots / "notebook7-last.png")
