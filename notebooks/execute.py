"""Re-execute the tutorial notebooks on a fresh kernel each and save them with their outputs.

Run from anywhere: ``python notebooks/execute.py`` (all of them) or
``python notebooks/execute.py 02-python-client.ipynb`` (some). Each notebook runs with this folder as its
working directory, as it does under ``pytest --nbval``. Widget state is saved with the outputs, so that
JupyterLab shows the widgets of a notebook that was opened but not run; see slim_widget_state() for the
one part left out. A notebook whose fresh run shows nothing new (ports, tokens and latencies aside, as
sanitize.cfg masks them) is left as it was, so re-executing leaves no diff.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbval.plugin import get_sanitize_patterns  # type: ignore[import-untyped]

NOTEBOOK_DIR = Path(__file__).resolve().parent
WIDGET_STATE_KEY = "widgets"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
MODEL_REFERENCE = re.compile(r"IPY_MODEL_([0-9a-f]{32})")
#: An anywidget front end larger than this many characters is not saved; see slim_widget_state().
ESM_LIMIT = 100_000
#: What a saved notebook shows in place of such a widget until it is run.
PLACEHOLDER_ESM = """\
export default {
  render({ el }) {
    el.textContent = "Run the notebook to draw this chart.";
    el.style.cssText = "padding: 1em; color: #666; font-style: italic;";
  },
};
"""
#: Seconds one cell may run before the notebook fails.
CELL_TIMEOUT = 120
#: The rules nbval masks outputs with before comparing them; the same rules decide what counts as a change.
SANITIZE_CONFIG = NOTEBOOK_DIR / "sanitize.cfg"
#: The marker of a cell whose output nbval does not compare (a timing, a chart of timings).
IGNORE_OUTPUT = "# NBVAL_IGNORE_OUTPUT"
#: What differs between two runs in saved widget state, which nbval does not compare: session tokens, whole
#: and cut short, plotly's trace ids, and the times in the panel's RPC log.
VOLATILE_STATE = [
    (re.compile(r'"[A-Za-z0-9_-]{22}"'), '"TOKEN"'),
    (re.compile(r"\b[A-Za-z0-9_-]{6}…"), "TOKEN…"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "UUID"),
    (re.compile(r'"(open )?[0-9.]+ m?s"'), '"TIME"'),
]


def notebooks(names: list[str]) -> list[Path]:
    """The notebooks named (all of this folder's when none is), in order."""
    if not names:
        return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]-*.ipynb"))
    return [NOTEBOOK_DIR / Path(name).name for name in names]


def slim_widget_state(notebook: nbformat.NotebookNode) -> int:
    """Replace each saved anywidget front end over ESM_LIMIT with a placeholder; return how many.

    A plotly FigureWidget (the panel's chart) is an anywidget that carries all of plotly.js, about 5 MB,
    as its _esm; saved as is, it would make each notebook with a panel megabytes long. Its saved state
    would draw an empty chart anyway: plotly sends its points as messages, which the saved state does not
    keep. The rest of each panel is saved and shown.
    """
    state = notebook.metadata.get(WIDGET_STATE_KEY, {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    slimmed = 0
    for model in state.values():
        esm = model.get("state", {}).get("_esm")
        if model.get("model_module") == "anywidget" and isinstance(esm, str) and len(esm) > ESM_LIMIT:
            model["state"]["_esm"] = PLACEHOLDER_ESM
            slimmed += 1
    return slimmed


def sanitize_rules(path: Path = SANITIZE_CONFIG) -> list[tuple[re.Pattern[str], str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, in order."""
    return [(re.compile(regex), replace) for regex, replace in get_sanitize_patterns(path.read_text(encoding="utf-8"))]


def stable_widget_ids(notebook: nbformat.NotebookNode, seed: str) -> str:
    """The notebook as JSON text with each widget model id replaced by one derived from seed and its place.

    ipywidgets names every model with a random UUID and saves them in no set order, so each run would
    rewrite every id in the file. A model's place is where a walk from the cells' outputs, in cell order,
    through each model's references first meets it; models no output reaches come last, by content.
    """
    state = notebook.metadata.get(WIDGET_STATE_KEY, {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    order: list[str] = []
    pending = [
        output.get("data", {}).get(WIDGET_VIEW_MIME, {}).get("model_id")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    ]
    pending = [model_id for model_id in pending if model_id in state][::-1]
    while pending:
        model_id = pending.pop()
        if model_id in order:
            continue
        order.append(model_id)
        references = MODEL_REFERENCE.findall(json.dumps(state[model_id], sort_keys=True))
        pending.extend(reference for reference in reversed(references) if reference in state)
    unreached = sorted(
        (model_id for model_id in state if model_id not in order),
        key=lambda model_id: MODEL_REFERENCE.sub("", json.dumps(state[model_id], sort_keys=True)),
    )
    ordered = [*order, *unreached]
    text = nbformat.writes(notebook)
    for number, model_id in enumerate(ordered):
        text = text.replace(model_id, hashlib.sha256(f"{seed}:{number}".encode()).hexdigest()[:32])
    # Written again so that the models are sorted by their new ids, as nbformat sorts keys.
    return nbformat.writes(nbformat.reads(text, as_version=4)) + "\n"


def masked(text: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    """A notebook's text as nbval compares it: sanitize rules applied, outputs it ignores left out."""
    notebook = nbformat.reads(text, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and IGNORE_OUTPUT in cell.source:
            cell.outputs = []
    text = nbformat.writes(notebook)
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


def execute(path: Path) -> tuple[float, bool]:
    """Run a notebook top to bottom on a fresh kernel; save it if what it shows changed.

    Returns the seconds it took and whether the file was written.
    """
    before = path.read_text(encoding="utf-8")
    notebook = nbformat.reads(before, as_version=4)
    # State left from an earlier run would describe widgets this run does not make.
    notebook.metadata.pop(WIDGET_STATE_KEY, None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        # Per-cell timestamps would change every saved notebook on every run.
        record_timing=False,
        store_widget_state=True,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    slim_widget_state(notebook)
    nbformat.validate(notebook)
    after = stable_widget_ids(notebook, path.name)
    rules = [*sanitize_rules(), *VOLATILE_STATE]
    if masked(after, rules) == masked(before, rules):
        return seconds, False
    path.write_text(after, encoding="utf-8")
    return seconds, True


def main(argv: list[str] | None = None) -> int:
    """Execute the notebooks given on the command line; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: every NN-*.ipynb here)")
    args = parser.parse_args(argv)
    for path in notebooks(args.names):
        print(f"{path.name} ...", end=" ", flush=True)
        seconds, written = execute(path)
        print(f"{seconds:.1f} s, {'saved' if written else 'unchanged'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
