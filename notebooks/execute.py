"""Re-execute the tutorial notebooks on a fresh kernel each and save them with their outputs.

Run from anywhere: ``python notebooks/execute.py`` (all of them) or
``python notebooks/execute.py 02-python-client.ipynb`` (some). Each notebook runs with this folder as its
working directory, as it does under ``pytest --nbval``. Widget state is saved with the outputs, so that
JupyterLab shows the widgets of a notebook that was opened but not run; see slim_widget_state() for the
one part left out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent
WIDGET_STATE_KEY = "widgets"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
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


def execute(path: Path) -> float:
    """Run a notebook top to bottom on a fresh kernel, save it in place and return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
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
    nbformat.write(notebook, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Execute the notebooks given on the command line; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: every NN-*.ipynb here)")
    args = parser.parse_args(argv)
    for path in notebooks(args.names):
        print(f"{path.name} ...", end=" ", flush=True)
        seconds = execute(path)
        print(f"{seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
