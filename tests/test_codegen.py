"""proto/generate.py reproduces the committed stubs exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "remotecalc"
GENERATED = ("article", "v1")


def _load_generate_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("remotecalc_proto_generate", REPO / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed() -> set[Path]:
    return {
        path.relative_to(PACKAGE)
        for sub in GENERATED
        for path in (PACKAGE / sub).iterdir()
        if path.is_file() and path.suffix in (".py", ".pyi")
    }


def test_generate_writes_exactly_the_committed_stubs(tmp_path: Path) -> None:
    written = _load_generate_script().generate(tmp_path)
    produced = {Path(path).relative_to(tmp_path) for path in written}
    assert produced == _committed()
    for relative in sorted(produced):
        assert (tmp_path / relative).read_text() == (PACKAGE / relative).read_text(), (
            f"remotecalc/{relative} differs from what proto/generate.py writes: run `python proto/generate.py`"
        )
