"""The notebook panel against a real server, driven by the very message its page sends on a click."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import traitlets
from conftest import FakeClock

import remotecalc
from remotecalc import Client, RunningServer, start_server
from remotecalc.model import Operator, Step
from remotecalc.widgets import CalculatorPanel, embedded_panel, format_number, wait_for
from remotecalc.widgets.chart import MAX_POINTS, decimate, round_ticks
from remotecalc.widgets.panel import NEEDS_OPERATOR
from remotecalc.widgets.view import SessionView

ARTICLE = [("5", "add"), ("3", "subtract"), ("10", "multiply"), ("2", "divide")]


def click(panel: CalculatorPanel, key: str, text: str = "") -> None:
    """Click a button of the page with text in the number field: the comm message the page sends, as it sends it."""
    content = {"kind": "press", "key": key, "text": text}
    panel.body._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def shown(panel: CalculatorPanel, part: str) -> Any:
    """What the page shows in one part: value, token, status, error, history or log."""
    return panel.body.view[part]


def chart(panel: CalculatorPanel) -> tuple[list[int], list[float]]:
    """The chart's points as the page draws them: step numbers and values."""
    drawn = shown(panel, "chart")
    return drawn["x"], drawn["y"]


def history(panel: CalculatorPanel) -> list[list[str]]:
    """The history's rows as the page shows them: #, op, operand, result (newest first)."""
    return [[number, op, operand, result] for number, op, operand, _, result, _ in shown(panel, "history")]


def log(panel: CalculatorPanel) -> list[list[str]]:
    """The RPC log's rows as the page shows them: method, request, code, time (newest first)."""
    return [[method, request, code, time] for method, request, code, _, time, _ in shown(panel, "log")]


def run_article(panel: CalculatorPanel) -> None:
    """The article's sequence: a session at 0, then + 5, - 3, × 10, ÷ 2."""
    click(panel, "new", "0")
    for text, key in ARTICLE:
        click(panel, key, text)


