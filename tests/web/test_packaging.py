"""The web UI's files ship in the wheel (the Dockerfile installs the project with `pip install .`, not
editable): every file under orchestrator/web/ matches a `package-data` pattern of pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_web_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns: list[str] = config["tool"]["setuptools"]["package-data"]["orchestrator"]
    package = ROOT / "orchestrator"
    files = [p for p in (package / "web").rglob("*") if p.is_file()]
    assert any(p.name == "index.html" for p in files)
    left_out = [
        str(p.relative_to(package))
        for p in files
        if not any(p.relative_to(package).match(g) for g in patterns)
    ]
    assert left_out == [], f"not in the wheel (add a pattern to [tool.setuptools.package-data]): {left_out}"
