"""The command line: ``remotecalc serve``, ``remotecalc demo`` and ``remotecalc new-token``."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import grpc

from . import __version__
from .addresses import is_loopback, plaintext_refusal
from .article import calc_pb2, calc_pb2_grpc
from .auth import AuthTokens, TokenFileError, new_token
from .certificates import CertificateFiles, dates_problem, read_pem
from .client import connect
from .connections import FEW_OPEN_FILES
from .server import DEFAULT_HOST, DEFAULT_PORT, start_server
from .stores import is_shared, open_store
from .tls import TLS
from .workers import follow_parent, quiet_after_listening, supervise

ARTICLE_SEQUENCE = (("+", 5.0), ("-", 3.0), ("*", 10.0), ("/", 2.0))


def serve(
    host: str,
    port: int,
    *,
    max_sessions: int,
    idle_timeout: float,
    grace: float,
    core: str,
    store: str = "memory",
    shared_port: bool = False,
    tls: TLS | None = None,
    insecure: bool = False,
    auth_tokens: AuthTokens | None = None,
) -> int:
    """Serve in the foreground until Ctrl-C or SIGTERM; return the exit code."""
    if shared_port:
        follow_parent()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if tls is None and not is_loopback(host):
        print(
            f"remotecalc: warning: listening on {host} without TLS: calls and tokens travel in clear", file=sys.stderr
        )
    try:
        server = start_server(
            host,
            port,
            max_sessions=max_sessions,
            idle_timeout=idle_timeout,
            core=core,  # type: ignore[arg-type]
            store=store,
            shared_port=shared_port,
            tls=tls,
            insecure=insecure,
            auth_tokens=auth_tokens,
        )
    except OSError as error:
        print(f"remotecalc: {error.strerror or error}", file=sys.stderr)
        return 1
    except (ImportError, ValueError) as error:
        print(f"remotecalc: {error}", file=sys.stderr)
        return 2
    if server.open_file_limit < FEW_OPEN_FILES:
        print(
            f"remotecalc: warning: this process may open only {server.open_file_limit} files, so it can hold about "
            f"{server.open_file_limit - 64} connections at once; raise the hard limit (systemd LimitNOFILE=, "
            "ulimit -Hn as root)",
            file=sys.stderr,
        )
    summary = describe(core=core, store=store, tls=tls, auth_tokens=auth_tokens)
    print(f"remotecalc listening on {server.address} with {summary}, 1 process (Ctrl-C to stop)", flush=True)
    if shared_port:
        quiet_after_listening()
    stop.wait()
    print("remotecalc stopping", flush=True)
    server.stop(grace)
    print("remotecalc stopped", flush=True)
    return 0


def without_password(url: str) -> str:
    """A store URL fit to print: its password (in the URL or in a password= parameter) left out."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(key, value) for key, value in query if key.lower() != "password"]
    if parts.password is None and len(kept) == len(query):
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}@{host}" if parts.username else host
    query_text = f"?{urlencode(kept)}" if kept else ""
    # Built by hand: geturl() drops the "//" of an empty host (unix:///run/redis.sock).
    return f"{parts.scheme}://{netloc}{parts.path}{query_text}"


def describe(*, core: str, store: str, tls: TLS | None, auth_tokens: AuthTokens | None) -> str:
    """What a server serves with, for its start line: core, store, TLS and callers' tokens."""
    where = "sessions in memory" if store == "memory" else f"sessions in {without_password(store)}"
    security = "plaintext" if tls is None else "mutual TLS" if tls.client_ca is not None else "TLS"
    if auth_tokens is None:
        tokens = "no bearer tokens"
    else:
        callers = len(auth_tokens.names)
        tokens = f"bearer tokens of {callers} caller{'' if callers == 1 else 's'}"
    return f"the {core} core, {where}, {security}, {tokens}"


