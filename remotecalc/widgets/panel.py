"""CalculatorPanel: a calculator session to click through in a notebook, with its history, chart and RPC log.

The whole panel is one anywidget (remotecalc.widgets.body), its chart drawn in the page from points
and ticks the kernel computes (remotecalc.widgets.chart). A click reaches the kernel as one message
carrying the key and the number field's text; the kernel parses the text, makes the call, and sends the page the new
state as one message. The panel's state is traitlets (value, step_count, status, error, token,
history, calls), so code can observe or link them.

Threads: clicks run where the kernel handles widget messages, the Watch stream is read in a thread
of its own, and both change the panel; every change is made under one lock, never held during an
RPC or while joining the Watch thread. Under it, updates are merged by step count (SessionView),
so a click's reply and a Watch message about the same or an older step cannot undo a newer one,
whichever arrives first.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets  # type: ignore[import-untyped]
import traitlets

from ..client import DEFAULT_TIMEOUT, CallRecord, Client, Session, Watch
from ..errors import DeadlineExceeded, RemoteCalcError, SessionNotFound, StepsNotKept, Unavailable
from ..model import Operator, Update
from ..tls import PemSource
from . import render
from .body import CalculatorBody
from .chart import chart_view
from .entry import NotANumber, parse_number
from .view import SessionView

if TYPE_CHECKING:
    from ..addresses import Reachable

__all__ = ["OPERATORS", "CalculatorPanel", "wait_for"]

#: The operator each operator button sends as its key.
OPERATORS: dict[str, Operator] = {operator.name.lower(): operator for operator in Operator}
NO_SESSION = "no session"
CONNECTING = "connecting…"
CONNECTED = "connected"
RECONNECTING = "reconnecting…"
CLOSED = "closed"
DISCONNECTED = "disconnected"
NEEDS_SESSION = "No session: click New session first"
#: The error Enter in the number field shows before the session has a step whose operator it could repeat.
NEEDS_OPERATOR = "Enter repeats the last step's operator: click + - × ÷ for the first step"
# Closing the panel waits this long at most for its Watch thread, which a cancel ends at once;
# the bound guards against a grpcio fault (a stream starting as its server stops that never
# ends, which the client avoids with a channel without retries): the thread is a daemon.
_JOIN_TIMEOUT = 2.0


class _Stream:
    """One Watch stream of the panel and the thread that reads it."""

    def __init__(self, generation: int, watch: Watch, token: str) -> None:
        self.generation = generation
        self.watch = watch
        self.token = token
        self.cancelled = False
        self.thread: threading.Thread | None = None


class CalculatorPanel(widgets.VBox):  # type: ignore[misc]
    """A calculator session to click through: number field, + - × ÷, New session, Answer, history, chart, RPC log.

    Enter in the number field repeats the operator of the session's last step with the number typed.

    target is a server address ("127.0.0.1:3000"), several replicas' ("a:1,b:2" or a list, balanced as
    remotecalc.connect does; a broken Watch resumes on another) or a Reachable. With token, the panel
    attaches to that session; without, it opens a session holding initial_value at once, so that
    ``CalculatorPanel(server, token=panel.token)`` right after always joins panel's session.
    """

    #: The session's value as the panel last heard it; None before any session.
    value = traitlets.Float(None, allow_none=True, read_only=True)
    #: How many steps the session had made when the panel last heard of it.
    step_count = traitlets.Int(0, read_only=True)
    #: The connection state shown: no session, connecting…, connected, reconnecting…, closed or disconnected.
    status = traitlets.Unicode(NO_SESSION, read_only=True)
    #: The message shown in red, "" when there is none.
    error = traitlets.Unicode("", read_only=True)
    #: The open session's full token, to attach a second panel with; None without a session.
    token = traitlets.Unicode(None, allow_none=True, read_only=True)
    #: The session's steps the panel knows, newest first (up to history_limit).
    history = traitlets.Tuple(read_only=True)
    #: The RPC log's records, newest first (up to log_limit).
    calls = traitlets.Tuple(read_only=True)

    def __init__(
        self,
        target: str | Reachable | Sequence[str | Reachable],
        *,
        token: str | None = None,
        initial_value: float = 0.0,
        timeout: float | None = DEFAULT_TIMEOUT,
        log_limit: int = 50,
        history_limit: int = 200,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        auth_token: str | None = None,
    ) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._calls: deque[CallRecord] = deque(maxlen=log_limit)
        self._history_limit = history_limit
        self._view = SessionView()
        self._session: Session | None = None
        self._stream: _Stream | None = None
        self._generation = 0
        self._status = NO_SESSION
        self._error = ""
        self._presses = 0
        self._closed = False
        #: The server the panel talks to, when it was given one rather than an address.
        self.server = target if not isinstance(target, (str, Sequence)) else None
        #: The page's part: number field, buttons, value, status, error, history and log.
        self.body = CalculatorBody(self._on_press)
        self.add_class("remotecalc-panel")
        self.children = [self.body]
        #: The panel's own connection; its on_call feeds the RPC log.
        self.client = Client(
            target,
            timeout=timeout,
            on_call=self._record_call,
            tls=tls,
            root_certificates=root_certificates,
            client_cert=client_cert,
            client_key=client_key,
            auth_token=auth_token,
        )
        try:
            if token is None:
                self._new_session(initial_value)
            else:
                self._attach(token)
        except Exception as error:  # an unreachable server belongs in the panel, like a click's error
            self._failed(error, self._generation)
        with self._lock:
            self._render()

    # -- public -----------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The open session the buttons act on, or None."""
        return self._session

    @property
    def watch_thread(self) -> threading.Thread | None:
        """The thread reading the current session's Watch stream, if one was started."""
        stream = self._stream
        return None if stream is None else stream.thread

    def press(self, key: str, number: str | float = "") -> None:
        """Do what a click does: key is +, -, ×, ÷ (or add … divide), "new" or "answer", or "enter" for Enter in
        the field; number is the field's text."""
        name = key if key in ("new", "answer", "enter") else Operator.parse(key).name.lower()
        self._on_press(name, number if isinstance(number, str) else repr(float(number)))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until predicate (say, on panel.value) holds after a change; False on timeout."""
        return wait_for(self, predicate, timeout)

    def __repr__(self) -> str:
        # Where widgets cannot be drawn (GitHub, an untrusted notebook) this is what readers see.
        shown = render.NOTHING if self.value is None else render.format_number(self.value)
        return f"CalculatorPanel(value={shown}, steps={self.step_count}, status={self.status!r})"

    def close(self) -> None:
        """End the Watch stream and its thread, close the connection and the widgets; the session stays open."""
        if getattr(self, "_closed", True):
            super().close()
            return
        self._closed = True
        self._stop_stream()
        self.client.close()
        self.body.close()
        super().close()

    # -- drawing ------------------------------------------------------------------------

    def _render(self) -> None:
        """Set the traits and send the page the state as one message; the lock is held."""
        view = self._view
        token = None if self._session is None else self._session.token
        steps = view.recent_steps(self._history_limit)
        calls = tuple(self._calls)
        newest = view.newest_step()
        chart = chart_view(*view.chart_points())
        with self.hold_trait_notifications():
            self.set_trait("value", view.value)
            self.set_trait("step_count", view.step_count)
            self.set_trait("status", self._status)
            self.set_trait("error", self._error)
            self.set_trait("token", token)
            self.set_trait("history", tuple(steps))
            self.set_trait("calls", calls)
            self.body.view = {
                "value": render.NOTHING if view.value is None else render.format_number(view.value),
                "value_full": "" if view.value is None else render.full_number(view.value),
                "token": render.short_token(token),
                "token_full": token or "",
                "status": self._status,
                "error": self._error,
                "live": self._session is not None,
                "history": render.history_rows(steps),
                "history_note": render.history_note(len(steps), max(view.step_count, len(view.steps))),
                "enter": f"Enter repeats {newest.operator.symbol}" if newest else "Enter repeats the last operator",
                "log": render.log_rows(calls),
                "chart": chart,
                # Every click gets an answer, even one that changes nothing (the page stops waiting).
                "presses": self._presses,
            }

    # -- clicks ---------------------------------------------------------------------------

    def _on_press(self, key: str, text: str) -> None:
        """Handle one click: key and the field's text at that moment; never lets an exception out."""
        generation = self._generation
        try:
            if key == "answer":
                self._answer()
            elif key == "new":
                self._new_session(parse_number(text))
            elif key == "enter":
                self._repeat(parse_number(text))
            else:
                self._apply(OPERATORS[key], parse_number(text))
        except NotANumber as error:
            with self._lock:
                self._error = str(error)
        except Exception as error:  # ipywidgets would print an escaping one to the log console
            self._failed(error, generation)
        with self._lock:
            self._presses += 1
            self._render()

    def _apply(self, operator: Operator, operand: float) -> None:
        session, generation = self._session, self._generation
        if session is None:
            with self._lock:
                self._error = NEEDS_SESSION
            return
        step = session.apply_step(operator, operand)
        with self._lock:
            if generation == self._generation:
                self._view.merge(step.result, step.number, (step,))
                self._error = ""

    def _repeat(self, operand: float) -> None:
        with self._lock:
            newest, session = self._view.newest_step(), self._session
        if newest is None and session is not None:
            with self._lock:
                self._error = NEEDS_OPERATOR
            return
        # Without a session, _apply says to open one, whatever the operator.
        self._apply(Operator.ADD if newest is None else newest.operator, operand)

    def _new_session(self, value: float) -> None:
        value = float(value)  # an int from code would be shown as typed, not as the server holds it
        session = self.client.create(value)
        self._switch_to(session, SessionView(session.token, value), after_step=0)

    def _attach(self, token: str) -> None:
        session = self.client.session(token)
        view = SessionView(token)
        try:
            snapshot = session.state()
        except SessionNotFound:
            with self._lock:
                self._generation += 1
                self._view, self._session, self._status = view, None, CLOSED
                view.closed = True
            raise
        view.merge(snapshot.value, snapshot.step_count, snapshot.history)
        if snapshot.step_count == 0 or (snapshot.history and snapshot.history[0].number == 1):
            view.start_at(snapshot.initial_value)
        # The feed starts after the step read, and brings every later one: none falls between the two.
        self._switch_to(session, view, after_step=snapshot.step_count)

    def _answer(self) -> None:
        session, generation = self._session, self._generation
        if session is None:
            with self._lock:
                self._error = NEEDS_SESSION
            return
        final = session.answer()
        with self._lock:
            if generation == self._generation:
                self._view.close(final)
                self._session = None
                self._status = CLOSED
                self._error = ""

    def _switch_to(self, session: Session, view: SessionView, *, after_step: int) -> int:
        """Make session the panel's, with a new Watch stream from after_step; return its generation."""
        self._stop_stream()
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._session = session
            self._view = view
            self._status = CONNECTING
            self._error = ""
        stream = _Stream(
            generation,
            session.watch(after_step=after_step, on_resume=lambda error: self._resuming(generation, error)),
            session.token,
        )
        stream.thread = threading.Thread(
            target=self._read_stream, args=(stream,), name=f"remotecalc-watch-{session.token[:6]}", daemon=True
        )
        with self._lock:
            self._stream = stream
        stream.thread.start()
        return generation

    def _stop_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is None:
            return
        stream.cancelled = True
        stream.watch.cancel()
        if stream.thread is not None and stream.thread is not threading.current_thread():
            stream.thread.join(_JOIN_TIMEOUT)

    # -- from either thread -------------------------------------------------------------------

    def _failed(self, error: Exception, generation: int, *, stream_lost: bool = False) -> None:
        """Take error in; a lost Watch stream, like an unreachable server, leaves the panel disconnected."""
        with self._lock:
            self._error = render.error_text(error)
            if isinstance(error, SessionNotFound):
                if generation == self._generation and self._session is not None:
                    self._view.closed = True
                    self._session = None
                    self._status = CLOSED
            elif stream_lost or isinstance(error, (Unavailable, DeadlineExceeded)):
                self._status = DISCONNECTED

    def _record_call(self, record: CallRecord) -> None:
        # Drawn with the step it belongs to, so that a click makes one message, not two.
        with self._lock:
            self._calls.appendleft(record)

    # -- the Watch thread ------------------------------------------------------------------------

    def _read_stream(self, stream: _Stream) -> None:
        started = time.perf_counter()
        code = render.WATCH_CLOSED
        behind = False
        try:
            for update in stream.watch:
                self._take_update(stream.generation, update)
        except StepsNotKept as error:
            # More steps at once than the server keeps (a batch of thousands): the panel reads the
            # session as it is now and watches on from there; the history says which steps it shows.
            code, behind = error.code_name, not stream.cancelled
        except Exception as error:  # the stream's end belongs in the panel, not on the console
            if not stream.cancelled:
                code = error.code_name if isinstance(error, RemoteCalcError) else "UNKNOWN"
                self._failed(error, stream.generation, stream_lost=True)
        request = f"token={stream.token[:6]}…"
        with self._lock:
            self._calls.appendleft(
                CallRecord(render.WATCH_METHOD, request, code, (time.perf_counter() - started) * 1000)
            )
            if not self._closed:
                self._render()
        if behind:
            self._catch_up(stream)

    def _catch_up(self, stream: _Stream) -> None:
        """Read the session now and watch it from there, keeping the view: the steps between are not kept."""
        session = self._session
        if session is None or session.token != stream.token:
            return
        try:
            snapshot = session.state()
        except Exception as error:  # as any failure of the stream: shown, never raised in this thread
            self._failed(error, stream.generation, stream_lost=True)
            return
        with self._lock:
            if stream.generation != self._generation or self._closed:
                return
            view = self._view
            view.merge(snapshot.value, snapshot.step_count, snapshot.history)
        self._switch_to(session, view, after_step=snapshot.step_count)

    def _resuming(self, generation: int, error: RemoteCalcError | None) -> None:
        """The Watch stream broke (error) and is being opened again, or was (None): say so."""
        with self._lock:
            if generation != self._generation or self._closed:
                return
            self._status = RECONNECTING if error is not None else CONNECTED
            self._error = render.error_text(error) if error is not None else ""
            self._render()

    def _take_update(self, generation: int, update: Update) -> None:
        with self._lock:
            if generation != self._generation:
                return
            changed = self._view.merge(update.value, update.step_count, update.steps, update.closed)
            if update.closed:
                self._session = None
                self._status = CLOSED
                changed = True
            elif self._status != CONNECTED:
                self._status = CONNECTED
                changed = True
            if changed:
                self._render()


def wait_for(panel: CalculatorPanel, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait until predicate holds, checking it after each change of the panel's traits; False on timeout."""
    changed = threading.Event()

    def note(_change: Any) -> None:
        changed.set()

    def holds() -> bool:
        # Under the panel's lock: a change in progress in another thread is seen whole or not at all.
        with panel._lock:
            return predicate()

    panel.observe(note, names=traitlets.All)
    try:
        deadline = time.monotonic() + timeout
        while True:
            changed.clear()
            if holds():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not changed.wait(remaining):
                return holds()
    finally:
        panel.unobserve(note, names=traitlets.All)
