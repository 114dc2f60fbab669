"""CalculatorPanel: a calculator session to click through in a notebook, with its history, chart and RPC log.

Threads: clicks run in the kernel's main thread, the Watch stream is read in a thread of its own,
and both change widgets. ipykernel sends comm messages from any thread (each thread gets its own
pipe to the IOPub thread, which sends what they queue in the order they queued it), but ipywidgets
itself is not thread-safe, so every change to the panel's widgets is made under one lock. Under it,
updates are merged by step count (SessionView), so a click's reply and a Watch message about the
same or an older step cannot undo a newer one, whichever arrives first. The lock is never held
during an RPC or while joining the Watch thread, so neither side can block the other for long.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from ..client import DEFAULT_TIMEOUT, CallRecord, Client, Session, Watch
from ..errors import DeadlineExceeded, RemoteCalcError, SessionNotFound, Unavailable
from ..model import Operator, Update
from ..server import RunningServer, start_server
from . import render
from .chart import draw_chart, make_chart
from .view import SessionView

__all__ = ["OPERATOR_CLASSES", "CalculatorPanel"]

#: Each operator button's symbol (its key in panel.buttons), operator and CSS class.
OPERATOR_CLASSES: dict[str, tuple[Operator, str]] = {
    "+": (Operator.ADD, "remotecalc-op-add"),
    "-": (Operator.SUBTRACT, "remotecalc-op-subtract"),
    "×": (Operator.MULTIPLY, "remotecalc-op-multiply"),
    "÷": (Operator.DIVIDE, "remotecalc-op-divide"),
}
NO_SESSION = "no session"
CONNECTING = "connecting…"
CONNECTED = "connected"
CLOSED = "closed"
DISCONNECTED = "disconnected"
NEEDS_SESSION = "No session: click New session first"
_STATUS_COLORS = {CONNECTED: "#2e7d32", DISCONNECTED: "#c62828"}
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

    target is a server address ("127.0.0.1:3000") or a RunningServer; without one the panel starts
    (or, on a re-run, reuses) an embedded server with ``remotecalc.start_server()``. With token, it
    attaches to that existing session, so that two panels can share one.
    """

    def __init__(
        self,
        target: str | RunningServer | None = None,
        *,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        log_limit: int = 50,
        history_limit: int = 200,
    ) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: deque[CallRecord] = deque(maxlen=log_limit)
        self._history_limit = history_limit
        self._view = SessionView()
        self._session: Session | None = None
        self._stream: _Stream | None = None
        self._generation = 0
        self._status = NO_SESSION
        self._error = ""
        self._drawn: tuple[list[int], list[float]] = ([], [])
        self._closed = False
        if target is None:
            target = start_server()
        #: The server the panel talks to, when it was given (or started) one rather than an address.
        self.server = target if isinstance(target, RunningServer) else None
        self._build()
        #: The panel's own connection; its on_call feeds the RPC log.
        self.client = Client(target, timeout=timeout, on_call=self._record_call)
        with self._lock:
            self._render()
        if token is not None:
            self._guarded(self._attach, token)

    # -- public -----------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The open session the buttons act on, or None."""
        return self._session

    @property
    def token(self) -> str | None:
        """The open session's full token, to attach a second panel with; None without a session."""
        session = self._session
        return None if session is None else session.token

    @property
    def step_count(self) -> int:
        """How many steps the session had made when the panel last heard of it."""
        return self._view.step_count

    @property
    def status(self) -> str:
        """The connection state shown: no session, connecting…, connected, closed or disconnected."""
        return self._status

    @property
    def calls(self) -> list[CallRecord]:
        """The RPC log's records, newest first."""
        with self._lock:
            return list(self._calls)

    @property
    def watch_thread(self) -> threading.Thread | None:
        """The thread reading the current session's Watch stream, if one was started."""
        stream = self._stream
        return None if stream is None else stream.thread

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until predicate (say, on panel.value_display.value) holds after an update; False on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def wait_for_value(self, text: str, timeout: float = 5.0) -> bool:
        """Wait until the big value reads text ("15", as format_number writes it); False on timeout."""
        return self.wait_for(lambda: self.value_display.value == text, timeout)

    def __repr__(self) -> str:
        # Where widgets cannot be drawn (GitHub, an untrusted notebook) this is what readers see.
        value = getattr(self, "value_display", None)
        shown = value.value if value is not None else "—"
        return f"CalculatorPanel(value={shown}, steps={self.step_count}, status={self.status!r})"

    def close(self) -> None:
        """End the Watch stream and its thread, close the connection and the widgets; the session stays open."""
        if getattr(self, "_closed", True):
            super().close()
            return
        self._closed = True
        self._stop_stream()
        self.client.close()
        for part in self._parts:
            part.close()
        super().close()

    # -- building and drawing -----------------------------------------------------------

    def _build(self) -> None:
        self.add_class("remotecalc-panel")
        self.number = widgets.FloatText(value=0.0, description="Number", layout=widgets.Layout(width="210px"))
        self.number.add_class("remotecalc-number")
        self.buttons: dict[str, Any] = {}
        for symbol, (operator, css) in OPERATOR_CLASSES.items():
            button = widgets.Button(
                description=symbol, tooltip=operator.name.lower(), layout=widgets.Layout(width="46px")
            )
            button.add_class("remotecalc-op")
            button.add_class(css)
            button.on_click(self._on_operator(symbol))
            self.buttons[symbol] = button
        self.new_button = widgets.Button(
            description="New session", tooltip="Open a session holding the number", button_style="primary"
        )
        self.new_button.add_class("remotecalc-new")
        self.new_button.on_click(lambda _: self._guarded(self._new_session))
        self.answer_button = widgets.Button(
            description="Answer", tooltip="Close the session and show its final value", button_style="success"
        )
        self.answer_button.add_class("remotecalc-answer")
        self.answer_button.on_click(lambda _: self._guarded(self._answer))
        self.value_display = _label("remotecalc-value", width="auto", height="auto")
        self.value_display.style.font_size = "2.6em"
        self.token_display = _label("remotecalc-token")
        self.status_display = _label("remotecalc-status")
        self.error_display = _label("remotecalc-error", width="auto", height="auto")
        self.history_table = widgets.HTML(layout=widgets.Layout(max_height="250px", overflow="auto"))
        self.history_table.add_class("remotecalc-history")
        self.chart = make_chart()
        self.chart.add_class("remotecalc-chart")
        self.log_table = widgets.HTML(layout=widgets.Layout(max_height="220px", overflow="auto"))
        self.log_table.add_class("remotecalc-log")
        stylesheet = widgets.HTML(render.STYLESHEET, layout=widgets.Layout(display="none"))
        title = _label("remotecalc-title", "remotecalc")
        header = widgets.HBox(
            [title, self.token_display, self.status_display],
            layout=widgets.Layout(justify_content="space-between", align_items="center"),
        )
        keys = widgets.HBox([self.number, *self.buttons.values()], layout=widgets.Layout(align_items="center"))
        actions = widgets.HBox([self.new_button, self.answer_button])
        history = widgets.VBox([_label("remotecalc-section", "History"), self.history_table])
        history.layout = widgets.Layout(width="280px", margin="0 12px 0 0")
        chart = widgets.VBox([_label("remotecalc-section", "Value over steps"), self.chart])
        log = widgets.VBox([_label("remotecalc-section", "RPC log, newest first"), self.log_table])
        body = widgets.HBox([history, chart])
        self.children = [stylesheet, header, self.value_display, keys, actions, self.error_display, body, log]
        self.layout = widgets.Layout(width="100%", max_width="780px", padding="8px 12px")
        self._parts = [*_descendants(self)]

    def _render(self) -> None:
        """Show the view, status and error; the lock is held."""
        view = self._view
        self.value_display.value = render.NOTHING if view.value is None else render.format_number(view.value)
        self.value_display.tooltip = None if view.value is None else repr(view.value)
        token = self.token
        self.token_display.value = render.short_token(token)
        self.token_display.tooltip = token
        self.status_display.value = self._status
        self.status_display.style.text_color = _STATUS_COLORS.get(self._status)
        self.error_display.value = self._error
        for button in (*self.buttons.values(), self.answer_button):
            button.disabled = self._session is None
        self.history_table.value = render.history_html(view.recent_steps(self._history_limit))
        points = view.chart_points()
        if points != self._drawn:
            draw_chart(self.chart, *points)
            self._drawn = points
        self._changed.notify_all()

    # -- clicks (main thread) ---------------------------------------------------------------

    def _guarded(self, action: Callable[..., None], *args: Any) -> None:
        """Run a click's action; any error becomes the panel's message, never a traceback."""
        try:
            action(*args)
        except Exception as error:  # ipywidgets would print an escaping one to the log console
            self._failed(error, self._generation)

    def _on_operator(self, symbol: str) -> Callable[[Any], None]:
        return lambda _: self._guarded(self._apply, symbol)

    def _apply(self, symbol: str) -> None:
        session, generation = self._session, self._generation
        if session is None:
            self._say(NEEDS_SESSION)
            return
        step = session.apply_step(OPERATOR_CLASSES[symbol][0], float(self.number.value))
        with self._lock:
            if generation == self._generation:
                self._view.merge(step.result, step.number, (step,))
                self._error = ""
                self._render()

    def _new_session(self) -> None:
        value = float(self.number.value)
        session = self.client.create(value)
        self._switch_to(session, SessionView(session.token, value))

    def _attach(self, token: str) -> None:
        session = self.client.session(token)
        generation = self._switch_to(session, SessionView(token))
        # The stream is open before the read, so no step falls between the two.
        snapshot = session.state()
        with self._lock:
            if generation == self._generation:
                self._view.merge(snapshot.value, snapshot.step_count, snapshot.history)
                self._render()

    def _answer(self) -> None:
        session, generation = self._session, self._generation
        if session is None:
            self._say(NEEDS_SESSION)
            return
        final = session.answer()
        with self._lock:
            if generation == self._generation:
                self._view.close(final)
                self._session = None
                self._status = CLOSED
                self._error = ""
                self._render()

    def _switch_to(self, session: Session, view: SessionView) -> int:
        """Make session the panel's, with a new Watch stream; return its generation."""
        self._stop_stream()
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._session = session
            self._view = view
            self._status = CONNECTING
            self._error = ""
            self._render()
        stream = _Stream(generation, session.watch(), session.token)
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
        """Show error; a lost Watch stream, like an unreachable server, leaves the panel disconnected."""
        with self._lock:
            self._error = render.error_text(error)
            if isinstance(error, SessionNotFound):
                if generation == self._generation and self._session is not None:
                    self._view.closed = True
                    self._session = None
                    self._status = CLOSED
            elif stream_lost or isinstance(error, (Unavailable, DeadlineExceeded)):
                self._status = DISCONNECTED
            self._render()

    def _say(self, message: str) -> None:
        with self._lock:
            self._error = message
            self._render()

    def _record_call(self, record: CallRecord) -> None:
        with self._lock:
            self._calls.appendleft(record)
            self.log_table.value = render.log_html(self._calls)
            self._changed.notify_all()

    # -- the Watch thread ------------------------------------------------------------------------

    def _read_stream(self, stream: _Stream) -> None:
        started = time.perf_counter()
        code = "OK"
        try:
            for update in stream.watch:
                self._take_update(stream.generation, update)
        except Exception as error:  # the stream's end belongs in the panel, not on the console
            code = error.code_name if isinstance(error, RemoteCalcError) else "UNKNOWN"
            if not stream.cancelled:
                self._failed(error, stream.generation, stream_lost=True)
        else:
            if stream.cancelled:
                code = "CANCELLED"
        request = f"token={stream.token[:6]}…"
        self._record_call(CallRecord("WatchSession", request, code, (time.perf_counter() - started) * 1000))

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


def _label(css: str, text: str = "", **layout: str) -> Any:
    label = widgets.Label(text, layout=widgets.Layout(**layout))
    label.add_class(css)
    return label


def _descendants(box: Any) -> list[Any]:
    found = []
    for child in getattr(box, "children", ()):
        found.append(child)
        found.extend(_descendants(child))
    return found
