"""Nothing remotecalc starts keeps a process alive: a script ends with its last line, a kernel shuts down."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from jupyter_client.manager import KernelManager
from processes import Served

# Only a hang crosses these: exiting takes a second or two (plotly's modules torn down included, several
# seconds on a loaded machine); a script imports plotly and starts a server first, a kernel starts ipykernel.
EXIT_BOUND = 20.0
SCRIPT_BOUND = 45.0
KERNEL_BOUND = 30.0

PANEL_SCRIPT = """
import sys, time
import remotecalc
from remotecalc.widgets import CalculatorPanel

# A core: the script's own server; a Redis URL: its own server with sessions there; else another process's server.
where = sys.argv[1]
if where in ("sync", "aio"):
    target = remotecalc.start_server(core=where)
elif where.startswith("redis://"):
    target = remotecalc.start_server(store=where)
else:
    target = where
p = CalculatorPanel(target)
assert p.wait_for(lambda: p.status == "connected"), p.status
p.press("add", "2")
assert p.wait_for(lambda: p.value == 2), p.error
print(time.monotonic(), flush=True)
"""

WATCH_SCRIPT = """
import sys, threading, time
import remotecalc

server = remotecalc.start_server(core=sys.argv[1])
client = remotecalc.connect(server)
session = client.create(1)
heard = threading.Event()

def follow():
    for update in session.watch():
        heard.set()

threading.Thread(target=follow, daemon=True).start()
session.add(1)
assert heard.wait(10)
print(time.monotonic(), flush=True)
"""


def _exits_after_its_last_line(script: str, argument: str) -> float:
    """Seconds from a script's last line (it prints time.monotonic()) to its exit; fails on a hang or stderr."""
    try:
        ran = subprocess.run(
            [sys.executable, "-c", script, argument], capture_output=True, text=True, timeout=SCRIPT_BOUND
        )
    except subprocess.TimeoutExpired as hung:
        said = f"stdout {hung.stdout!r}, stderr {hung.stderr!r}"
        raise AssertionError(f"the script was still running {SCRIPT_BOUND:.0f} s after it started ({said})") from None
    ended = time.monotonic()
    assert ran.returncode == 0, ran.stderr
    # Nothing on stderr: no traceback from a call cut short, no gRPC log line.
    assert ran.stderr == ""
    return ended - float(ran.stdout.split()[-1])


@pytest.mark.parametrize("core", ["sync", "aio"])
@pytest.mark.parametrize("script", [PANEL_SCRIPT, WATCH_SCRIPT], ids=["panel", "open-watch"])
def test_a_script_ends_with_its_last_line(script: str, core: str) -> None:
    after_last_line = _exits_after_its_last_line(script, core)
    print(f"{core}: exited {after_last_line:.2f} s after its last line")
    assert after_last_line < EXIT_BOUND


def test_a_script_with_a_panel_on_sessions_in_redis_ends_with_its_last_line(redis_url: str) -> None:
    after_last_line = _exits_after_its_last_line(PANEL_SCRIPT, redis_url)
    print(f"sessions in Redis: exited {after_last_line:.2f} s after its last line")
    assert after_last_line < EXIT_BOUND


def test_a_script_with_a_panel_on_another_process_server_ends_with_its_last_line() -> None:
    served = Served("--port", "0")
    try:
        after_last_line = _exits_after_its_last_line(PANEL_SCRIPT, served.address())
    finally:
        served.stop()
    print(f"remote server: exited {after_last_line:.2f} s after its last line")
    assert after_last_line < EXIT_BOUND


def _run(kernel: KernelManager, code: str) -> None:
    """Run code in kernel; fails the test on an error."""
    client = kernel.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=KERNEL_BOUND)
        reply = client.execute_interactive(textwrap.dedent(code), timeout=KERNEL_BOUND, output_hook=lambda _: None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()


@contextmanager
def _kernel() -> Iterator[KernelManager]:
    kernel = KernelManager(kernel_name="python3")
    kernel.start_kernel()
    try:
        yield kernel
    finally:
        if kernel.is_alive():
            kernel.shutdown_kernel(now=True)


def _shutdown_on_its_own(kernel: KernelManager) -> float:
    """Seconds from a shutdown request until the kernel's process has exited by itself (never signalled)."""
    started = time.monotonic()
    kernel.request_shutdown()
    deadline = started + EXIT_BOUND
    while kernel.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling a process that ends by itself, not waiting for time to pass
    took = time.monotonic() - started
    # jupyter_client would SIGTERM it 2.5 s after the request, a restart too: this test asks and waits only.
    assert not kernel.is_alive(), f"the kernel was still running {EXIT_BOUND:.0f} s after a shutdown request"
    process: Any = kernel.provisioner.process  # type: ignore[union-attr]
    assert process.wait(EXIT_BOUND) == 0
    kernel.cleanup_resources()
    return took


def test_a_kernel_with_a_panel_shuts_down_as_fast_as_one_without() -> None:
    with _kernel() as plain, _kernel() as with_panel:
        _run(plain, "import remotecalc\nfrom remotecalc.widgets import CalculatorPanel")
        _run(
            with_panel,
            """
            import remotecalc
            from remotecalc.widgets import CalculatorPanel
            from IPython.display import display
            panel = CalculatorPanel(remotecalc.start_server())
            display(panel)
            assert panel.wait_for(lambda: panel.status == "connected"), panel.status
            panel.press("add", "2")
            assert panel.wait_for(lambda: panel.value == 2), panel.error
            """,
        )
        without = _shutdown_on_its_own(plain)
        panelled = _shutdown_on_its_own(with_panel)
    print(f"kernel shutdown: {without:.2f} s without a panel, {panelled:.2f} s with one (plotly's teardown)")
