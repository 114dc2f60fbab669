"""notebooks/execute.py: re-executing a notebook that shows nothing new leaves its file as it was."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def load_execute() -> ModuleType:
    """notebooks/execute.py as a module (notebooks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("notebook_execute", ROOT / "notebooks" / "execute.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_notebook(path: Path, label: str) -> None:
    """A notebook with a box of widgets (random model ids each run) and a random port in its output."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import random\nprint(f'listening on 127.0.0.1:{random.randrange(1024, 65536)}')"),
        nbformat.v4.new_code_cell(
            f"import ipywidgets as w\nw.VBox([w.Label({label!r}), w.HBox([w.Button(description='b'), w.IntText(3)])])"
        ),
    ]
    path.write_text(nbformat.writes(notebook) + "\n", encoding="utf-8")


def test_a_second_run_that_shows_the_same_leaves_the_file_untouched(tmp_path: Path) -> None:
    execute = load_execute()
    path = tmp_path / "01-widgets.ipynb"
    write_notebook(path, "first")
    _, written = execute.execute(path)
    assert written
    saved = path.read_bytes()
    assert b"listening on 127.0.0.1:" in saved and b'"first"' in saved
    _, written = execute.execute(path)
    assert not written
    assert path.read_bytes() == saved


def test_a_run_that_shows_something_new_is_saved_with_the_same_widget_ids(tmp_path: Path) -> None:
    execute = load_execute()
    path = tmp_path / "01-widgets.ipynb"
    write_notebook(path, "first")
    execute.execute(path)
    before = nbformat.read(path, as_version=4)
    write_notebook(path, "second")
    _, written = execute.execute(path)
    after = nbformat.read(path, as_version=4)
    assert written
    state_key, mime = execute.WIDGET_STATE_KEY, execute.WIDGET_STATE_MIME
    assert set(after.metadata[state_key][mime]["state"]) == set(before.metadata[state_key][mime]["state"])
    assert '"second"' in path.read_text(encoding="utf-8")
