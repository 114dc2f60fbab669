// The calculator panel's body. It holds no rules: a click sends the key and the field's text, as
// they are at that moment, in one message; the kernel answers with `view`, which is drawn as is.

const OPERATORS = [
  ["add", "+"],
  ["subtract", "-"],
  ["multiply", "×"],
  ["divide", "÷"],
];
const GONE = "kernel gone — re-run the cell";

function cell(row, text, { title, className, header } = {}) {
  const node = document.createElement(header ? "th" : "td");
  node.textContent = text;
  if (title) node.title = title;
  if (className) node.className = className;
  row.appendChild(node);
}

function table(holder, headers, rows, empty, fill) {
  holder.replaceChildren();
  const grid = document.createElement("table");
  grid.className = "remotecalc-table";
  const head = grid.createTHead().insertRow();
  headers.forEach(([text, className]) => cell(head, text, { className, header: true }));
  if (rows.length) {
    const body = grid.createTBody();
    rows.forEach((row) => fill(body.insertRow(), row));
  }
  holder.appendChild(grid);
  if (!rows.length) {
    const note = document.createElement("p");
    note.className = "remotecalc-empty";
    note.textContent = empty;
    holder.appendChild(note);
  }
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
    </div>
    <div class="remotecalc-error" role="alert"></div>
    <div class="remotecalc-tables">
      <section><h4 class="remotecalc-section">History</h4><div class="remotecalc-history"></div></section>
      <section><h4 class="remotecalc-section">RPC log, newest first</h4><div class="remotecalc-log"></div></section>
    </div>
    <h4 class="remotecalc-section">Value over steps</h4>`;
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

  const draw = () => {
    const view = model.get("view") || {};
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
    table(find(".remotecalc-history"), [["#", "remotecalc-num"], ["op"], ["operand", "remotecalc-num"], ["result", "remotecalc-num"]],
      view.history ?? [], "No steps yet", (row, [number, op, operand, operandFull, result, resultFull]) => {
        cell(row, number, { className: "remotecalc-num" });
        cell(row, op);
        cell(row, operand, { className: "remotecalc-num", title: operandFull });
        cell(row, result, { className: "remotecalc-num", title: resultFull });
      });
    table(find(".remotecalc-log"), [["method"], ["request"], ["code"], ["time", "remotecalc-num"]],
      view.log ?? [], "No calls yet: each click makes one", (row, [method, request, code, kind, time, meaning]) => {
        cell(row, method, { title: method });
        cell(row, request, { title: request });
        cell(row, code, { className: `remotecalc-code-${kind}`, title: code });
        cell(row, time, { className: "remotecalc-num", title: meaning });
      });
  };

  const press = (key) => {
    if (gone) return;
    el.classList.add("remotecalc-pending");
    model.send({ kind: "press", key, text: field.value });
  };
  for (const button of buttons) {
    button.addEventListener("click", () => press(button.dataset.key));
  }

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
  draw();
  disconnected();
  return () => {
    classes.disconnect();
    kernel?.statusChanged?.disconnect?.(onStatus);
  };
}

export default { render };
