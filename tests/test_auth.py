"""Callers: bearer tokens, certificates' SPIFFE IDs and subjects, sessions owned by the caller that made them."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from conftest import FakeClock
from contracts import rpc_error, trailing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from processes import REMOTECALC, Served

import remotecalc
from remotecalc import TLS, AuthTokens, RunningServer, new_token, start_server
from remotecalc.article import calc_pb2, calc_pb2_grpc
from remotecalc.auth import TokenFileError
from remotecalc.cli import main
from remotecalc.client import uuid7
from remotecalc.errors import (
    CertificateAnonymous,
    CredentialsMissing,
    CredentialsUnknown,
    DeadlineExceeded,
    SessionNotFound,
)
from remotecalc.v1 import calculator_pb2 as pb
from remotecalc.v1 import calculator_pb2_grpc as pb_grpc
from remotecalc.widgets import CalculatorPanel

TIMEOUT = 10.0
ALICE = new_token()
BOB = new_token()
TOKENS = AuthTokens({"alice": ALICE, "bob": BOB})


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata a call carries its bearer token in."""
    return (("authorization", f"Bearer {token}"),)


def outcome(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """What a failed call shows its caller: code, message, trailing metadata (details included)."""
    error: Any = rpc_error(call)
    return error.code(), error.details(), trailing(error)


def error_info(error: Any) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed call's google.rpc.Status."""
    raw = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A REMOTECALC_AUTH_TOKEN of the shell running the tests must not reach their clients."""
    monkeypatch.delenv("REMOTECALC_AUTH_TOKEN", raising=False)


@pytest.fixture(params=["sync", "aio"])
def core(request: pytest.FixtureRequest) -> str:
    """Each gRPC server core."""
    return str(request.param)


@pytest.fixture
def guarded(core: str) -> Iterator[RunningServer]:
    """A server that requires a bearer token, sessions in memory."""
    with start_server(port=0, core=core, clock=FakeClock(), auth_tokens=TOKENS) as running:  # type: ignore[arg-type]
        yield running


@pytest.fixture(params=["sync-memory", "aio-memory", "sync-redis"])
def owned(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server requiring tokens, on each core in memory, and with its sessions in Redis."""
    core, store = str(request.param).split("-")
    url = request.getfixturevalue("redis_url") if store == "redis" else None
    with start_server(port=0, core=core, clock=FakeClock(), store=url, auth_tokens=TOKENS) as running:  # type: ignore[arg-type]
        yield running


# -- tokens on the wire ------------------------------------------------------------------


def test_a_call_without_a_token_is_refused_saying_what_to_pass(guarded: RunningServer) -> None:
    with remotecalc.connect(guarded) as anonymous, pytest.raises(CredentialsMissing) as refused:
        anonymous.create(1)
    assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.reason == "CREDENTIALS_MISSING"
    assert "auth_token=" in refused.value.message and "authorization: Bearer" in refused.value.message
    with grpc.insecure_channel(guarded.address) as channel:
        error: Any = rpc_error(lambda: calc_pb2_grpc.CalculatorStub(channel).Create(calc_pb2.Number(value=1)))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    info = error_info(error)
    assert (info.reason, info.domain) == ("CREDENTIALS_MISSING", "remotecalc.dev")


def test_an_unknown_token_is_refused_and_never_echoed(guarded: RunningServer) -> None:
    wrong = new_token()
    with remotecalc.connect(guarded, auth_token=wrong) as stranger, pytest.raises(CredentialsUnknown) as refused:
        stranger.create(1)
    assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED and refused.value.reason == "CREDENTIALS_UNKNOWN"
    with grpc.insecure_channel(guarded.address) as channel:
        article = calc_pb2_grpc.CalculatorStub(channel)
        code, message, metadata = outcome(lambda: article.Create(calc_pb2.Number(value=1), metadata=bearer(wrong)))
        not_bearer = outcome(lambda: article.Create(calc_pb2.Number(value=1), metadata=(("authorization", wrong),)))
    assert code is grpc.StatusCode.UNAUTHENTICATED and metadata["remotecalc-error-reason"] == "CREDENTIALS_UNKNOWN"
    assert wrong not in message + str(metadata) + str(refused.value)
    assert not_bearer[0] is grpc.StatusCode.UNAUTHENTICATED and wrong not in not_bearer[1] + str(not_bearer[2])


def test_the_right_token_runs_the_article_sequence_on_both_contracts(guarded: RunningServer) -> None:
    with remotecalc.connect(guarded, auth_token=ALICE) as alice, alice.create(0) as session:
        assert [session.add(5), session.subtract(3), session.multiply(10), session.divide(2)] == [5, 2, 20, 10]
    with grpc.insecure_channel(guarded.address) as channel:
        article = calc_pb2_grpc.CalculatorStub(channel)
        token = article.Create(calc_pb2.Number(value=0), metadata=bearer(BOB)).token
        for method, operand in ((article.Add, 5), (article.Subtract, 3), (article.Multiply, 10), (article.Divide, 2)):
            method(calc_pb2.SessionOperation(token=token, value=operand), metadata=bearer(BOB))
        assert article.Answer(calc_pb2.SessionOperation(token=token), metadata=bearer(BOB)).value == 10


def test_health_answers_without_a_token_and_reflection_needs_one(guarded: RunningServer) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(guarded.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
        code, _message, metadata = outcome(lambda: list(reflect(iter([request]), timeout=TIMEOUT)))
        assert code is grpc.StatusCode.UNAUTHENTICATED and metadata["remotecalc-error-reason"] == "CREDENTIALS_MISSING"
        wrong = outcome(lambda: list(reflect(iter([request]), timeout=TIMEOUT, metadata=bearer(new_token()))))
        assert wrong[2]["remotecalc-error-reason"] == "CREDENTIALS_UNKNOWN"
        (answer,) = list(reflect(iter([request]), timeout=TIMEOUT, metadata=bearer(ALICE)))
    names = {service.name for service in answer.list_services_response.service}
    assert {"Calculator", "remotecalc.v1.Calculator", "grpc.health.v1.Health"} <= names


# -- sessions belong to their caller -----------------------------------------------------


def _foreign_calls(channel: grpc.Channel, metadata: Any) -> dict[str, Callable[[str], object]]:
    """Every method of both contracts on a token, as one caller; mutating v1 calls carry request ids."""
    article = calc_pb2_grpc.CalculatorStub(channel)
    v1 = pb_grpc.CalculatorStub(channel)

    def on(method: Any, value: float = 1.0) -> Callable[[str], object]:
        return lambda token: method(calc_pb2.SessionOperation(token=token, value=value), metadata=metadata)

    add = pb.Operation(operator=pb.OPERATOR_ADD, operand=1)
    divide_by_zero = pb.Operation(operator=pb.OPERATOR_DIVIDE, operand=0)
    return {
        "Add": on(article.Add),
        "Subtract": on(article.Subtract),
        "Multiply": on(article.Multiply),
        "Divide": on(article.Divide),
        "Divide by 0": on(article.Divide, 0.0),
        "Answer": on(article.Answer),
        "Apply": lambda token: v1.Apply(
            pb.ApplyRequest(token=token, operation=add, request_id=str(uuid7())), metadata=metadata
        ),
        "Apply, bad request id": lambda token: v1.Apply(
            pb.ApplyRequest(token=token, operation=add, request_id="1"), metadata=metadata
        ),
        "Apply by 0": lambda token: v1.Apply(pb.ApplyRequest(token=token, operation=divide_by_zero), metadata=metadata),
        "ApplyBatch": lambda token: v1.ApplyBatch(
            pb.ApplyBatchRequest(token=token, operations=[add, divide_by_zero], request_id=str(uuid7())),
            metadata=metadata,
        ),
        "GetSession": lambda token: v1.GetSession(pb.GetSessionRequest(token=token), metadata=metadata),
        "CloseSession": lambda token: v1.CloseSession(
            pb.CloseSessionRequest(token=token, request_id=str(uuid7())), metadata=metadata
        ),
        "WatchSession": lambda token: next(
            v1.WatchSession(pb.WatchSessionRequest(token=token), metadata=metadata, timeout=TIMEOUT)
        ),
    }


def test_another_callers_session_is_not_found_exactly_as_a_token_never_made(owned: RunningServer) -> None:
    with remotecalc.connect(owned, auth_token=ALICE) as alice:
        session = alice.create(2)
        session.apply_many([("+", 1), ("*", 4)])
        with grpc.insecure_channel(owned.address) as channel:
            for name, call in _foreign_calls(channel, bearer(BOB)).items():
                seen = outcome(lambda call=call: call(session.token))  # type: ignore[misc]
                never = outcome(lambda call=call: call(secrets.token_urlsafe(16)))  # type: ignore[misc]
                assert seen == never, name
                assert seen[0] in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (name, seen)
                if name != "Apply, bad request id":
                    assert seen[0] is grpc.StatusCode.NOT_FOUND, (name, seen)
        state = session.state()
        assert (state.value, state.step_count, [step.result for step in state.history]) == (12, 2, [3, 12])
        assert session.answer() == 12


def test_a_session_made_through_either_contract_belongs_to_its_maker(guarded: RunningServer) -> None:
    with grpc.insecure_channel(guarded.address) as channel:
        article = calc_pb2_grpc.CalculatorStub(channel)
        token = article.Create(calc_pb2.Number(value=3), metadata=bearer(BOB)).token
    with remotecalc.connect(guarded, auth_token=ALICE) as alice, remotecalc.connect(guarded, auth_token=BOB) as bob:
        with pytest.raises(SessionNotFound):
            alice.session(token).add(1)
        assert bob.session(token).add(1) == 4


# -- request ids are the caller's ----------------------------------------------------------


def test_a_create_id_reused_by_another_caller_is_a_new_request_for_it(owned: RunningServer) -> None:
    request = pb.CreateSessionRequest(value=7, request_id=str(uuid7()))
    with grpc.insecure_channel(owned.address) as channel:
        v1 = pb_grpc.CalculatorStub(channel)
        first = v1.CreateSession(request, metadata=bearer(ALICE)).session.token
        again = v1.CreateSession(request, metadata=bearer(ALICE)).session.token
        theirs = v1.CreateSession(request, metadata=bearer(BOB)).session.token
        assert again == first and theirs != first
        assert v1.GetSession(pb.GetSessionRequest(token=theirs), metadata=bearer(BOB)).session.value == 7
        assert (
            rpc_error(lambda: v1.GetSession(pb.GetSessionRequest(token=first), metadata=bearer(BOB))).code()
            is grpc.StatusCode.NOT_FOUND
        )


def test_an_apply_id_reused_by_another_caller_is_not_answered_from_the_first_callers_entry(
    owned: RunningServer,
) -> None:
    with grpc.insecure_channel(owned.address) as channel:
        v1 = pb_grpc.CalculatorStub(channel)
        token = v1.CreateSession(pb.CreateSessionRequest(value=1), metadata=bearer(ALICE)).session.token
        add = pb.ApplyRequest(
            token=token, operation=pb.Operation(operator=pb.OPERATOR_ADD, operand=2), request_id=str(uuid7())
        )
        close = pb.CloseSessionRequest(token=token, request_id=str(uuid7()))
        assert v1.Apply(add, metadata=bearer(ALICE)).value == 3
        assert rpc_error(lambda: v1.Apply(add, metadata=bearer(BOB))).code() is grpc.StatusCode.NOT_FOUND
        assert v1.Apply(add, metadata=bearer(ALICE)).step.number == 1
        assert v1.CloseSession(close, metadata=bearer(ALICE)).value == 3
        # The log outlives the session: its maker's retry is answered, anyone else's is not.
        assert rpc_error(lambda: v1.CloseSession(close, metadata=bearer(BOB))).code() is grpc.StatusCode.NOT_FOUND
        assert v1.CloseSession(close, metadata=bearer(ALICE)).step_count == 1


# -- mutual TLS: the certificate's SPIFFE ID, else its subject, is the caller ------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1, and two client certificates with different subjects."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("pki")
    ca.private_key_pem.write_to_path(str(folder / "ca_key.pem"))
    files = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "a", "a_key", "b", "b_key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    served = ca.issue_cert("127.0.0.1")
    served.cert_chain_pems[0].write_to_path(str(files["cert"]))
    served.private_key_pem.write_to_path(str(files["key"]))
    for name in ("a", "b"):
        issued = ca.issue_cert(f"{name}@example.org", common_name=name)
        issued.cert_chain_pems[0].write_to_path(str(files[name]))
        issued.private_key_pem.write_to_path(str(files[f"{name}_key"]))
    return files


def test_two_client_certificates_are_two_callers(pki: dict[str, Path], core: str) -> None:
    tls = TLS(cert=pki["cert"], key=pki["key"], client_ca=pki["ca"])
    with start_server(port=0, core=core, clock=FakeClock(), tls=tls) as served:  # type: ignore[arg-type]

        def as_holder(name: str) -> remotecalc.Client:
            return remotecalc.connect(
                served, root_certificates=pki["ca"], client_cert=pki[name], client_key=pki[f"{name}_key"]
            )

        with as_holder("a") as a, as_holder("b") as b:
            session = a.create(5)
            with pytest.raises(SessionNotFound) as refused:
                b.session(session.token).add(1)
            assert refused.value.message == "no live session has this token: it was closed, expired or never made"
            assert b.create(1).add(1) == 2
            assert session.add(1) == 6


def issue(
    pki: dict[str, Path], name: str, *, subject: str = "", uris: tuple[str, ...] = (), others: tuple[Any, ...] = ()
) -> Path:
    """A client certificate signed by pki's CA, its key beside it (trustme makes none without subject or with URIs)."""
    ca_cert = x509.load_pem_x509_certificate(pki["ca"].read_bytes())
    ca_key: Any = serialization.load_pem_private_key((pki["ca"].parent / "ca_key.pem").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    names = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)] if subject else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(names)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    alternatives: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
    alternatives += others
    if alternatives:
        # RFC 5280: a certificate with an empty subject carries its names in a critical SAN.
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=not subject)
    folder = pki["ca"].parent
    (folder / f"{name}.pem").write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}_key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / f"{name}.pem"


