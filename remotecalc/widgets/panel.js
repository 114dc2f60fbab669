// The calculator panel's body. It holds no rules: a click (or Enter in the field) sends the key and the
// field's text, as they are at that moment, in one message; the kernel answers with `view`, drawn as is.
//
// Drawing: the value, status, error and controls are set as each message arrives (a few text nodes);
// the history, the RPC log and the chart are redrawn at most once a frame, from the newest view, so a
// burst of messages (fast clicks, a long batch seen through Watch) costs one redraw per frame.

const OPERATORS = [
  ["add", "+"],
  ["subtract", "-"],
  ["multiply", "×"],
  ["divide", "÷"],
];
const GONE = "kernel gone — re-run the cell";
const SVG = "http://www.w3.org/2000/svg";
// The chart's own coordinates; the SVG scales to the panel's width.
const WIDTH = 740;
const HEIGHT = 240;
const MARGIN = { left: 84, right: 14, top: 10, bottom: 38 };

function cell(row, text, { title, className, header } = {}) {
  const node = document.createElement(header ? "th" : "td");
  node.textContent = text;
  if (title) node.title = title;
  if (className) node.className = className;
  row.appendChild(node);
}

function table(holder, headers, rows, empty, fill) {
  const grid = document.createElement("table");
  grid.className = "remotecalc-table";
  const head = grid.createTHead().insertRow();
  headers.forEach(([text, className]) => cell(head, text, { className, header: true }));
  if (rows.length) {
    const body = grid.createTBody();
    rows.forEach((row) => fill(body.insertRow(), row));
  }
  const parts = [grid];
  if (!rows.length) {
    const note = document.createElement("p");
    note.className = "remotecalc-empty";
    note.textContent = empty;
    parts.push(note);
  }
  holder.replaceChildren(...parts);
}

function svg(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  parent?.appendChild(node);
  return node;
}

// Where a value lands between low and high, as a fraction; halves first, so that ±1.8e308 stay finite.
function fraction(value, low, high) {
  const span = high / 2 - low / 2;
  return span > 0 ? (value / 2 - low / 2) / span : 0.5;
}

function drawChart(holder, chart) {
  const xs = chart.x ?? [], ys = chart.y ?? [], labels = chart.labels ?? [];
  const [x0, x1] = chart.x_range ?? [0, 1], [y0, y1] = chart.y_range ?? [0, 1];
  const left = MARGIN.left, right = WIDTH - MARGIN.right, top = MARGIN.top, bottom = HEIGHT - MARGIN.bottom;
  const sx = (x) => (left + fraction(x, x0, x1) * (right - left)).toFixed(1);
  const sy = (y) => (bottom - fraction(y, y0, y1) * (bottom - top)).toFixed(1);
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "remotecalc-chart", role: "img",
    "aria-label": "Value over steps" });
  for (const [y, label] of chart.y_ticks ?? []) {
    svg("line", { x1: left, x2: right, y1: sy(y), y2: sy(y), class: "remotecalc-grid" }, root);
    svg("text", { x: left - 6, y: sy(y), "text-anchor": "end", "dominant-baseline": "middle",
      class: "remotecalc-tick remotecalc-y-tick" }, root).textContent = label;
  }
  for (const [x, label] of chart.x_ticks ?? []) {
    svg("line", { x1: sx(x), x2: sx(x), y1: top, y2: bottom, class: "remotecalc-grid" }, root);
    svg("text", { x: sx(x), y: bottom + 14, "text-anchor": "middle", class: "remotecalc-tick remotecalc-x-tick" },
      root).textContent = label;
  }
  svg("rect", { x: left, y: top, width: right - left, height: bottom - top, class: "remotecalc-frame" }, root);
  svg("text", { x: (left + right) / 2, y: HEIGHT - 4, "text-anchor": "middle", class: "remotecalc-axis-title" },
    root).textContent = "step";
  svg("text", { x: 12, y: (top + bottom) / 2, "text-anchor": "middle", class: "remotecalc-axis-title",
    transform: `rotate(-90 12 ${(top + bottom) / 2})` }, root).textContent = "value";
  if (xs.length) {
    const path = xs.map((x, index) => `${index ? "L" : "M"}${sx(x)},${sy(ys[index])}`).join("");
    svg("path", { d: path, class: "remotecalc-line" }, root);
  }
  labels.forEach((label, index) => {
    const point = svg("circle", { cx: sx(xs[index]), cy: sy(ys[index]), r: 3.5, class: "remotecalc-point" }, root);
    svg("title", {}, point).textContent = label;
  });
  holder.replaceChildren(root);
}

function skeleton(el) {
  el.innerHTML = `
    <div class="remotecalc-header">
      <span class="remotecalc-title">remotecalc</span>
      <span class="remotecalc-token"></span>
      <span class="remotecalc-status" role="status"></span>
    </div>
    <div class="remotecalc-value" aria-label="Value"></div>
    <div class="remotecalc-keys">
      <label class="remotecalc-number">Number
        <input type="text" inputmode="decimal" autocomplete="off" spellcheck="false" aria-label="Number" value="0">
      </label>
    </div>
    <div class="remotecalc-actions">
      <button type="button" class="remotecalc-new" data-key="new" title="Open a session holding the number">New session</button>
      <button type="button" class="remotecalc-answer" data-key="answer" title="Close the session and show its final value">Answer</button>
      <span class="remotecalc-hint"></span>
    </div>
    <div class="remotecalc-error" role="alert"></div>
    <div class="remotecalc-tables">
      <section><h4 class="remotecalc-section">History<span class="remotecalc-note remotecalc-history-note"></span></h4>
        <div class="remotecalc-history"></div></section>
      <section><h4 class="remotecalc-section">RPC log, newest first</h4><div class="remotecalc-log"></div></section>
    </div>
    <h4 class="remotecalc-section">Value over steps<span class="remotecalc-note remotecalc-chart-note"></span></h4>
    <div class="remotecalc-plot"></div>`;
  const keys = el.querySelector(".remotecalc-keys");
  for (const [name, symbol] of OPERATORS) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `remotecalc-op remotecalc-op-${name}`;
    button.dataset.key = name;
    button.textContent = symbol;
    button.title = name;
    button.setAttribute("aria-label", name);
    keys.appendChild(button);
  }
}