@pytest.fixture(autouse=True)
def nothing_escapes(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test in which a click handler or a Watch thread let an exception out."""
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    # ipywidgets logs an exception escaping a message handler as a warning (a traceback in a notebook).
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
    seen = []
    click(panel, "new", "0")
    seen.append(shown(panel, "value"))
    for text, key in ARTICLE:
        click(panel, key, text)
        seen.append(shown(panel, "value"))

    assert seen == ["0", "5", "2", "20", "10"]
    assert (panel.value, panel.step_count, panel.error) == (10.0, 4, "")
    assert panel.token is not None
    assert shown(panel, "token") == panel.token[:6] + "…"
    assert panel.wait_for(lambda: shown(panel, "status") == "connected")


def test_a_new_panel_has_a_session_at_once_so_a_second_one_joins_it(
    panel: CalculatorPanel, server: RunningServer
) -> None:
    assert panel.token is not None
    assert (shown(panel, "value"), shown(panel, "live")) == ("0", True)

    other = CalculatorPanel(server, token=panel.token)
    try:
        assert other.token == panel.token
        click(other, "add", "7")
        assert panel.wait_for(lambda: panel.value == 7)
    finally:
        other.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "Type a number first: the field is empty"), ("abc", "“abc” is not a number"),
     ("nan", "“nan” is not a number"), ("inf", "“inf” is not a number"), ("1_000", "“1_000” is not a number"),
     ("0x10", "“0x10” is not a number"), ("1e400", "“1e400” is too large for a 64-bit float"),
     ("-1e400", "“-1e400” is too large for a 64-bit float")],
)  # fmt: skip
def test_a_text_that_is_not_a_finite_number_shows_why_and_applies_nothing(
    panel: CalculatorPanel, text: str, message: str
) -> None:
    click(panel, "add", "4")
    calls = len(panel.calls)

    click(panel, "multiply", text)

    assert shown(panel, "error") == message
    assert (shown(panel, "value"), panel.step_count) == ("4", 1)
    assert len(panel.calls) == calls  # no call reached the server
    click(panel, "new", text)
    assert shown(panel, "error") == message
    assert history(panel) == [["1", "+", "4", "4"]]


def test_a_number_float64_rounds_is_applied_rounded_and_shown_so(panel: CalculatorPanel) -> None:
    click(panel, "add", " 9007199254740993 ")  # 2**53 + 1 has no float64
    click(panel, "subtract", "0.1000000000000000055511151231257827")

    number, op, operand, operand_full, result, result_full = shown(panel, "history")[1]
    # A history cell has room for 12 characters: the value display has the 12 digits, the tooltip all of them.
    assert (number, op, operand, operand_full) == ("1", "+", "9.0072e+15", "9007199254740992.0")
    assert (result, result_full) == ("9.0072e+15", "9007199254740992.0")
    assert shown(panel, "history")[0][3] == "0.1"
    assert panel.session is not None and panel.session.history()[0].operand == 9007199254740992.0


def test_a_200_digit_operand_is_shown_short_with_every_digit_on_hover(panel: CalculatorPanel) -> None:
    text = "9" * 200

    click(panel, "add", text)

    _, _, operand, operand_full, result, _ = shown(panel, "history")[0]
    assert (operand, result, shown(panel, "value")) == ("1e+200", "1e+200", "1e+200")
    assert operand_full == repr(float(text)) == "1e+200"
    click(panel, "multiply", "1." + "3" * 198)
    assert shown(panel, "value") == "1.33333333333e+200"
    assert shown(panel, "history")[0][2:5] == ["1.33333", "1.3333333333333333", "1.33333e+200"]
    assert shown(panel, "value_full") == repr(1e200 * float("1." + "3" * 198))


def test_new_session_starts_from_the_number_field_and_replaces_the_old_one(panel: CalculatorPanel) -> None:
    run_article(panel)
    first_token, first_thread = panel.token, panel.watch_thread

    click(panel, "new", "2.5")

    assert shown(panel, "value") == "2.5"
    assert panel.token != first_token
    assert history(panel) == []
    assert chart(panel)[1] == [2.5]
    assert first_thread is not None and not first_thread.is_alive()
    assert panel.watch_thread is not None and panel.watch_thread.is_alive()


def test_divide_by_zero_shows_the_error_keeps_the_value_and_the_panel_works_on(panel: CalculatorPanel) -> None:
    run_article(panel)

    click(panel, "divide", "0")

    assert shown(panel, "value") == "10"
    assert shown(panel, "error") == "Division by zero (INVALID_ARGUMENT)"
    click(panel, "add", "1")
    assert (shown(panel, "value"), shown(panel, "error")) == ("11", "")


def test_answer_shows_the_final_value_and_ends_the_session(panel: CalculatorPanel, client: Client) -> None:
    run_article(panel)
    token, thread = panel.token, panel.watch_thread
    assert token is not None and thread is not None

    click(panel, "answer")

    assert (shown(panel, "value"), shown(panel, "status"), shown(panel, "token")) == ("10", "closed", "—")
    assert shown(panel, "live") is False  # the page disables + - × ÷ and Answer
    with pytest.raises(remotecalc.SessionNotFound):
        client.session(token).value()
    thread.join(timeout=5)
    assert not thread.is_alive()
    click(panel, "add", "1")
    assert shown(panel, "error") == "No session: click New session first"
    assert shown(panel, "value") == "10"


def test_the_server_gone_shows_an_error_and_nothing_escapes(server: RunningServer) -> None:
    panel = CalculatorPanel(server, timeout=1.0)
    statuses: list[str] = []
    panel.observe(lambda change: statuses.append(change["new"]), names="status")
    click(panel, "new", "4")
    # A stream still starting when the server stops can hang in grpcio (see the panel's module).
    assert panel.wait_for(lambda: panel.status == "connected")

    server.stop(grace=0)

    # The Watch tries to resume for the client's timeout (1 s here), then gives up.
    assert panel.wait_for(lambda: shown(panel, "status") == "disconnected")
    assert statuses[-2:] == ["reconnecting…", "disconnected"]
    # Whether the stream hears the server say it is stopping, or only loses the connection, is a race.
    assert shown(panel, "error") in {
        "The server is stopping (UNAVAILABLE)",
        "The server cannot be reached (UNAVAILABLE)",
    }
    click(panel, "add", "1")
    assert shown(panel, "error") == "The server cannot be reached (UNAVAILABLE)"
    assert shown(panel, "value") == "4"
    click(panel, "new", "1")
    assert log(panel)[0][:3] == ["CreateSession", "value=1", "UNAVAILABLE"]
    assert shown(panel, "status") == "disconnected"
    panel.close()


def test_a_panel_on_an_unreachable_server_says_so(server: RunningServer) -> None:
    address = server.address
    server.stop(grace=0)

    made = CalculatorPanel(address, timeout=2)
    try:
        assert (made.status, made.token) == ("disconnected", None)
        assert shown(made, "error") == "The server cannot be reached (UNAVAILABLE)"
    finally:
        made.close()


def test_the_log_lists_calls_newest_first_bounded_with_codes_and_latencies(panel: CalculatorPanel) -> None:
    run_article(panel)
    click(panel, "divide", "0")

    # The Watch's own calls (its stream, and a GetSession when steps fell before the stream began) aside:
    assert [row[:3] for row in log(panel) if row[0] not in ("WatchSession", "GetSession")] == [
        ["Apply", "÷ 0", "INVALID_ARGUMENT"],
        ["Apply", "÷ 2", "OK"],
        ["Apply", "× 10", "OK"],
        ["Apply", "- 3", "OK"],
        ["Apply", "+ 5", "OK"],
        ["CreateSession", "value=0", "OK"],
        ["CreateSession", "value=0", "OK"],
    ]
    assert all(row[3].endswith(" ms") and float(row[3].split()[-2]) >= 0 for row in log(panel))
    assert [kind for _, _, _, kind, _, _ in shown(panel, "log")][:2] == ["failed", "ok"]

    for _ in range(50):
        click(panel, "add", "1")
    assert len(log(panel)) == 50
    assert log(panel)[0][:3] == ["Apply", "+ 1", "OK"]
    assert ["Apply", "÷ 0", "INVALID_ARGUMENT"] not in [row[:3] for row in log(panel)]


def test_the_log_shows_a_watch_stream_end_as_closed_with_how_long_it_was_open(panel: CalculatorPanel) -> None:
    token = panel.token
    assert token is not None

    click(panel, "new", "2")

    assert panel.wait_for(lambda: log(panel)[0][0] == "WatchSession")
    _, request, code, kind, time, meaning = shown(panel, "log")[0]
    assert (request, code, kind, meaning) == (
        f"token={token[:6]}…",
        "closed",
        "closed",
        "how long the stream stayed open",
    )
    assert time.startswith("open ")


def test_the_history_lists_the_steps_newest_first_with_full_digits_on_hover(panel: CalculatorPanel) -> None:
    run_article(panel)
    click(panel, "add", "0.1")
    click(panel, "add", "0.2")

    assert history(panel) == [
        ["6", "+", "0.2", "10.3"],
        ["5", "+", "0.1", "10.1"],
        ["4", "÷", "2", "10"],
        ["3", "×", "10", "20"],
        ["2", "-", "3", "2"],
        ["1", "+", "5", "5"],
    ]
    assert shown(panel, "history")[0][5] == repr(10.1 + 0.2)


def test_a_click_is_answered_by_one_message_with_everything_it_changed(panel: CalculatorPanel) -> None:
    assert panel.wait_for(lambda: panel.status == "connected")
    sent: list[dict[str, Any]] = []
    panel.body.observe(lambda change: sent.append(change["new"]), names="view")

    click(panel, "multiply", "3")
    click(panel, "add", "2")

    answers = [view for view in sent if view["presses"] in (1, 2)]
    # The Watch stream may report a step before the click's reply does; the reply's message has it all.
    assert [view["presses"] for view in answers][-1] == 2
    last = answers[-1]
    assert (last["value"], last["history"][0][:3], last["log"][0][:3]) == ("2", ["2", "+", "2"], ["Apply", "+ 2", "OK"])
    assert len(sent) <= 4


def test_the_state_is_traitlets_code_can_observe_and_link(panel: CalculatorPanel, client: Client) -> None:
    class Mirror(traitlets.HasTraits):
        value = traitlets.Float(None, allow_none=True)

    mirror = Mirror()
    traitlets.dlink((panel, "value"), (mirror, "value"))
    steps: list[int] = []
    panel.observe(lambda change: steps.append(change["new"]), names="step_count")
    assert panel.token is not None
    # Connected: the Watch's first message came, so the batch is sent as a change with its steps.
    assert panel.wait_for(lambda: panel.status == "connected")

    client.session(panel.token).apply_many([("+", 5), ("*", 3)])  # no click: the Watch stream brings it

    assert wait_for(panel, lambda: panel.step_count == 2)
    assert mirror.value == 15
    assert steps == [2]
    assert [step.number for step in panel.history] == [2, 1]
    with pytest.raises(traitlets.TraitError):
        panel.value = 3.0  # read-only: the session's value is the server's


def test_the_chart_follows_the_steps(panel: CalculatorPanel) -> None:
    click(panel, "new", "0")
    assert chart(panel) == ([0], [0])

    for count, (text, key) in enumerate(ARTICLE, start=1):
        click(panel, key, text)
        assert chart(panel)[0] == list(range(count + 1))

    assert chart(panel)[1] == [0, 5, 2, 20, 10]
    click(panel, "divide", "0")
    assert chart(panel)[1] == [0, 5, 2, 20, 10]


def test_an_attached_panel_charts_the_session_from_its_initial_value(server: RunningServer, client: Client) -> None:
    session = client.create(7)
    session.apply_many([("+", 1), ("*", 2)])

    made = CalculatorPanel(server, token=session.token)
    try:
        assert chart(made) == ([0, 1, 2], [7, 8, 16])
    finally:
        made.close()


def test_two_panels_on_one_session_stay_in_sync_without_a_click(panel: CalculatorPanel, server: RunningServer) -> None:
    run_article(panel)
    other = CalculatorPanel(server, token=panel.token)
    try:
        assert shown(other, "value") == "10"
        assert history(other) == history(panel)

        click(panel, "add", "5")
        assert other.wait_for(lambda: shown(other, "value") == "15")
        click(other, "multiply", "2")
        assert panel.wait_for(lambda: shown(panel, "value") == "30")
        assert history(panel)[:2] == [["6", "×", "2", "30"], ["5", "+", "5", "15"]]
        assert other.wait_for(lambda: history(other) == history(panel))
        assert chart(other)[1][-3:] == [10, 15, 30]

        click(other, "divide", "0")
        assert shown(panel, "error") == ""

        thread = other.watch_thread
        assert thread is not None
        click(panel, "answer")
        assert other.wait_for(lambda: shown(other, "status") == "closed")
        assert (shown(other, "value"), shown(other, "live")) == ("30", False)
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        other.close()


def test_a_session_closed_elsewhere_closes_the_panel_session(panel: CalculatorPanel, client: Client) -> None:
    click(panel, "new", "7")
    assert panel.token is not None and panel.watch_thread is not None
    thread = panel.watch_thread

    client.session(panel.token).answer()

    assert panel.wait_for(lambda: shown(panel, "status") == "closed")
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert shown(panel, "live") is False


def test_closing_a_panel_ends_its_watch_thread_and_keeps_the_session(server: RunningServer, client: Client) -> None:
    made = CalculatorPanel(server)
    click(made, "new", "3")
    token, thread = made.token, made.watch_thread
    assert token is not None and thread is not None and thread.is_alive()

    made.close()

    assert not thread.is_alive()
    assert client.session(token).value() == 3


def test_attaching_to_an_unknown_token_shows_the_error(server: RunningServer) -> None:
    made = CalculatorPanel(server, token="A" * 22)
    try:
        assert shown(made, "error").endswith("(NOT_FOUND)")
        assert (shown(made, "status"), shown(made, "live")) == ("closed", False)
    finally:
        made.close()


def test_the_embedded_panel_factory_starts_or_reuses_the_server() -> None:
    first = embedded_panel()
    second = embedded_panel()
    try:
        assert first.server is not None and first.server.running
        assert second.server is first.server
        assert remotecalc.start_server() is first.server
        click(second, "new", "6")
        click(second, "multiply", "7")
        assert shown(second, "value") == "42"
    finally:
        first.close()
        second.close()
        if first.server is not None:
            first.server.stop(grace=0)


def test_an_initial_value_given_as_an_int_is_shown_as_any_value(server: RunningServer) -> None:
    made = CalculatorPanel(server, initial_value=1)
    try:
        assert (made.value, shown(made, "value"), chart(made)[1]) == (1.0, "1", [1.0])
    finally:
        made.close()


def test_press_from_code_does_what_a_click_does(panel: CalculatorPanel) -> None:
    panel.press("new", 1.5)
    panel.press("×", 4)
    panel.press("-", "0.5")

    assert (shown(panel, "value"), history(panel)[0]) == ("5.5", ["2", "-", "0.5", "5.5"])


def test_an_unknown_message_from_the_page_is_ignored(panel: CalculatorPanel) -> None:
    click(panel, "power", "2")
    panel.body._handle_msg({"content": {"data": {"method": "custom", "content": {"kind": "x"}}}, "buffers": []})

    assert (panel.step_count, len(panel.calls)) == (0, 1)


def test_without_the_notebook_extra_the_import_says_what_to_install() -> None:
    # A None entry in sys.modules makes that import fail as a module that is not installed would.
    code = "import sys; sys.modules['anywidget'] = None; import remotecalc.widgets"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: remotecalc.widgets needs the notebook extra")
    assert last_line.endswith("pip install 'remotecalc[notebook]'")


@pytest.mark.parametrize(
    ("value", "text"),
    [(10.0, "10"), (-3.0, "-3"), (-0.0, "0"), (2.5, "2.5"), (0.1 + 0.2, "0.3"), (1 / 3, "0.333333333333"),
     (1e20, "1e+20"), (1.5e-7, "1.5e-07")],
)  # fmt: skip
def test_values_are_printed_without_float_noise(value: float, text: str) -> None:
    assert format_number(value) == text


def test_an_older_update_never_overwrites_a_newer_one_but_fills_in_its_step() -> None:
    view = SessionView("t", 0.0)
    view.merge(10.0, 2, [Step(2, Operator.MULTIPLY, 2.0, 10.0)])

    assert view.merge(5.0, 1, [Step(1, Operator.ADD, 5.0, 5.0)])
    assert (view.value, view.step_count) == (10.0, 2)
    assert [step.number for step in view.recent_steps(10)] == [2, 1]
    assert view.chart_points() == ([0, 1, 2], [0.0, 5.0, 10.0])
    assert not view.merge(5.0, 1, [Step(1, Operator.ADD, 5.0, 5.0)])


def test_panels_on_two_replicas_carry_on_when_one_stops(redis_url: str) -> None:
    one = start_server(port=0, store=redis_url, clock=FakeClock())
    two = start_server(port=0, store=redis_url, clock=FakeClock())
    left = CalculatorPanel([one, two], initial_value=1)
    right = CalculatorPanel([two.address, one.address], token=left.token)
    try:
        click(left, "add", "41")
        assert right.wait_for(lambda: right.value == 42)
        one.stop(grace=0)
        click(left, "divide", "2")
        click(right, "multiply", "2")
        for panel in (left, right):
            # A click's reply may come before the resumed Watch brings the other panel's step: no step is lost.
            assert panel.wait_for(
                lambda panel=panel: (
                    panel.value == 42
                    and panel.status == "connected"
                    and [row[0] for row in history(panel)] == ["3", "2", "1"]
                )
            )
            assert shown(panel, "error") == ""
    finally:
        left.close()
        right.close()
        one.stop(grace=0)
        two.stop(grace=0)


def is_round(number: float) -> bool:
    """True for 0 and for 1, 2 or 5 times a power of ten, as a tick spacing should be."""
    if number == 0:
        return True
    mantissa = f"{abs(number):.6e}".split("e")[0]
    return mantissa in ("1.000000", "2.000000", "5.000000")


@pytest.mark.parametrize(
    ("low", "high", "whole"),
    [(0, 126, True), (0, 63, False), (0, 200, True), (0, 10_000, True), (-8.23e198, 1.3e200, False),
     (0.1, 0.3, False), (-1.7e308, 1.7e308, False), (5, 5, False), (0, 1, True)],
)  # fmt: skip
def test_chart_ticks_fall_on_round_values_and_cover_the_range(low: float, high: float, whole: bool) -> None:
    ticks = round_ticks(low, high, whole=whole)

    spacing = ticks[1] - ticks[0]
    assert is_round(spacing) and 2 <= len(ticks) <= 12
    assert all(is_round(tick / spacing - round(tick / spacing) + 1) or tick == 0 for tick in ticks)
    assert all(abs(tick / spacing - round(tick / spacing)) < 1e-9 for tick in ticks)
    if abs(low) < 1e308:
        assert ticks[0] <= low and ticks[-1] >= high
    if whole:
        assert spacing >= 1


def test_a_long_line_is_decimated_keeping_its_ends_and_every_spike() -> None:
    steps = list(range(10_001))
    values = [float(step % 97) for step in steps]
    values[4321] = 1e9
    values[8765] = -1e9

    xs, ys = decimate(steps, values)

    assert len(xs) <= MAX_POINTS and xs == sorted(xs)
    assert (xs[0], xs[-1]) == (0, 10_000)
    assert max(ys) == 1e9 and min(ys) == -1e9
    assert all(values[x] == y for x, y in zip(xs, ys, strict=True))


def test_ten_thousand_steps_keep_the_panel_small_and_say_what_it_leaves_out(
    panel: CalculatorPanel, client: Client
) -> None:
    """10,000 steps seen through Watch: the history lists 200 and says so, the chart 600 points at most."""
    assert panel.wait_for(lambda: panel.status == "connected")
    assert panel.token is not None
    session = client.session(panel.token)
    started = time.perf_counter()
    # In batches the server's Watch backlog holds (it keeps 1,000 steps of history by default).
    for batch in range(1, 21):
        session.apply_many([("+", 1)] * 500)
        assert panel.wait_for(lambda batch=batch: panel.step_count == batch * 500, timeout=30)
    print(f"\n10,000 steps in 20 batches through Watch: {time.perf_counter() - started:.2f} s")

    assert len(shown(panel, "history")) == 200
    assert shown(panel, "history_note") == "the newest 200 of 10,000 steps"
    drawn = shown(panel, "chart")
    assert len(drawn["x"]) <= MAX_POINTS and drawn["note"].startswith("10,001 points, drawn as")
    assert [label for _, label in drawn["x_ticks"]] == ["0", "2000", "4000", "6000", "8000", "10000"]
    started = time.perf_counter()
    click(panel, "add", "1")
    print(f"\na click at 10,000 steps, kernel side (call and render): {(time.perf_counter() - started) * 1000:.1f} ms")
    assert shown(panel, "value") == "10001"


def test_enter_in_the_field_repeats_the_last_steps_operator(panel: CalculatorPanel) -> None:
    click(panel, "enter", "5")
    assert (shown(panel, "error"), panel.step_count) == (NEEDS_OPERATOR, 0)
    assert shown(panel, "enter") == "Enter repeats the last operator"

    click(panel, "multiply", "3")
    assert (shown(panel, "value"), shown(panel, "enter")) == ("0", "Enter repeats ×")
    click(panel, "add", "4")
    click(panel, "enter", "6")
    click(panel, "enter", "abc")

    assert history(panel)[:2] == [["3", "+", "6", "10"], ["2", "+", "4", "4"]]
    assert shown(panel, "error") == "“abc” is not a number"
    click(panel, "answer")
    click(panel, "enter", "1")
    assert shown(panel, "error") == "No session: click New session first"


def test_a_batch_beyond_the_kept_history_leaves_the_panel_connected_with_the_value_after_it(
    panel: CalculatorPanel, client: Client
) -> None:
    """5,000 steps at once: the server keeps 1,000, so the Watch cannot bring them all; the panel catches up."""
    assert panel.wait_for(lambda: panel.status == "connected")
    assert panel.token is not None
    session = client.session(panel.token)
    session.apply_many([("+", 1)] * 5_000)
    assert panel.wait_for(lambda: panel.step_count == 5_000 and panel.status == "connected", timeout=30)
    assert shown(panel, "value") == "5000"
    assert shown(panel, "history_note") == "the newest 200 of 5,000 steps"
    assert [row[0] for row in history(panel)[:2]] == ["5000", "4999"]
    # The stream that could not bring them ended FAILED_PRECONDITION, and a new one carries on.
    assert any(method == "WatchSession" and code == "FAILED_PRECONDITION" for method, _, code, _ in log(panel))
    session.add(1)
    assert panel.wait_for(lambda: panel.value == 5_001)
    assert panel.status == "connected"
