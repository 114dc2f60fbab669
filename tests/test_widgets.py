"""The notebook panel against a real server: its buttons, errors, history, chart, RPC log and Watch sync."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

import remotecalc
from remotecalc import Client, RunningServer
from remotecalc.model import Operator, Step
from remotecalc.widgets import CalculatorPanel, format_number
from remotecalc.widgets.view import SessionView

ARTICLE = [(5.0, "+"), (3.0, "-"), (10.0, "×"), (2.0, "÷")]


class _Cells(HTMLParser):
    """The text of each body row of an HTML table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows(table: str) -> list[list[str]]:
    """The rows a user sees in an HTML table widget's value."""
    parser = _Cells()
    parser.feed(table)
    return parser.rows


def press(panel: CalculatorPanel, button: str, number: float | None = None) -> None:
    """Type number (if given) into the number field, then click a button: +, -, ×, ÷, new or answer."""
    if number is not None:
        panel.number.value = number
    target = {"new": panel.new_button, "answer": panel.answer_button}.get(button) or panel.buttons[button]
    target.click()


def run_article(panel: CalculatorPanel) -> None:
    """The article's sequence: a session at 0, then + 5, - 3, × 10, ÷ 2."""
    press(panel, "new", 0)
    for operand, symbol in ARTICLE:
        press(panel, symbol, operand)


