"""README.md and docs/: links that lead somewhere, and examples that run as written.

Every ```python block says in an HTML comment right above it which test runs it, or why none does;
the examples that need nothing but a loopback server (or the suite's redis-server) run here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from markdown_pages import REPO, anchors, blocks, links, name, pages, python_block, section_blocks

import remotecalc
from remotecalc import TLS, start_server
from remotecalc.widgets import CalculatorPanel

_PORT = re.compile(r"127\.0\.0\.1:\d+")
_RUN_BY = re.compile(r"run by (tests/[\w/]+\.py)")
_NOT_RUN = re.compile(r"not run: .{20,}")
# Seconds a shell recipe may take: openssl makes a few EC keys in well under one.
_RECIPE_TIMEOUT = 60


def test_every_relative_link_leads_to_a_file_that_exists() -> None:
    broken = []
    for page in pages():
        for link in links(page):
            if re.match(r"[a-z]+:", link.target):  # https:, mailto: — not checked here
                continue
            path, _, anchor = link.target.partition("#")
            target = (page.parent / unquote(path)).resolve() if path else page
            if not target.exists():
                broken.append(f"{link.page}:{link.line}: {link.target} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                broken.append(f"{link.page}:{link.line}: {link.target} (no heading #{anchor} in {name(target)})")
    assert not broken, "\n".join(broken)


def test_the_readme_lists_every_page_of_docs() -> None:
    listed = {link.target for link in links(REPO / "README.md")}
    unlisted = [name(page) for page in pages()[1:] if name(page) not in listed]
    assert not unlisted, f"README's Documentation does not link {unlisted}"


def test_the_quickstart_holds_the_two_commands_ci_runs() -> None:
    commands = [block.code for block in blocks(REPO / "README.md") if block.heading == "## Quickstart"]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/remotecalc demo\n",
        "bash tests/install-and-test.sh\n",
    ]


def test_every_python_example_is_run_by_a_test_or_says_why_not() -> None:
    unaccounted = []
    for page in pages():
        for block in blocks(page):
            if block.language != "python":
                continue
            where = f"{block.page}:{block.line}"
            run_by = _RUN_BY.fullmatch(block.note)
            if run_by is None:
                if not _NOT_RUN.fullmatch(block.note):
                    unaccounted.append(f"{where}: say <!-- run by tests/….py --> or <!-- not run: why -->")
                continue
            test_file = REPO / run_by.group(1)
            # The test that runs it names the page and the heading it reads the block from.
            source = test_file.read_text(encoding="utf-8") if test_file.exists() else ""
            if block.page not in source or block.heading not in source:
                unaccounted.append(f"{where}: {run_by.group(1)} does not read {block.page}, {block.heading!r}")
    assert not unaccounted, "\n".join(unaccounted)


def _run_cell(code: str, namespace: dict[str, Any]) -> list[Any]:
    """Run code as a notebook cell runs it; return the value of each statement that is an expression.

    A notebook shows the last one; the others are kept here so that the test can close what they made.
    """
    values = []
    for statement in ast.parse(code).body:
        if isinstance(statement, ast.Expr):
            values.append(eval(compile(ast.Expression(statement.value), "<example>", "eval"), namespace))
        else:
            exec(compile(ast.Module([statement], []), "<example>", "exec"), namespace)
    return values


def _printed_as_commented(code: str, printed: str) -> None:
    """Each print(...) line's comment is what it printed (a port aside)."""
    promised = [line.split("  # ", 1)[1] for line in code.splitlines() if line.lstrip().startswith("print(")]
    assert _PORT.sub("127.0.0.1:PORT", printed).splitlines() == [_PORT.sub("127.0.0.1:PORT", p) for p in promised]


