"""Debian's Chromium under Playwright, and a notebook in JupyterLab worked as a person would: menus and keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Playwright, Request, WebSocket, expect

CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: Chromium's own background connections would only stall or log.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Milliseconds to wait for anything the kernel or the page must do; generous, for a loaded 2-core machine.
UI_TIMEOUT = 45_000
#: Milliseconds to wait for JupyterLab to load and its kernel to start, or for all cells to run.
SLOW_TIMEOUT = 90_000
_LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def require_chromium() -> None:
    """Fail (not skip) with what to do when Debian's Chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing: {CHROMIUM} does not exist. Install Debian's package with "
            "`apt-get install -y chromium` (never `playwright install`), or deselect with -m 'not browser'.",
            pytrace=False,
        )


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, kept off the network but for loopback."""
    require_chromium()
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@dataclass
class PageWatcher:
    """What a page did that a test should see: requests that left the machine, script errors."""

    external_requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kernel_sockets: list[WebSocket] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        """Start recording page's requests, errors and kernel connections."""
        page.on("request", self._on_request)
        page.on("websocket", self._on_websocket)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", self._on_console)

    def _on_request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname not in _LOCAL_HOSTS:
            self.external_requests.append(request.url)

    def _on_websocket(self, socket: WebSocket) -> None:
        if "/api/kernels/" in socket.url:
            self.kernel_sockets.append(socket)

    def kernel_socket(self) -> WebSocket:
        """The page's open connection to its kernel."""
        sockets = [socket for socket in self.kernel_sockets if not socket.is_closed()]
        assert sockets, "the page has no open kernel connection"
        return sockets[-1]

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text[:300]}")


def open_notebook(page: Page, url: str) -> Locator:
    """Open the notebook at url and wait until its kernel is idle; return the notebook's panel."""
    page.goto(url)
    notebook = page.locator(".jp-NotebookPanel")
    expect(notebook, "JupyterLab did not show the notebook").to_be_visible(timeout=SLOW_TIMEOUT)
    # The status bar names the kernel only once it exists; "Idle" alone also shows before it starts.
    kernel_idle = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"Python 3.*\|\s*Idle"))
    expect(kernel_idle, "the notebook's kernel did not start").to_be_visible(timeout=SLOW_TIMEOUT)
    return notebook


def run_all_cells(page: Page) -> None:
    """Run > Run All Cells, from the menu bar."""
    page.locator("#jp-menu-panel li.lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()


def add_cell_below_and_run(page: Page, notebook: Locator, code: str) -> None:
    """Select the last cell, insert a code cell below it (B), type code and run it in place (Ctrl+Enter)."""
    notebook.locator(".jp-Cell .jp-InputPrompt").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    # insert_text types the code as one input event, so the editor adds no closing brackets of its own.
    page.keyboard.insert_text(code)
    page.keyboard.press("Control+Enter")


def restart_kernel(page: Page) -> None:
    """Kernel > Restart Kernel…, from the menu bar, and confirm the dialog."""
    page.locator("#jp-menu-panel li.lm-MenuBar-item", has_text=re.compile(r"^Kernel$")).click()
    page.locator("li.lm-Menu-item[data-command='kernelmenu:restart']").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