function render({ model, el }) {
  el.classList.add("remotecalc-body");
  skeleton(el);
  const find = (selector) => el.querySelector(selector);
  const field = find(".remotecalc-number input");
  const buttons = [...el.querySelectorAll("button[data-key]")];
  let gone = false;
  let frame = 0;
  let drawn = {};

  // The parts that change on every step and cost a few text nodes: drawn as each message arrives.
  const drawControls = (view) => {
    el.classList.remove("remotecalc-pending");
    const value = find(".remotecalc-value");
    value.textContent = view.value ?? "—";
    value.title = view.value_full ?? "";
    const token = find(".remotecalc-token");
    token.textContent = view.token ?? "—";
    token.title = view.token_full ?? "";
    const status = find(".remotecalc-status");
    status.textContent = gone ? GONE : view.status ?? "";
    status.dataset.state = gone ? "gone" : view.status ?? "";
    const error = find(".remotecalc-error");
    error.textContent = view.error ?? "";
    error.title = view.error ?? "";
    for (const button of buttons) {
      const needsSession = button.dataset.key !== "new";
      button.disabled = gone || (needsSession && !view.live);
    }
    field.disabled = gone;
    const hint = find(".remotecalc-hint");
    hint.textContent = gone ? "" : view.enter ?? "";
    field.title = hint.textContent;
  };

  // The tables and the chart: each redrawn only when its part of the view changed since the last frame.
  const drawTables = () => {
    frame = 0;
    const view = model.get("view") || {};
    if (view.history !== drawn.history) {
      find(".remotecalc-history-note").textContent = view.history_note ? `(${view.history_note})` : "";
      table(find(".remotecalc-history"), [["#", "remotecalc-num"], ["op"], ["operand", "remotecalc-num"], ["result", "remotecalc-num"]],
        view.history ?? [], "No steps yet", (row, [number, op, operand, operandFull, result, resultFull]) => {
          cell(row, number, { className: "remotecalc-num" });
          cell(row, op);
          cell(row, operand, { className: "remotecalc-num", title: operandFull });
          cell(row, result, { className: "remotecalc-num", title: resultFull });
        });
    }
    if (view.log !== drawn.log) {
      table(find(".remotecalc-log"), [["method"], ["request"], ["code"], ["time", "remotecalc-num"]],
        view.log ?? [], "No calls yet: each click makes one", (row, [method, request, code, kind, time, meaning]) => {
          cell(row, method, { title: method });
          cell(row, request, { title: request });
          cell(row, code, { className: `remotecalc-code-${kind}`, title: code });
          cell(row, time, { className: "remotecalc-num", title: `${time}: ${meaning}` });
        });
    }
    if (view.chart !== drawn.chart) {
      const chart = view.chart ?? {};
      find(".remotecalc-chart-note").textContent = chart.note ? `(${chart.note})` : "";
      drawChart(find(".remotecalc-plot"), chart);
    }
    drawn = view;
  };

  const draw = () => {
    drawControls(model.get("view") || {});
    // A hidden page runs no frames: its tables wait until it is shown, which is when they are seen.
    if (!frame) frame = requestAnimationFrame(drawTables);
  };

  const press = (key) => {
    if (gone) return;
    el.classList.add("remotecalc-pending");
    model.send({ kind: "press", key, text: field.value });
  };
  for (const button of buttons) {
    button.addEventListener("click", () => press(button.dataset.key));
  }
  // Enter in the field repeats the last step's operator with the number typed (the kernel decides).
  field.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing) return;
    event.preventDefault();
    press("enter");
  });

  const die = () => {
    if (!gone) {
      gone = true;
      draw();
    }
  };
  // ipywidgets marks a view whose kernel connection is lost (a restart, a closed comm) with this
  // class; it never comes back for the same model, since a new kernel knows nothing of it.
  const disconnected = () => {
    if (el.classList.contains("jupyter-widgets-disconnected")) die();
  };
  const classes = new MutationObserver(disconnected);
  classes.observe(el, { attributes: true, attributeFilter: ["class"] });
  model.on("comm_live_update", () => setTimeout(disconnected, 0));
  // A kernel that dies without a restart leaves the comm as it was: its status says so.
  const kernel = model.widget_manager?.kernel;
  const onStatus = (_kernel, state) => {
    if (state === "dead" || state === "restarting" || state === "autorestarting") die();
  };
  kernel?.statusChanged?.connect?.(onStatus);

  model.on("change:view", draw);
  drawControls(model.get("view") || {});
  drawTables();
  disconnected();
  return () => {
    classes.disconnect();
    if (frame) cancelAnimationFrame(frame);
    kernel?.statusChanged?.disconnect?.(onStatus);
  };
}

export default { render };
