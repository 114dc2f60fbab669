"""The article's contract: its sequence, its own client unchanged, and its stubs beside remotecalc."""

from __future__ import annotations

import errno
import shutil
import socket
import textwrap
from pathlib import Path

import grpc
import pytest
from contracts import ArticleCalls
from processes import Served, run_python

from remotecalc import RunningServer
from remotecalc.article import calc_pb2, calc_pb2_grpc

ARTICLE_DIR = Path(__file__).parent / "article"
ARTICLE_PORT = 3000


@pytest.fixture
def server(store_server: RunningServer) -> RunningServer:
    """This module's server: each test runs on the in-memory store and on the Redis store."""
    return store_server


@pytest.fixture(scope="module")
def article_stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the article's calc.proto, the stubs protoc generated from it, and its client."""
    directory = tmp_path_factory.mktemp("article")
    shutil.copy(ARTICLE_DIR / "calc.proto", directory)
    shutil.copy(ARTICLE_DIR / "article_client.py", directory)
    generated = run_python(
        "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--grpc_python_out=.", "calc.proto", cwd=directory
    )
    assert generated.returncode == 0, generated.stderr
    assert (directory / "calc_pb2.py").exists() and (directory / "calc_pb2_grpc.py").exists()
    return directory


def test_the_article_sequence_through_raw_stubs_gives_ten(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = calc_pb2_grpc.CalculatorStub(channel)
        session = stub.Create(calc_pb2.Number(value=0), timeout=10)
        assert [
            stub.Add(calc_pb2.SessionOperation(token=session.token, value=5), timeout=10).value,
            stub.Subtract(calc_pb2.SessionOperation(token=session.token, value=3), timeout=10).value,
            stub.Multiply(calc_pb2.SessionOperation(token=session.token, value=10), timeout=10).value,
            stub.Divide(calc_pb2.SessionOperation(token=session.token, value=2), timeout=10).value,
        ] == [5.0, 2.0, 20.0, 10.0]
        answer = stub.Answer(calc_pb2.SessionOperation(token=session.token, value=0), timeout=10)
        assert answer.value == 10.0
        with pytest.raises(grpc.RpcError) as gone:
            stub.Add(calc_pb2.SessionOperation(token=session.token, value=1), timeout=10)
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND


def test_article_float_arithmetic_is_32_bit(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        calls = ArticleCalls(channel)
        token = calls.create(0.1)
        assert calls.apply(token, "+", 0.2) == 0.30000001192092896
        assert calls.close(token) == 0.30000001192092896


def _port_3000_is_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", ARTICLE_PORT))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def test_the_article_client_unchanged_prints_answer_ten(article_stubs: Path) -> None:
    # The article's client hard-codes localhost:3000; there is no honest way to point it elsewhere.
    if not _port_3000_is_free():
        pytest.fail(
            f"port {ARTICLE_PORT} on 127.0.0.1 is taken by another program; the article's client only talks to "
            f"localhost:{ARTICLE_PORT}, so this test needs that port free"
        )
    served = Served("--port", str(ARTICLE_PORT))
    try:
        assert served.address() == f"127.0.0.1:{ARTICLE_PORT}"
        # gRPC tries every address "localhost" resolves to (::1 and 127.0.0.1 alike) until one answers.
        ran = run_python("article_client.py", cwd=article_stubs)
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert lines[0].startswith("Session is ") and len(lines[0]) == len("Session is ") + 22, ran.stdout
        assert lines[1:] == ["Answer is 10.0"], ran.stdout
    finally:
        code = served.stop()
    assert code == 0, served.stderr_text()


def test_a_process_with_the_articles_own_stubs_can_import_remotecalc(article_stubs: Path) -> None:
    script = textwrap.dedent(
        """
        import calc_pb2
        import calc_pb2_grpc
        import grpc

        import remotecalc

        with remotecalc.start_server(port=0) as server, grpc.insecure_channel(server.address) as channel:
            stub = calc_pb2_grpc.CalculatorStub(channel)
            token = stub.Create(calc_pb2.Number(value=1), timeout=10).token
            print(stub.Add(calc_pb2.SessionOperation(token=token, value=2), timeout=10).value)
            with remotecalc.connect(server) as client:
                print(client.session(token).value())
        """
    )
    ran = run_python("-c", script, cwd=article_stubs)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["3.0", "3.0"]