def test_the_readme_tour_runs_as_written_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    examples = [python_block("README.md", heading) for heading in ("### The server", "### The client")]
    panel_example = python_block("README.md", "### The panel")
    try:
        for example in examples:
            _run_cell(example, namespace)
            _printed_as_commented(example, capsys.readouterr().out)
        shown = _run_cell(panel_example, namespace)
        panel = namespace["panel"]
        assert shown[-1] is panel  # the cell's last line: what the notebook shows
        assert (panel.value, panel.step_count, panel.error) == (5.0, 1, "")
        newest = panel.calls[0]  # the RPC log, newest first: the click's one call, its code and latency
        assert (newest.method, newest.code) == ("Apply", "OK") and newest.latency_ms > 0
    finally:
        for made in ("panel", "calc"):
            if made in namespace:
                namespace[made].close()
        if "server" in namespace:
            namespace["server"].stop(grace=0)
    assert not namespace["server"].running


def test_the_server_example_in_operations_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    example = python_block("docs/operations.md", "## The server")
    namespace: dict[str, Any] = {}
    _run_cell(example, namespace)
    _printed_as_commented(example, capsys.readouterr().out)
    assert not namespace["server"].running


def test_the_panel_example_in_notebooks_runs_as_written(server: remotecalc.RunningServer) -> None:
    shown: list[Any] = []
    namespace: dict[str, Any] = {"server": server}
    try:
        shown = _run_cell(python_block("docs/notebooks.md", "# Notebooks"), namespace)
        panel = namespace["panel"]
        second, embedded = shown
        assert all(isinstance(made, CalculatorPanel) for made in (panel, second, embedded))
        second.press("+", 2)
        assert panel.wait_for(lambda: panel.value == 2)  # kept in sync
        assert embedded.server is not None and embedded.server is not server and embedded.value == 0
    finally:
        for made in [namespace.get("panel"), *shown]:
            if made is not None:
                made.close()
        for made in shown[1:]:
            if made.server is not None and made.server is not server:
                made.server.stop(grace=0)


def test_the_redis_example_in_scaling_runs_as_written(redis_url: str) -> None:
    example = python_block("docs/scaling.md", "## Sessions in Redis")
    assert '"redis://127.0.0.1:6379/0"' in example
    namespace: dict[str, Any] = {"remotecalc": remotecalc}
    _run_cell(example.replace('"redis://127.0.0.1:6379/0"', repr(redis_url)), namespace)
    server = namespace["server"]
    try:
        with remotecalc.connect(server) as client, client.create(2) as session:
            assert session.add(3) == 5
            assert type(server.engine).__name__ == "RedisStore"
    finally:
        server.stop(grace=0)


def _recipe(tmp_path: Path, index: int) -> None:
    """Run the index-th shell block of Security's certificate recipe in tmp_path, as written."""
    recipe = section_blocks("docs/security.md", "## A certificate to try TLS with", "sh")[index].code
    recipe = recipe.replace(".venv/bin/python ", f"{sys.executable} ")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=_RECIPE_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr


def test_the_openssl_recipe_makes_certificates_for_mutual_tls(tmp_path: Path) -> None:
    _recipe(tmp_path, 0)
    tls = TLS(cert=tmp_path / "server.pem", key=tmp_path / "server-key.pem", client_ca=tmp_path / "ca.pem")
    with start_server(port=0, tls=tls) as server:
        address = f"localhost:{server.port}"
        files = {"client_cert": tmp_path / "client.pem", "client_key": tmp_path / "client-key.pem"}
        with remotecalc.connect(address, root_certificates=tmp_path / "ca.pem", **files) as client:
            assert client.create(1).add(2) == 3
        # Mutual TLS indeed: the same client without its certificate is turned away.
        stranger = remotecalc.connect(address, root_certificates=tmp_path / "ca.pem", timeout=2)
        with stranger, pytest.raises(remotecalc.Unavailable, match="client_cert and client_key"):
            stranger.create(1)


def test_the_trustme_recipe_makes_a_certificate_for_tls(tmp_path: Path) -> None:
    _recipe(tmp_path, 1)
    certs = tmp_path / "certs"
    with start_server(port=0, tls=TLS(cert=certs / "server.pem", key=certs / "server.key")) as server:
        client = remotecalc.connect(f"localhost:{server.port}", root_certificates=certs / "client.pem")
        with client, client.create(1) as session:
            assert session.multiply(6) == 6