def demo() -> int:
    """Run the article's sequence through both contracts on an embedded server."""
    with start_server(port=0) as server:
        print(f"embedded server on {server.address}")
        with grpc.insecure_channel(server.address) as channel:
            stub = calc_pb2_grpc.CalculatorStub(channel)
            token = stub.Create(calc_pb2.Number(value=0)).token
            calls = {"+": stub.Add, "-": stub.Subtract, "*": stub.Multiply, "/": stub.Divide}
            for symbol, operand in ARTICLE_SEQUENCE:
                calls[symbol](calc_pb2.SessionOperation(token=token, value=operand))
            article = stub.Answer(calc_pb2.SessionOperation(token=token)).value
            token = stub.Create(calc_pb2.Number(value=0.1)).token
            stub.Add(calc_pb2.SessionOperation(token=token, value=0.2))
            article_sum = stub.Answer(calc_pb2.SessionOperation(token=token)).value
        with connect(server) as client:
            with client.create(0) as session:
                for symbol, operand in ARTICLE_SEQUENCE:
                    session.apply(symbol, operand)
                v1 = session.answer()
            with client.create(0.1) as session:
                v1_sum = session.add(0.2)
    print("0 + 5 - 3, x 10, / 2")
    print(f"  article contract (32-bit float):  {article}")
    print(f"  remotecalc.v1 (64-bit double):    {v1}")
    print("0.1 + 0.2")
    print(f"  article contract (32-bit float):  {article_sum}")
    print(f"  remotecalc.v1 (64-bit double):    {v1_sum}")
    return 0