@pytest.fixture
def mutual(pki: dict[str, Path], core: str) -> Iterator[Callable[[Path], remotecalc.Client]]:
    """A mutual TLS server without tokens on each core, and how to connect to it holding a certificate."""
    tls = TLS(cert=pki["cert"], key=pki["key"], client_ca=pki["ca"])
    with start_server(port=0, core=core, clock=FakeClock(), tls=tls) as served:  # type: ignore[arg-type]

        def holding(cert: Path) -> remotecalc.Client:
            key = cert.with_name(f"{cert.stem}_key.pem")
            return remotecalc.connect(served, root_certificates=pki["ca"], client_cert=cert, client_key=key)

        yield holding


def test_two_spiffe_certificates_with_empty_subjects_are_two_callers(
    pki: dict[str, Path], mutual: Callable[[Path], remotecalc.Client]
) -> None:
    alice = issue(pki, "spiffe_alice", uris=("spiffe://example.org/ns/prod/sa/alice",))
    bob = issue(pki, "spiffe_bob", uris=("spiffe://example.org/ns/prod/sa/bob",))
    with mutual(alice) as as_alice, mutual(bob) as as_bob:
        session = as_alice.create(5)
        with pytest.raises(SessionNotFound) as refused:
            as_bob.session(session.token).add(1)
        assert refused.value.message == "no live session has this token: it was closed, expired or never made"
        with pytest.raises(SessionNotFound):
            list(as_bob.session(session.token).history())
        assert as_bob.create(1).add(1) == 2
        assert session.add(1) == 6