@pytest.fixture(autouse=True)
def nothing_escapes(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test in which a click handler or a Watch thread let an exception out."""
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    # ipywidgets logs an exception escaping a click handler as a warning (a traceback in a notebook).
    caplog.set_level(logging.WARNING)
    yield
    assert escaped == []
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert [record.getMessage() for record in records if record.levelno >= logging.WARNING] == []


@pytest.fixture
def panel(server: RunningServer) -> Iterator[CalculatorPanel]:
    """A panel on the test server, closed after the test."""
    made = CalculatorPanel(server)
    yield made
    made.close()


def test_the_article_sequence_through_the_buttons_reads_10(panel: CalculatorPanel) -> None:
    shown = []
    press(panel, "new", 0)
    shown.append(panel.value_display.value)
    for operand, symbol in ARTICLE:
        press(panel, symbol, operand)
        shown.append(panel.value_display.value)

    assert shown == ["0", "5", "2", "20", "10"]
    assert panel.error_display.value == ""
    assert panel.token is not None
    assert panel.token_display.value == panel.token[:6] + "…"
    assert panel.wait_for(lambda: panel.status_display.value == "connected")


def test_new_session_starts_from_the_number_field_and_replaces_the_old_one(panel: CalculatorPanel) -> None:
    run_article(panel)
    first_token, first_thread = panel.token, panel.watch_thread

    press(panel, "new", 2.5)

    assert panel.value_display.value == "2.5"
    assert panel.token != first_token
    assert rows(panel.history_table.value) == []
    assert list(panel.chart.data[0].y) == [2.5]
    assert first_thread is not None and not first_thread.is_alive()
    assert panel.watch_thread is not None and panel.watch_thread.is_alive()


def test_divide_by_zero_shows_the_error_keeps_the_value_and_the_panel_works_on(panel: CalculatorPanel) -> None:
    run_article(panel)

    press(panel, "÷", 0)

    assert panel.value_display.value == "10"
    assert panel.error_display.value == "Division by zero (INVALID_ARGUMENT)"
    press(panel, "+", 1)
    assert panel.value_display.value == "11"
    assert panel.error_display.value == ""


def test_answer_shows_the_final_value_and_ends_the_session(panel: CalculatorPanel, client: Client) -> None:
    run_article(panel)
    token, thread = panel.token, panel.watch_thread
    assert token is not None and thread is not None

    press(panel, "answer")

    assert panel.value_display.value == "10"
    assert panel.status_display.value == "closed"
    assert panel.token_display.value == "—"
    assert all(button.disabled for button in [*panel.buttons.values(), panel.answer_button])
    assert not panel.new_button.disabled
    with pytest.raises(remotecalc.SessionNotFound):
        client.session(token).value()
    thread.join(timeout=5)
    assert not thread.is_alive()
    press(panel, "+", 1)
    assert panel.error_display.value == "No session: click New session first"
    assert panel.value_display.value == "10"


def test_the_server_gone_shows_an_error_and_nothing_escapes(panel: CalculatorPanel, server: RunningServer) -> None:
    press(panel, "new", 4)
    # A stream still starting when the server stops can hang in grpcio (see the panel's module).
    assert panel.wait_for(lambda: panel.status_display.value == "connected")

    server.stop(grace=0)

    assert panel.wait_for(lambda: panel.status_display.value == "disconnected")
    # Whether the stream hears the server say it is stopping, or only loses the connection, is a race.
    assert panel.error_display.value in {
        "The server is stopping (UNAVAILABLE)",
        "The server cannot be reached (UNAVAILABLE)",
    }
    press(panel, "+", 1)
    assert panel.error_display.value == "The server cannot be reached (UNAVAILABLE)"
    assert panel.value_display.value == "4"
    press(panel, "new", 1)
    assert rows(panel.log_table.value)[0][:3] == ["CreateSession", "value=1", "UNAVAILABLE"]
    assert panel.status_display.value == "disconnected"


def test_the_log_lists_calls_newest_first_bounded_with_codes_and_latencies(panel: CalculatorPanel) -> None:
    run_article(panel)
    press(panel, "÷", 0)

    log = rows(panel.log_table.value)
    assert [row[:3] for row in log] == [
        ["Apply", "÷ 0", "INVALID_ARGUMENT"],
        ["Apply", "÷ 2", "OK"],
        ["Apply", "× 10", "OK"],
        ["Apply", "- 3", "OK"],
        ["Apply", "+ 5", "OK"],
        ["CreateSession", "value=0", "OK"],
    ]
    assert all(float(row[3]) >= 0 for row in log)

    for _ in range(50):
        press(panel, "+", 1)
    log = rows(panel.log_table.value)
    assert len(log) == 50
    assert log[0][:3] == ["Apply", "+ 1", "OK"]
    assert ["Apply", "÷ 0", "INVALID_ARGUMENT"] not in [row[:3] for row in log]


def test_the_log_shows_the_watch_stream_when_it_ends(panel: CalculatorPanel) -> None:
    press(panel, "new", 1)
    token = panel.token
    assert token is not None

    press(panel, "new", 2)

    assert panel.wait_for(lambda: rows(panel.log_table.value)[0][0] == "WatchSession")
    assert rows(panel.log_table.value)[0][1:3] == [f"token={token[:6]}…", "CANCELLED"]


def test_the_history_table_lists_the_steps_newest_first(panel: CalculatorPanel) -> None:
    run_article(panel)

    assert rows(panel.history_table.value) == [
        ["4", "÷", "2", "10"],
        ["3", "×", "10", "20"],
        ["2", "-", "3", "2"],
        ["1", "+", "5", "5"],
    ]


def test_the_chart_follows_the_steps(panel: CalculatorPanel) -> None:
    press(panel, "new", 0)
    assert (list(panel.chart.data[0].x), list(panel.chart.data[0].y)) == ([0], [0])

    for count, (operand, symbol) in enumerate(ARTICLE, start=1):
        press(panel, symbol, operand)
        assert list(panel.chart.data[0].x) == list(range(count + 1))

    assert list(panel.chart.data[0].y) == [0, 5, 2, 20, 10]
    press(panel, "÷", 0)
    assert list(panel.chart.data[0].y) == [0, 5, 2, 20, 10]


def test_two_panels_on_one_session_stay_in_sync_without_a_click(panel: CalculatorPanel, server: RunningServer) -> None:
    run_article(panel)
    other = CalculatorPanel(server, token=panel.token)
    try:
        assert other.value_display.value == "10"
        assert rows(other.history_table.value) == rows(panel.history_table.value)

        press(panel, "+", 5)
        assert other.wait_for_value("15")
        press(other, "×", 2)
        assert panel.wait_for_value("30")
        assert rows(panel.history_table.value)[:2] == [["6", "×", "2", "30"], ["5", "+", "5", "15"]]
        assert other.wait_for(lambda: rows(other.history_table.value) == rows(panel.history_table.value))
        assert list(other.chart.data[0].y)[-3:] == [10, 15, 30]

        press(other, "÷", 0)
        assert panel.error_display.value == ""

        thread = other.watch_thread
        assert thread is not None
        press(panel, "answer")
        assert other.wait_for(lambda: other.status_display.value == "closed")
        assert other.value_display.value == "30"
        assert other.buttons["+"].disabled
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        other.close()


def test_a_session_closed_elsewhere_closes_the_panel_session(panel: CalculatorPanel, client: Client) -> None:
    press(panel, "new", 7)
    assert panel.token is not None and panel.watch_thread is not None
    thread = panel.watch_thread

    client.session(panel.token).answer()

    assert panel.wait_for(lambda: panel.status_display.value == "closed")
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert panel.answer_button.disabled


def test_closing_a_panel_ends_its_watch_thread_and_keeps_the_session(server: RunningServer, client: Client) -> None:
    made = CalculatorPanel(server)
    press(made, "new", 3)
    token, thread = made.token, made.watch_thread
    assert token is not None and thread is not None and thread.is_alive()

    made.close()

    assert not thread.is_alive()
    assert client.session(token).value() == 3


def test_attaching_to_an_unknown_token_shows_the_error(server: RunningServer) -> None:
    made = CalculatorPanel(server, token="A" * 22)
    try:
        assert made.error_display.value.endswith("(NOT_FOUND)")
        assert made.status_display.value == "closed"
        assert made.buttons["+"].disabled
    finally:
        made.close()


def test_a_panel_without_a_target_starts_or_reuses_the_embedded_server() -> None:
    first = CalculatorPanel()
    second = CalculatorPanel()
    try:
        assert first.server is not None and first.server.running
        assert second.server is first.server
        assert remotecalc.start_server() is first.server
        press(second, "new", 6)
        press(second, "×", 7)
        assert second.value_display.value == "42"
    finally:
        first.close()
        second.close()
        if first.server is not None:
            first.server.stop(grace=0)


def test_every_part_carries_its_css_class(panel: CalculatorPanel) -> None:
    parts = {
        "remotecalc-panel": panel,
        "remotecalc-number": panel.number,
        "remotecalc-op-add": panel.buttons["+"],
        "remotecalc-op-subtract": panel.buttons["-"],
        "remotecalc-op-multiply": panel.buttons["×"],
        "remotecalc-op-divide": panel.buttons["÷"],
        "remotecalc-new": panel.new_button,
        "remotecalc-answer": panel.answer_button,
        "remotecalc-value": panel.value_display,
        "remotecalc-token": panel.token_display,
        "remotecalc-status": panel.status_display,
        "remotecalc-error": panel.error_display,
        "remotecalc-history": panel.history_table,
        "remotecalc-chart": panel.chart,
        "remotecalc-log": panel.log_table,
    }
    assert [css for css, widget in parts.items() if css not in widget._dom_classes] == []


@pytest.mark.parametrize(
    ("value", "text"),
    [(10.0, "10"), (-3.0, "-3"), (-0.0, "0"), (2.5, "2.5"), (0.1 + 0.2, "0.3"), (1 / 3, "0.333333333333"),
     (1e20, "1e+20"), (1.5e-7, "1.5e-07")],
)  # fmt: skip
def test_values_are_printed_without_float_noise(value: float, text: str) -> None:
    assert format_number(value) == text


def test_an_older_update_never_overwrites_a_newer_one() -> None:
    view = SessionView("t", 0.0)
    view.merge(10.0, 2, [Step(2, Operator.MULTIPLY, 2.0, 10.0)])

    assert not view.merge(5.0, 1, [Step(1, Operator.ADD, 5.0, 5.0)])
    assert (view.value, view.step_count) == (10.0, 2)