def _number(kind: Callable[[str], float], low: float, *, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of kind, at least low (above it when strict)."""
    bound = f"greater than {low:g}" if strict else f"at least {low:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be {'a whole' if kind is int else 'a finite'} number {bound}"
            )
        return value

    return parse


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 0 to 65535 (0 picks a free one)")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``remotecalc`` command."""
    parser = argparse.ArgumentParser(prog="remotecalc", description="A stateful remote calculator over gRPC.")
    parser.add_argument("--version", action="version", version=f"remotecalc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{serve,demo,new-token}")
    serve_parser = commands.add_parser("serve", help="serve both contracts until Ctrl-C")
    serve_parser.add_argument("--host", default=DEFAULT_HOST, help="interface to bind; 0.0.0.0 for all (%(default)s)")
    serve_parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port; 0 picks a free one (%(default)s)")
    serve_parser.add_argument(
        "--max-sessions", type=_number(int, 1), default=100_000, metavar="N", help="live sessions allowed (%(default)s)"
    )
    serve_parser.add_argument(
        "--idle-timeout",
        type=_number(float, 0, strict=True),
        default=3600.0,
        metavar="SECONDS",
        help="seconds before an idle session expires (%(default)s)",
    )
    serve_parser.add_argument(
        "--grace",
        type=_number(float, 0),
        default=5.0,
        metavar="SECONDS",
        help="seconds calls in flight get to finish on stop (%(default)s)",
    )
    serve_parser.add_argument(
        "--store",
        default="memory",
        metavar="URL",
        help="where sessions live: memory, or Redis shared by replicas: redis://HOST:PORT/DB, rediss://…,"
        " or a Cluster redis+cluster://HOST:PORT (a password in the URL or in REMOTECALC_REDIS_PASSWORD)"
        " (%(default)s)",
    )
    serve_parser.add_argument("--core", choices=("sync", "aio"), default="sync", help="gRPC server core (%(default)s)")
    serve_parser.add_argument(
        "--workers",
        type=_number(int, 1),
        default=1,
        metavar="N",
        help="server processes on the port, restarted if one dies; N > 1 needs a shared --store (%(default)s)",
    )
    serve_parser.add_argument("--tls-cert", metavar="FILE", help="serve TLS only, with this PEM certificate chain")
    serve_parser.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    serve_parser.add_argument(
        "--tls-client-ca", metavar="FILE", help="require client certificates signed by this PEM CA (mutual TLS)"
    )
    serve_parser.add_argument(
        "--insecure", action="store_true", help="allow a --host beyond loopback without TLS (a trusted network only)"
    )
    # Set by --workers on the processes it starts: the port is shared with SO_REUSEPORT.
    serve_parser.add_argument("--shared-port", action="store_true", help=argparse.SUPPRESS)
    serve_parser.add_argument(
        "--auth-token-file",
        metavar="FILE",
        help="require a bearer token on every call but health's: FILE holds NAME:TOKEN lines (remotecalc new-token)",
    )
    commands.add_parser("demo", help="run the article's sequence on an embedded server")
    token_parser = commands.add_parser("new-token", help="print NAME:TOKEN, a fresh line for a token file")
    token_parser.add_argument("name", help="the caller the token names")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "new-token":
        return _new_token(token_parser, args.name)
    tls = _tls(serve_parser, args) if args.command == "serve" else None
    refusal = plaintext_refusal(args.host) if args.command == "serve" and tls is None else None
    if refusal is not None and not args.insecure:
        print(f"remotecalc: {refusal}", file=sys.stderr)
        return 2
    auth_tokens = None
    # Every file a server (or each worker) will read is read now: one that cannot serve is one line,
    # exit code 2, before anything starts. A worker reads them again but leaves the warnings to its parent.
    if args.command == "serve" and args.auth_token_file is not None:
        try:
            with warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always")
                auth_tokens = AuthTokens.from_file(args.auth_token_file)
        except TokenFileError as error:
            print(f"remotecalc: {error}", file=sys.stderr)
            return 2
        for warning in [] if args.shared_port else warned:
            print(f"remotecalc: warning: {warning.message}", file=sys.stderr)
    if tls is not None:
        problem = _tls_problem(tls)
        if problem is not None:
            print(f"remotecalc: {problem}", file=sys.stderr)
            return 2
        if not args.shared_port:
            _warn_of_dates(Path(tls.cert))
    if args.command == "serve" and args.workers > 1:
        summary = describe(core=args.core, store=args.store, tls=tls, auth_tokens=auth_tokens)
        return _serve_workers(serve_parser, args, summary=summary)
    if args.command == "serve":
        return serve(
            args.host,
            args.port,
            max_sessions=args.max_sessions,
            idle_timeout=args.idle_timeout,
            grace=args.grace,
            core=args.core,
            store=args.store,
            shared_port=args.shared_port,
            tls=tls,
            insecure=args.insecure,
            auth_tokens=auth_tokens,
        )
    return demo()


def _new_token(parser: argparse.ArgumentParser, name: str) -> int:
    """`new-token NAME`: print one token file line, NAME:TOKEN."""
    if not name.strip() or ":" in name or name != name.strip() or name.startswith("#"):
        parser.error(f"the caller name must be non-empty, without ':' or surrounding spaces, not {name!r}")
    print(f"{name}:{new_token()}")
    return 0


def _tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TLS | None:
    """The TLS files of `serve`, None without --tls-cert; a certificate without its key is refused."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            parser.error("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")
        return None
    if args.tls_cert is None or args.tls_key is None:
        parser.error("--tls-cert and --tls-key go together: the certificate and its private key")
    return TLS(cert=args.tls_cert, key=args.tls_key, client_ca=args.tls_client_ca)


def _tls_problem(tls: TLS) -> str | None:
    """Why the TLS files cannot serve (unreadable, not PEM, a key that does not match), None when they can."""
    try:
        CertificateFiles(tls.cert, tls.key, tls.client_ca)
    except OSError as error:
        return error.strerror or str(error)
    except ValueError as error:
        return str(error)
    return None


def _warn_of_dates(cert: Path) -> None:
    """One line on stderr if the server's certificate has expired or is not valid yet."""
    try:
        problem = dates_problem(read_pem(cert, "certificate"), cert, datetime.now(timezone.utc))
    except (OSError, ValueError) as error:
        print(f"remotecalc: warning: cannot read the dates of the TLS certificate {cert}: {error}", file=sys.stderr)
        return
    if problem is not None:
        # A warning, not a refusal: the server reads a renewed certificate as soon as it is renamed in.
        print(
            f"remotecalc: warning: {problem}: clients will refuse it until a valid one replaces it"
            " (the server reads it again when the file changes)",
            file=sys.stderr,
        )


def _serve_workers(parser: argparse.ArgumentParser, args: argparse.Namespace, *, summary: str) -> int:
    """`serve --workers N`: refuse sessions split between processes, else run the workers."""
    store: str = args.store
    if not is_shared(store):
        parser.error(
            f"--workers {args.workers} needs a shared store (--store redis://HOST:PORT/DB): "
            "with sessions in memory, each worker would hold its own"
        )
    try:
        # Asked once here, so that a store no worker could use is one line, not one per worker.
        open_store(store).shutdown()
    except (ImportError, ValueError) as error:
        print(f"remotecalc: {error}", file=sys.stderr)
        return 2
    worker_args = ["--max-sessions", str(args.max_sessions), "--idle-timeout", repr(args.idle_timeout)]
    worker_args += ["--grace", repr(args.grace), "--core", args.core, "--store", store]
    worker_args += ["--insecure"] if args.insecure else []
    for option in ("tls_cert", "tls_key", "tls_client_ca", "auth_token_file"):
        if getattr(args, option) is not None:
            worker_args += ["--" + option.replace("_", "-"), getattr(args, option)]
    return supervise(args.host, args.port, int(args.workers), worker_args, grace=args.grace, summary=summary)
