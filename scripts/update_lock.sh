#!/usr/bin/env bash
# Takes new versions deliberately: re-resolves every dependency (newest that pyproject.toml's ranges allow),
# runs the whole test command on the new set in a fresh copy of this tree, and writes requirements/*.txt only
# when it passes. Prints what changed.
#
#   bash scripts/update_lock.sh                       # everything to its newest allowed version
#   bash scripts/update_lock.sh -P av -P pillow       # only these (and what they need); the rest stays
#   bash scripts/update_lock.sh --no-upgrade          # keep every pin, re-resolve after a pyproject.toml edit
#   bash scripts/update_lock.sh --exclude-newer 2026-11-01   # as the registries were on that day
#   bash scripts/update_lock.sh --no-test             # write without testing (only to debug a resolution)
#
# The lock (uv pip compile, exact versions and sha256 hashes; Python 3.11, Linux x86_64):
#   requirements/lock.txt          base + [ml] + [pyannote] + [dev] + insightface: scripts/install.sh, CI
#   requirements/orchestrator.txt  base only (Dockerfile), pinned to lock.txt's versions
#   requirements/ml.txt            base + [ml] + [pyannote] + insightface (Dockerfile.ml), pinned to lock.txt's
#   requirements/ml-gpu.txt        the same with PyPI's CUDA build of torch (Dockerfile.ml, TORCH=gpu)
# Each also holds setuptools (requirements/build.in), the build backend that installs the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pkg_sources.sh
source scripts/pkg_sources.sh

upgrade=(--upgrade)
extra=()
run_tests=1
while [ $# -gt 0 ]; do
  case "$1" in
    -P|--upgrade-package) upgrade=(); extra+=(--upgrade-package "$2"); shift 2 ;;
    --no-upgrade) upgrade=(); shift ;;
    --exclude-newer) extra+=(--exclude-newer "$2"); shift 2 ;;
    --no-test) run_tests=0; shift ;;
    *) echo "update_lock.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ ! -x .venv/bin/uv ]; then
  echo "update_lock.sh: run bash scripts/install.sh first (it installs uv from the current lock)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/new"
# The current files are the starting point: without --upgrade, uv keeps their pins.
cp requirements/*.txt requirements/*.in "$work/new/"

compile() {  # compile OUT [uv pip compile arguments...]
  local out=$1; shift
  .venv/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --custom-compile-command "bash scripts/update_lock.sh" \
    --no-strip-markers "$@" -o "$work/new/$out"
}
echo "== resolving"
compile lock.txt "${pkg_sources[@]}" "${upgrade[@]}" "${extra[@]}" pyproject.toml requirements/insightface.in \
  requirements/build.in --extra ml --extra pyannote --extra dev --override requirements/overrides.txt
# The subsets take lock.txt's versions (constraints), so every image runs what the tests ran.
compile orchestrator.txt "${pkg_sources[@]}" pyproject.toml requirements/build.in -c "$work/new/lock.txt"
compile ml.txt "${pkg_sources[@]}" pyproject.toml requirements/insightface.in requirements/build.in \
  --extra ml --extra pyannote --override requirements/overrides.txt -c "$work/new/lock.txt"
# The GPU set: PyPI only (its Linux torch is the CUDA build), lock.txt's versions for everything but torch.
.venv/bin/python scripts/lock_tool.py strip-package torch "$work/new/lock.txt" > "$work/gpu-constraints.txt"
compile ml-gpu.txt pyproject.toml requirements/insightface.in requirements/build.in --extra ml --extra pyannote \
  --override requirements/overrides-gpu.txt -c "$work/gpu-constraints.txt"

.venv/bin/python scripts/lock_tool.py check "$work/new"
echo "== changes"
.venv/bin/python scripts/lock_tool.py diff requirements/lock.txt "$work/new/lock.txt"

if [ "$run_tests" = 1 ]; then
  # The test command on the new set, in a fresh copy of this tree (tracked and untracked files, no .venv).
  echo "== testing the new set in a fresh copy (bash scripts/test.sh)"
  mkdir "$work/tree"
  git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/tree"
  cp "$work"/new/*.txt "$work/tree/requirements/"
  if ! (cd "$work/tree" && bash scripts/test.sh); then
    echo "update_lock.sh: the test command failed on the new set; requirements/ is unchanged" >&2
    exit 1
  fi
fi
cp "$work"/new/lock.txt "$work"/new/orchestrator.txt "$work"/new/ml.txt "$work"/new/ml-gpu.txt requirements/
echo "== requirements/ updated; commit it with the reason for the new versions"