def test_the_spiffe_id_names_the_caller_whatever_the_subject(
    pki: dict[str, Path], mutual: Callable[[Path], remotecalc.Client]
) -> None:
    spiffe_id = "spiffe://example.org/ns/prod/sa/carol"
    first = issue(pki, "carol_first", subject="carol-2024", uris=(spiffe_id,))
    renewed = issue(pki, "carol_renewed", subject="carol-2025", uris=(spiffe_id,))
    same_subject = issue(pki, "not_carol", subject="carol-2024", uris=("spiffe://example.org/ns/prod/sa/dave",))
    with mutual(first) as before, mutual(renewed) as after, mutual(same_subject) as other:
        session = before.create(1)
        assert after.session(session.token).add(1) == 2
        with pytest.raises(SessionNotFound):
            other.session(session.token).add(1)


def test_without_a_spiffe_id_the_subject_names_the_caller(
    pki: dict[str, Path], mutual: Callable[[Path], remotecalc.Client]
) -> None:
    erin = issue(pki, "erin", subject="erin", others=(x509.DNSName("erin.example.org"),))
    also_erin = issue(pki, "erin_again", subject="erin")
    frank = issue(pki, "frank", subject="frank", others=(x509.DNSName("erin.example.org"),))
    with mutual(erin) as as_erin, mutual(also_erin) as again, mutual(frank) as as_frank:
        session = as_erin.create(1)
        assert again.session(session.token).add(1) == 2
        with pytest.raises(SessionNotFound):
            as_frank.session(session.token).add(1)


