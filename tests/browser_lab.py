"""A private JupyterLab on loopback for the browser tests: started in its own session, stopped without leftovers."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

STARTUP_TIMEOUT = 90.0
SHUTDOWN_TIMEOUT = 30.0
_URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")

# JupyterLab 4 reaches out on its own for news, for updates and for the PyPI extension
# listing; the machine's network is closed, so each would stall or log failures.
_SERVER_CONFIG = {
    "ServerApp": {
        "ip": "127.0.0.1",
        "port": 0,
        "port_retries": 0,
        "open_browser": False,
        "password": "",
        "terminals_enabled": False,
        # CI containers run as root; the server only listens on loopback.
        "allow_root": True,
    },
    "IdentityProvider": {"token": ""},
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "extension_manager": "readonly",
    },
    "LanguageServerManager": {"autodetect": False},
}
# The announcements plugin would still ask, in a toast over the notebook, whether to fetch news.
_PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


@dataclass
class RunningLab:
    """A JupyterLab server: where to reach it, what it serves, and its log."""

    process: subprocess.Popen[bytes]
    url: str
    root: Path
    log: list[str] = field(default_factory=list)

    def notebook_url(self, name: str) -> str:
        """The address that opens the notebook `name` (relative to the root) in JupyterLab, alone.

        ?reset starts from an empty workspace: without it, a second page would also reopen the notebooks
        an earlier page left open, and the menu's commands could act on one of those.
        """
        return f"{self.url.rstrip('/')}/lab/tree/{name}?reset"

    def classic_url(self, name: str) -> str:
        """The address that opens the notebook `name` in Jupyter Notebook 7."""
        return f"{self.url.rstrip('/')}/notebooks/{name}"

    def log_tail(self, lines: int = 40) -> str:
        """The server's last log lines, to explain a failure."""
        return "\n".join(self.log[-lines:])


def private_environment(base: Path) -> dict[str, str]:
    """An environment whose Jupyter and IPython state lives under base, with this venv's Python first on PATH."""
    env = dict(os.environ)
    names = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "IPYTHONDIR": "ipython",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "MPLCONFIGDIR": "matplotlib",
    }
    for name, folder in names.items():
        path = base / folder
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    # The kernel spec "python3" runs "python": the venv's own, which has remotecalc installed.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONNOUSERSITE"] = "1"
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_TOKEN", None)
    return env


def _write_config(config_dir: Path) -> None:
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(_SERVER_CONFIG, indent=1))
    (config_dir / "labconfig").mkdir(exist_ok=True)
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps(_PAGE_CONFIG, indent=1))


def _read_log(lab: RunningLab, stream: IO[bytes], ready: threading.Event) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        lab.log.append(line)
        # The server announces its address once it listens ("is running at:" then the URL).
        found = _URL.search(line)
        if found and not lab.url:
            lab.url = found.group(1)
            ready.set()
    ready.set()  # the server exited: stop waiting


def descendants(process: psutil.Process) -> list[psutil.Process]:
    """Every process below process (kernels included, though they run in sessions of their own)."""
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def _in_sessions(session_ids: set[int]) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in session_ids:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            pass
    return _alive(found)


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} ({' '.join(process.cmdline())[:200]})"
    except psutil.Error:
        return f"{process.pid} (gone)"


def shut_down_kernels(lab: RunningLab) -> str:
    """Shut every kernel down over the REST API, as the Kernel menu would; return what went wrong, if anything."""
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    try:
        # Without a token, state-changing calls need the XSRF cookie the page itself gets.
        opener.open(f"{lab.url}lab", timeout=SHUTDOWN_TIMEOUT).close()
        xsrf = next(cookie.value for cookie in cookies if cookie.name == "_xsrf")
        with opener.open(f"{lab.url}api/kernels", timeout=SHUTDOWN_TIMEOUT) as reply:
            kernels = json.load(reply)
        for kernel in kernels:
            request = urllib.request.Request(
                f"{lab.url}api/kernels/{kernel['id']}", method="DELETE", headers={"X-XSRFToken": xsrf}
            )
            opener.open(request, timeout=SHUTDOWN_TIMEOUT).close()
    except (OSError, StopIteration, ValueError) as error:
        return f"shutting the kernels down over REST failed: {error!r}"
    return ""


def stop_lab(lab: RunningLab) -> tuple[list[str], list[str], set[int]]:
    """Stop the kernels, then the server's process group.

    Returns the processes (but the server) that outlived the polite stop (killed since), notes on
    what needed force, and the session ids to check for leftovers.
    """
    try:
        server = psutil.Process(lab.process.pid)
        family = [server, *descendants(server)]
    except psutil.NoSuchProcess:
        server, family = None, []
    sessions = {lab.process.pid}
    for process in family:
        with contextlib.suppress(ProcessLookupError):
            sessions.add(os.getsid(process.pid))
    notes = [shut_down_kernels(lab)] if lab.process.poll() is None and lab.url else []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(lab.process.pid, signal.SIGTERM)
    try:
        lab.process.wait(SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # jupyter_server 2.x can hang at exit when a request was in flight at SIGTERM (its
        # interpreter waits on an anyio worker thread): that is the server, not a leak.
        notes.append(f"JupyterLab ignored SIGTERM for {SHUTDOWN_TIMEOUT:.0f} s; killed its group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.process.pid, signal.SIGKILL)
        lab.process.wait(SHUTDOWN_TIMEOUT)
    others = [process for process in family if process is not server]
    _gone, alive = psutil.wait_procs(_alive(others), timeout=SHUTDOWN_TIMEOUT / 3)
    survivors = _alive(alive)
    described = [_describe(process) for process in survivors]
    for process in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(survivors, timeout=SHUTDOWN_TIMEOUT / 3)
    return described, [note for note in notes if note], sessions


@contextmanager
def jupyter_lab(base: Path, files: dict[str, bytes], app: str = "jupyterlab") -> Iterator[RunningLab]:
    """Run JupyterLab (or app: "notebook" for Notebook 7) serving a fresh root that holds files; stop it and
    assert nothing it started survives."""
    env = private_environment(base / "home")
    _write_config(Path(env["JUPYTER_CONFIG_DIR"]))
    root = base / "root"
    root.mkdir()
    for name, content in files.items():
        (root / name).write_bytes(content)
    process = subprocess.Popen(
        [sys.executable, "-m", app, f"--ServerApp.root_dir={root}"],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lab = RunningLab(process, "", root)
    ready = threading.Event()
    assert process.stdout is not None
    reader = threading.Thread(target=_read_log, args=(lab, process.stdout, ready), daemon=True)
    reader.start()
    try:
        if not ready.wait(STARTUP_TIMEOUT) or not lab.url:
            raise RuntimeError(f"JupyterLab did not start within {STARTUP_TIMEOUT:.0f} s:\n{lab.log_tail()}")
        yield lab
    finally:
        survivors, notes, sessions = stop_lab(lab)
        reader.join(SHUTDOWN_TIMEOUT)
        for note in notes:
            print(f"\nnote: {note}")
        left = _in_sessions(sessions)
        assert not survivors, f"processes outlived JupyterLab's shutdown (killed since): {'; '.join(survivors)}"
        assert not left, f"processes survive JupyterLab even after SIGKILL: {'; '.join(map(_describe, left))}"
