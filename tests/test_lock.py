"""The lock (requirements/): its rules, its agreement with pyproject.toml, and the venv that runs these tests
holding exactly what it says (scripts/install.sh syncs .venv with requirements/lock.txt)."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from scripts.lock_tool import (
    LOCK_FILES,
    Pin,
    canonical,
    check,
    diff,
    installed,
    installed_mismatches,
    read_lock,
    split_package,
)

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"


def test_the_lock_files_keep_their_rules() -> None:
    """CPU torch and no CUDA library in the CPU sets, subsets that agree with lock.txt, a CUDA GPU set."""
    assert check(REQUIREMENTS) == []


def test_this_venv_holds_exactly_the_lock() -> None:
    """`pip list` in .venv matches requirements/lock.txt: same names, same versions, nothing else (pip and
    this project aside)."""
    assert installed_mismatches(read_lock(REQUIREMENTS / "lock.txt"), installed()) == []


def test_every_requirement_of_pyproject_is_locked_within_its_range() -> None:
    """A pyproject.toml edit without scripts/update_lock.sh fails here, not on a user's machine."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in ("ml", "pyannote", "dev"):
        declared += project["project"]["optional-dependencies"][extra]
    lock = read_lock(REQUIREMENTS / "lock.txt")
    for line in declared:
        requirement = Requirement(line)
        pin = lock.get(canonical(requirement.name))
        assert pin is not None, f"{requirement} is not in requirements/lock.txt"
        within = requirement.specifier.contains(pin.version, prereleases=True)
        assert within, f"{requirement} but the lock has {pin.version}"


def test_install_script_reinstalls_when_the_lock_changes() -> None:
    script = (ROOT / "scripts" / "install.sh").read_text()
    stamp_inputs = next(line for line in script.splitlines() if line.startswith("want=$(cat"))
    assert "requirements/lock.txt" in stamp_inputs and "pyproject.toml" in stamp_inputs


def _digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _lock_text(*entries: tuple[str, str]) -> str:
    lines = ["# a header comment"]
    for name, version in entries:
        lines += [f"{name}=={version} \\", f"    --hash={_digest(name)}", "    # via archivist"]
    return "\n".join(lines) + "\n"


def test_read_lock_needs_a_hash_for_every_entry(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(_lock_text(("Foo_Bar", "1.0"), ("baz", "2.0+cpu")))
    assert read_lock(good) == {
        "foo-bar": Pin("foo-bar", "1.0", frozenset({_digest("Foo_Bar")})),
        "baz": Pin("baz", "2.0+cpu", frozenset({_digest("baz")})),
    }
    bad = tmp_path / "bad.txt"
    bad.write_text("foo==1.0\n")
    with pytest.raises(ValueError, match="has no --hash"):
        read_lock(bad)


def test_split_package_takes_one_whole_entry(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(_lock_text(("alpha", "1"), ("torch", "2.13.0+cpu"), ("zeta", "3")))
    entry, rest = split_package(lock, "torch")
    assert entry.splitlines()[0] == "torch==2.13.0+cpu \\" and "# via archivist" in entry
    (tmp_path / "rest.txt").write_text(rest)
    assert set(read_lock(tmp_path / "rest.txt")) == {"alpha", "zeta"}
    with pytest.raises(KeyError):
        split_package(lock, "missing")


def test_diff_names_added_removed_and_changed() -> None:
    old = {"a": Pin("a", "1", frozenset()), "b": Pin("b", "1", frozenset())}
    new = {"a": Pin("a", "2", frozenset()), "c": Pin("c", "1", frozenset())}
    assert diff(old, new) == ["+ c==1", "- b==1", "~ a 1 -> 2"]


def test_check_catches_a_cuda_torch_in_a_cpu_set(tmp_path: Path) -> None:
    for name in LOCK_FILES:
        (tmp_path / name).write_text((REQUIREMENTS / name).read_text())
    text = (tmp_path / "ml.txt").read_text().replace("torch==2.13.0+cpu", "torch==2.13.0")
    (tmp_path / "ml.txt").write_text(text + _lock_text(("nvidia-cublas", "13.0")))
    problems = check(tmp_path)
    assert "ml.txt: torch 2.13.0 is not the CPU build" in problems
    assert "ml.txt: nvidia-cublas is a CUDA library" in problems