@pytest.mark.parametrize(
    ("names", "says"),
    [
        ({}, "it has neither a SPIFFE ID (a spiffe:// URI SAN) nor a subject"),
        ({"others": (x509.DNSName("nobody.example.org"),)}, "it has neither a SPIFFE ID (a spiffe:// URI SAN) nor"),
        ({"others": (x509.RFC822Name("nobody@example.org"),)}, "it has neither a SPIFFE ID (a spiffe:// URI SAN) nor"),
        ({"others": (x509.IPAddress(ipaddress.ip_address("127.0.0.9")),)}, "it has neither a SPIFFE ID"),
        ({"uris": ("https://example.org/nobody",)}, "it has neither a SPIFFE ID (a spiffe:// URI SAN) nor a subject"),
        ({"uris": ("spiffe://example.org/a", "spiffe://example.org/b")}, "not one valid SPIFFE ID"),
        ({"subject": "grace", "uris": ("spiffe://example.org/a", "https://a.example")}, "not one valid SPIFFE ID"),
    ],
)
def test_a_certificate_naming_no_one_caller_is_refused(
    pki: dict[str, Path], mutual: Callable[[Path], remotecalc.Client], names: dict[str, Any], says: str
) -> None:
    nobody = issue(pki, "nobody", **names)
    with mutual(nobody) as anonymous:
        with pytest.raises(CertificateAnonymous) as refused:
            anonymous.create(1)
        with pytest.raises(CertificateAnonymous):
            list(anonymous.session("a" * 22).watch())
    assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED and refused.value.reason == "CERTIFICATE_ANONYMOUS"
    assert says in refused.value.message
    assert "Error" not in refused.value.message and "Traceback" not in refused.value.message


