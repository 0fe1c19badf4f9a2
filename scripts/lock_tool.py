"""Reads the lock files in requirements/ (uv pip compile output: ``name==version`` with ``--hash`` lines).

    python scripts/lock_tool.py check DIR                 # the rules every set of lock files keeps
    python scripts/lock_tool.py diff OLD NEW              # what a re-resolution changed
    python scripts/lock_tool.py strip-package NAME FILE   # FILE without NAME's entry (GPU constraints)
    python scripts/lock_tool.py only-package NAME FILE    # NAME's entry alone (install.sh bootstraps uv)
    python scripts/lock_tool.py installed LOCK            # compare LOCK with what this interpreter has

scripts/update_lock.sh runs the first three; tests/test_lock.py runs the rules and the comparison.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

LOCK_FILES = ("lock.txt", "orchestrator.txt", "ml.txt", "ml-gpu.txt")
# Files that must hold the CPU build of torch and no CUDA library.
CPU_FILES = ("lock.txt", "orchestrator.txt", "ml.txt")
# Installed into the venv but never locked: pip comes with the venv, archivist is this project (editable).
NOT_LOCKED = frozenset({"pip", "archivist"})

_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One locked distribution: its canonical name, exact version and the hashes of its files."""

    name: str
    version: str
    hashes: frozenset[str]


def canonical(name: str) -> str:
    """PEP 503 normalisation: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, Pin]:
    """Every ``name==version`` entry of a lock file with its hashes; raises on an entry without a hash."""
    pins: dict[str, Pin] = {}
    name = version = ""
    hashes: set[str] = set()

    def flush() -> None:
        if not name:
            return
        if not hashes:
            raise ValueError(f"{path}: {name}=={version} has no --hash")
        pins[canonical(name)] = Pin(canonical(name), version, frozenset(hashes))

    for line in path.read_text(encoding="utf-8").splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            flush()
            name, version = match.group(1), match.group(2)
            hashes = set()
        hashes.update(_HASH.findall(line))
    flush()
    return pins


def installed() -> dict[str, str]:
    """Canonical name → version of every distribution this interpreter's environment holds."""
    return {canonical(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def installed_mismatches(lock: dict[str, Pin], present: dict[str, str]) -> list[str]:
    """Differences between a lock and an environment, one line each; empty when they match exactly."""
    problems = []
    for name, pin in sorted(lock.items()):
        have = present.get(name)
        if have is None:
            problems.append(f"{name}=={pin.version} is locked but not installed")
        elif have != pin.version:
            problems.append(f"{name} is {have}, the lock says {pin.version}")
    for name in sorted(set(present) - set(lock) - NOT_LOCKED):
        problems.append(f"{name}=={present[name]} is installed but not locked")
    return problems


def check(directory: Path) -> list[str]:
    """The rules of a set of lock files: CPU torch, no CUDA libraries, subsets that agree with lock.txt."""
    problems = []
    locks = {name: read_lock(directory / name) for name in LOCK_FILES}
    full = locks["lock.txt"]
    for name in CPU_FILES:
        pins = locks[name]
        cuda = [p for p in pins if p.startswith("nvidia-") or p == "triton"]
        problems += [f"{name}: {p} is a CUDA library" for p in cuda]
        torch = pins.get("torch")
        if torch is not None and not torch.version.endswith("+cpu"):
            problems.append(f"{name}: torch {torch.version} is not the CPU build")
    if "torch" not in full or "torch" in locks["orchestrator.txt"]:
        problems.append("torch must be in lock.txt and not in orchestrator.txt (the orchestrator has no ML)")
    for name in ("orchestrator.txt", "ml.txt"):
        for pin in locks[name].values():
            if full.get(pin.name) != pin:
                problems.append(f"{name}: {pin.name}=={pin.version} differs from lock.txt")
    gpu = locks["ml-gpu.txt"]
    if "torch" not in gpu or gpu["torch"].version.endswith("+cpu"):
        problems.append("ml-gpu.txt: torch must be PyPI's CUDA build")
    for pin in gpu.values():
        if pin.name in full and pin.name != "torch" and full[pin.name].version != pin.version:
            problems.append(f"ml-gpu.txt: {pin.name}=={pin.version} differs from lock.txt")
    return problems


def diff(old: dict[str, Pin], new: dict[str, Pin]) -> list[str]:
    """Added, removed and changed versions between two locks, one line each."""
    lines = [f"+ {n}=={new[n].version}" for n in sorted(set(new) - set(old))]
    lines += [f"- {n}=={old[n].version}" for n in sorted(set(old) - set(new))]
    lines += [
        f"~ {n} {old[n].version} -> {new[n].version}"
        for n in sorted(set(old) & set(new))
        if old[n].version != new[n].version
    ]
    return lines


def split_package(path: Path, package: str) -> tuple[str, str]:
    """A lock file's text in two: one package's entry (requirement, hashes, comments) and the rest."""
    entry: list[str] = []
    rest: list[str] = []
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            inside = canonical(match.group(1)) == canonical(package)
        elif line and not line[0].isspace():
            inside = False
        (entry if inside else rest).append(line)
    if not entry:
        raise KeyError(f"{path}: no entry for {package}")
    return "\n".join(entry) + "\n", "\n".join(rest) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check").add_argument("directory", type=Path)
    d = sub.add_parser("diff")
    d.add_argument("old", type=Path)
    d.add_argument("new", type=Path)
    for command in ("strip-package", "only-package"):
        s = sub.add_parser(command)
        s.add_argument("package")
        s.add_argument("file", type=Path)
    sub.add_parser("installed").add_argument("lock", type=Path)
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = check(args.directory)
    elif args.command == "diff":
        old = read_lock(args.old) if args.old.exists() else {}
        print("\n".join(diff(old, read_lock(args.new))) or "(no version changed)")
        return 0
    elif args.command in ("strip-package", "only-package"):
        entry, rest = split_package(args.file, args.package)
        sys.stdout.write(entry if args.command == "only-package" else rest)
        return 0
    else:
        problems = installed_mismatches(read_lock(args.lock), installed())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
