"""A program that only connects loads the client alone: no server, health, reflection, store or Redis module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules a client never needs; grpc itself imports the grpc_health and grpc_reflection packages, not their services.
SERVER_SIDE = (
    "remotecalc.server",
    "remotecalc.service",
    "remotecalc.status",
    "remotecalc.stores",
    "remotecalc.engine",
    "remotecalc.workers",
    "remotecalc.cli",
    "grpc_health.v1",
    "grpc_reflection.v1alpha",
    "redis",
)


def _server_side(names: list[str]) -> list[str]:
    return [name for name in names if any(name == s or name.startswith(s + ".") for s in SERVER_SIDE)]


def _modules_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return list(json.loads(ran.stdout))


@pytest.mark.parametrize("statement", ["import remotecalc", "from remotecalc.client import connect"])
def test_importing_the_client_loads_nothing_of_the_server(statement: str) -> None:
    loaded = _modules_after(statement)
    assert _server_side(loaded) == []
    assert "remotecalc.client" in loaded


def test_the_server_is_still_one_attribute_away() -> None:
    loaded = _modules_after("import remotecalc\nremotecalc.start_server\nfrom remotecalc import RunningServer")
    assert "remotecalc.server" in loaded
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        import remotecalc

        remotecalc.nothing_here  # noqa: B018


def test_a_client_talks_to_a_server_in_another_process_without_loading_any_server_module() -> None:
    code = (
        "import json, sys, remotecalc\n"
        "with remotecalc.connect(sys.argv[1]) as client, client.create(1) as session:\n"
        "    value = session.add(2)\n"
        "print(json.dumps([value, sorted(sys.modules)]))"
    )
    import remotecalc

    with remotecalc.start_server(port=0, idle_timeout=123.0) as server:
        ran = subprocess.run([sys.executable, "-c", code, server.address], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    value, loaded = json.loads(ran.stdout)
    assert (value, _server_side(loaded)) == (3.0, [])