def test_a_raw_client_hears_why_its_certificate_is_refused(pki: dict[str, Path], core: str) -> None:
    nobody = issue(pki, "raw_nobody", others=(x509.DNSName("nobody.example.org"),))
    tls = TLS(cert=pki["cert"], key=pki["key"], client_ca=pki["ca"])
    holder = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(), nobody.with_name("raw_nobody_key.pem").read_bytes(), nobody.read_bytes()
    )
    served = start_server(port=0, core=core, clock=FakeClock(), tls=tls)  # type: ignore[arg-type]
    with served, grpc.secure_channel(served.address, holder) as channel:
        article = calc_pb2_grpc.CalculatorStub(channel)
        error: Any = rpc_error(lambda: article.Create(calc_pb2.Number(value=1), timeout=TIMEOUT))
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error.details().startswith("the client certificate names no caller")
    assert (error_info(error).reason, error_info(error).domain) == ("CERTIFICATE_ANONYMOUS", "remotecalc.dev")
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_with_tokens_and_mutual_tls_the_token_names_the_caller(pki: dict[str, Path]) -> None:
    tls = TLS(cert=pki["cert"], key=pki["key"], client_ca=pki["ca"])
    with start_server(port=0, clock=FakeClock(), tls=tls, auth_tokens=TOKENS) as served:
        options = {"root_certificates": pki["ca"], "client_cert": pki["a"], "client_key": pki["a_key"]}
        with remotecalc.connect(served, **options) as anonymous, pytest.raises(CredentialsMissing):  # type: ignore[arg-type]
            anonymous.create(1)
        alice = remotecalc.connect(served, auth_token=ALICE, **options)  # type: ignore[arg-type]
        bob = remotecalc.connect(served, auth_token=BOB, **options)  # type: ignore[arg-type]
        with alice, bob:
            session = alice.create(1)
            with pytest.raises(SessionNotFound):
                bob.session(session.token).value()
            assert session.add(1) == 2


# -- the token file --------------------------------------------------------------------------


