"""Queue contracts are types (checked by mypy --strict), not `assert isinstance` lines that `python -O`
removes: no assert statement is left in the pipeline's code."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[2] / "orchestrator" / "pipeline"


def test_no_assert_in_pipeline_code() -> None:
    found = []
    for path in sorted(PIPELINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assert):
                found.append(f"{path.relative_to(PIPELINE.parent.parent)}:{node.lineno}")
    assert found == []