def _token_file(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "tokens.txt"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("alice " + "x" * 20, "line 3: expected NAME:TOKEN"),
        (":" + "x" * 20, "line 3: the caller name is empty"),
        ("carol:short-token", "line 3: the token of 'carol' is shorter than 16 characters"),
        ("carol:" + ALICE, "line 3: this token is already on line 2"),
        ("dave:" + "é" * 20, "line 3: the token of 'dave' cannot be sent: a bearer token is visible ASCII"),
        ("dave:two halves " + "x" * 20, "line 3: the token of 'dave' cannot be sent: a bearer token is visible ASCII"),
    ],
    ids=["no colon", "empty name", "short token", "token used twice", "not ASCII", "a space"],
)
def test_a_bad_token_file_line_is_refused_naming_file_and_line_never_the_token(
    tmp_path: Path, line: str, says: str
) -> None:
    path = _token_file(tmp_path, f"# callers\nalice:{ALICE}\n{line}\n")
    with pytest.raises(TokenFileError) as refused:
        AuthTokens.from_file(path)
    assert str(refused.value).startswith(f"{path} {says}"), str(refused.value)
    secret = line.partition(":")[2] or line
    assert secret not in str(refused.value) and ALICE not in str(refused.value)


def test_comments_blank_lines_and_rotation(tmp_path: Path) -> None:
    rotated = new_token()
    path = _token_file(tmp_path, f"# who may call\n\nalice:{ALICE}\n   \n# alice's next token\nalice:{rotated}\n")
    tokens = AuthTokens.from_file(path)
    assert len(tokens) == 2 and tokens.caller(ALICE) == tokens.caller(rotated) == "alice"
    assert tokens.caller(BOB) is None and tokens.caller("") is None
    with (
        start_server(port=0, clock=FakeClock(), auth_tokens=path) as served,
        remotecalc.connect(served, auth_token=ALICE) as old,
        remotecalc.connect(served, auth_token=rotated) as new,
    ):
        session = old.create(1)
        assert new.session(session.token).add(1) == 2


def test_a_token_file_others_may_read_is_warned_about(tmp_path: Path) -> None:
    path = _token_file(tmp_path, f"alice:{ALICE}\n", mode=0o640)
    with pytest.warns(UserWarning, match="readable by others than its owner: chmod 600"):
        AuthTokens.from_file(path)


def test_serve_warns_in_one_line_of_a_token_file_others_may_read(tmp_path: Path) -> None:
    path = _token_file(tmp_path, f"alice:{ALICE}\n", mode=0o644)
    served = Served("--port", "0", "--auth-token-file", str(path))
    try:
        served.address()
        assert served.stop() == 0
        assert served.stderr_text().splitlines()[0] == (
            f"remotecalc: warning: the token file {path} is readable by others than its owner: chmod 600 {path}"
        )
    finally:
        served.kill()


def test_tokens_given_in_code_are_checked_too() -> None:
    with pytest.raises(TokenFileError, match="shorter than 16"):
        AuthTokens({"alice": "short"})
    with pytest.raises(TokenFileError, match="given twice"):
        AuthTokens({"alice": ALICE, "bob": [BOB, ALICE]})
    assert AuthTokens({"alice": [ALICE, BOB]}).caller(BOB) == "alice"


# -- the command line -------------------------------------------------------------------------


def test_new_token_prints_one_line_for_a_token_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["new-token", "alice"]) == 0
    line = capsys.readouterr().out
    name, _, token = line.rstrip("\n").partition(":")
    assert line.count("\n") == 1 and name == "alice" and len(token) >= 40
    assert AuthTokens.from_file(_token_file(tmp_path, line)).caller(token) == "alice"
    with pytest.raises(SystemExit):
        main(["new-token", "a:b"])


def test_serve_with_a_token_file_requires_its_tokens(tmp_path: Path) -> None:
    path = _token_file(tmp_path, f"alice:{ALICE}\n")
    served = Served("--port", "0", "--auth-token-file", str(path), "--core", "aio")
    try:
        address = served.address()
        with remotecalc.connect(address) as anonymous, pytest.raises(CredentialsMissing):
            anonymous.create(1)
        with remotecalc.connect(address, auth_token=ALICE) as alice:
            assert alice.create(1).add(1) == 2
        assert served.stop() == 0
    finally:
        served.kill()


def test_a_token_file_is_read_when_the_server_starts_and_not_again(tmp_path: Path) -> None:
    path = _token_file(tmp_path, f"alice:{ALICE}\n")
    with start_server(port=0, clock=FakeClock(), auth_tokens=path) as served:
        path.write_text(f"bob:{BOB}\n")
        with remotecalc.connect(served, auth_token=ALICE) as alice:
            assert alice.create(1).add(1) == 2
        with remotecalc.connect(served, auth_token=BOB) as bob, pytest.raises(CredentialsUnknown):
            bob.create(1)


def test_under_mutual_tls_health_needs_a_client_certificate_too(pki: dict[str, Path]) -> None:
    tls = TLS(cert=pki["cert"], key=pki["key"], client_ca=pki["ca"])
    request = health_pb2.HealthCheckRequest()
    with start_server(port=0, clock=FakeClock(), tls=tls, auth_tokens=TOKENS) as served:
        roots = pki["ca"].read_bytes()
        with grpc.secure_channel(served.address, grpc.ssl_channel_credentials(roots)) as channel:
            code, _message, _metadata = outcome(
                lambda: health_pb2_grpc.HealthStub(channel).Check(request, timeout=TIMEOUT)
            )
            assert code is grpc.StatusCode.UNAVAILABLE
        holder = grpc.ssl_channel_credentials(roots, pki["a_key"].read_bytes(), pki["a"].read_bytes())
        with grpc.secure_channel(served.address, holder) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=TIMEOUT)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_every_worker_requires_the_token_file(tmp_path: Path, redis_url: str) -> None:
    path = _token_file(tmp_path, f"alice:{ALICE}\nbob:{BOB}\n")
    served = Served("--port", "0", "--workers", "2", "--store", redis_url, "--auth-token-file", str(path))
    try:
        address = served.address()
        # The kernel hands each new connection to one worker: four make it likely both are reached.
        for _ in range(4):
            with remotecalc.connect(address) as anonymous, pytest.raises(CredentialsMissing):
                anonymous.create(1)
            with (
                remotecalc.connect(address, auth_token=ALICE) as alice,
                remotecalc.connect(address, auth_token=BOB) as bob,
            ):
                token = alice.create(1).token
                with pytest.raises(SessionNotFound):
                    bob.session(token).add(1)
                assert alice.session(token).add(1) == 2
        assert served.stop(signal.SIGTERM) == 0
    finally:
        served.kill()


def test_serve_refuses_a_bad_token_file_in_one_line(tmp_path: Path) -> None:
    import subprocess

    path = _token_file(tmp_path, "alice:too-short\n")
    done = subprocess.run(
        [REMOTECALC, "serve", "--port", "0", "--auth-token-file", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"remotecalc: {path} line 1: the token of 'alice' is shorter than 16 characters"
        " (make one with: remotecalc new-token NAME)"
    ]
    assert "too-short" not in done.stderr


# -- the client --------------------------------------------------------------------------------


def test_the_token_comes_from_the_environment_when_not_given(
    guarded: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTECALC_AUTH_TOKEN", BOB)
    with remotecalc.connect(guarded) as bob:
        token = bob.create(1).token
    with remotecalc.connect(guarded, auth_token=ALICE) as alice, pytest.raises(SessionNotFound):
        alice.session(token).value()


@pytest.mark.parametrize(
    "target", ["10.0.0.7:3000", "calc.example.org:3000", "dns:///calc.example.org:3000", "127.0.0.1:1,10.0.0.7:1"]
)
def test_a_token_is_never_sent_in_plaintext_beyond_loopback(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="refusing to send a bearer token in plaintext") as refused:
        remotecalc.connect(target, auth_token=ALICE)
    assert ALICE not in str(refused.value)
    monkeypatch.setenv("REMOTECALC_AUTH_TOKEN", BOB)
    with pytest.raises(ValueError, match="plaintext"):
        remotecalc.connect(target)
    remotecalc.connect(target, auth_token=ALICE, tls=True).close()
    for loopback in ("127.0.0.1:1", "localhost:1", "[::1]:1", "127.0.0.1:1,127.0.0.2:1"):
        remotecalc.connect(loopback, auth_token=ALICE).close()


def test_a_resolved_outcome_carries_the_token(guarded: RunningServer) -> None:
    with remotecalc.connect(guarded, auth_token=ALICE, timeout=0.05) as hurried:
        session = hurried.session(remotecalc.connect(guarded, auth_token=ALICE).create(5).token)
        engine: Any = guarded.engine
        outcome: dict[str, BaseException] = {}
        done = threading.Event()

        def add() -> None:
            try:
                session.add(1)
            except BaseException as error:  # handed to the test's thread
                outcome["error"] = error
            done.set()

        with engine._sessions[session.token].lock:
            threading.Thread(target=add, daemon=True).start()
            assert done.wait(timeout=TIMEOUT)
        error = outcome["error"]
        assert isinstance(error, DeadlineExceeded), error
        hurried.timeout = TIMEOUT
        assert error.resolve() == 6 and error.resolve() == 6
        assert session.state().step_count == 1


def test_a_watch_resumes_with_its_token(redis_url: str) -> None:
    one = start_server(port=0, store=redis_url, clock=FakeClock(), auth_tokens=TOKENS)
    two = start_server(port=0, store=redis_url, clock=FakeClock(), auth_tokens=TOKENS)
    again: RunningServer | None = None
    try:
        with (
            remotecalc.connect(one, timeout=TIMEOUT, auth_token=ALICE) as watcher,
            remotecalc.connect(two, auth_token=ALICE) as writer,
        ):
            session = writer.create(1)
            watch = watcher.session(session.token).watch()
            updates = iter(watch)
            assert next(updates).step_count == 0
            session.add(1)
            assert next(updates).value == 2
            one.stop(grace=0)
            session.add(1)
            again = start_server(port=one.port, store=redis_url, clock=FakeClock(), auth_tokens=TOKENS)
            update = next(updates)
            assert (update.step_count, update.value, watch.resumes >= 1) == (2, 3, True)
            watch.cancel()
    finally:
        for server in (one, two, again):
            if server is not None:
                server.stop(grace=0)


def test_the_panel_carries_its_token(guarded: RunningServer) -> None:
    panel = CalculatorPanel(guarded, auth_token=ALICE)
    try:
        panel.press("+", 5)
        assert (panel.value, panel.step_count, panel.error) == (5.0, 1, "")
        assert panel.wait_for(lambda: panel.status == "connected")
    finally:
        panel.close()
    with remotecalc.connect(guarded, auth_token=BOB) as bob, pytest.raises(SessionNotFound):
        bob.session(str(panel.token)).value()
    refused = CalculatorPanel(guarded)
    try:
        assert "auth_token=" in refused.error and refused.token is None
    finally:
        refused.close()


def test_without_tokens_nothing_changes(server: RunningServer) -> None:
    assert server.callers is None
    with remotecalc.connect(server) as one, remotecalc.connect(server, auth_token=ALICE) as other:
        assert other.session(one.create(1).token).add(1) == 2


def test_a_server_says_what_guards_it(pki: dict[str, Path], server: RunningServer) -> None:
    tls = TLS(cert=pki["cert"], key=pki["key"])
    mutual = TLS(cert=pki["cert"], key=pki["key"], client_ca=pki["ca"])
    assert repr(server) == f"<RunningServer {server.address} running, 0 sessions>"
    with start_server(port=0, clock=FakeClock(), tls=tls, auth_tokens=TOKENS) as guarded_by_both:
        assert (
            repr(guarded_by_both)
            == f"<RunningServer {guarded_by_both.address} running, 0 sessions, TLS, bearer tokens>"
        )
    with start_server(port=0, clock=FakeClock(), tls=mutual) as by_certificates:
        assert repr(by_certificates) == f"<RunningServer {by_certificates.address} running, 0 sessions, mutual TLS>"


@pytest.mark.parametrize("token", ["a-token-with-a-newline\n", "héllo-héllo-héllo-héllo", "two halves-of-a-token"])
def test_a_token_that_cannot_travel_in_metadata_is_refused_by_the_client(token: str, server: RunningServer) -> None:
    with pytest.raises(ValueError, match="auth_token cannot be sent: a bearer token is visible ASCII"):
        remotecalc.connect(server, auth_token=token)
