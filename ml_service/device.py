"""Where the models run (``ML_DEVICE``), in which precision, and how large a batch fits a GPU.

Nothing here imports torch at module level: a replica that serves only the ONNX/OpenCV image models
never loads it. The CUDA branches (``torch.cuda.*``) are written against torch's documented API but
have not run here: the development and CI machines have no GPU (docs/ml-api.md, "Devices").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

Device = Literal["cpu", "cuda"]
DeviceSetting = Literal["auto", "cpu", "cuda"]

# Fraction of the free GPU memory one model's batch may take (ML_GPU_MEMORY_FRACTION's default):
# the rest absorbs allocator fragmentation and what other models and processes allocate later.
DEFAULT_MEMORY_FRACTION = 0.8
# Batch sizes of the memory probe: the slope between them is the per-item cost, without the
# fixed workspace every batch pays.
PROBE_SIZES: tuple[int, ...] = (1, 4)

# How runtimes word their out-of-memory errors: torch ("CUDA out of memory"), CTranslate2 ("CUDA
# failed with error out of memory"), onnxruntime's arena ("Failed to allocate memory for requested
# buffer"), cuDNN/cuBLAS status names.
_OOM_TEXT = re.compile(
    r"out of memory|failed to allocate memory|CUDNN_STATUS_ALLOC_FAILED|CUBLAS_STATUS_ALLOC_FAILED",
    re.IGNORECASE,
)


def resolve_device(setting: DeviceSetting) -> Device:
    """``auto``: cuda when torch sees a GPU, else cpu. ``cuda`` without one is an error at load."""
    if setting == "cpu":
        return "cpu"
    if setting == "cuda":
        return "cuda"
    try:
        import torch
    except ImportError:  # an image-only install without torch runs on the CPU
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def require_cuda() -> None:
    """Fail loading with a clear reason when ``ML_DEVICE=cuda`` but torch sees no GPU."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("ML_DEVICE=cuda, but torch sees no CUDA device (torch.cuda.is_available())")


def use_half(device: Device, setting: bool | None) -> bool:
    """Half precision: on CUDA unless ``ML_HALF_PRECISION=false``; never on the CPU, where float16
    matrix products are slower than float32 (and some kernels do not exist)."""
    if device != "cuda":
        return False
    return True if setting is None else setting


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure: MemoryError, torch's OutOfMemoryError, or a runtime error
    (onnxruntime, CTranslate2, cuDNN) whose message says memory ran out."""
    if isinstance(exc, MemoryError):
        return True
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):  # torch, without importing it
        return True
    return bool(_OOM_TEXT.search(str(exc)))


def release_memory(device: str) -> None:
    """Return freed memory: collect reference cycles, hand free heap pages back to the system
    (glibc keeps them, per thread arena, otherwise), and on CUDA empty torch's cached blocks."""
    gc.collect()
    _malloc_trim()
    if device == "cuda":  # unchecked here (no GPU)
        import torch

        torch.cuda.empty_cache()


def _malloc_trim() -> None:
    # A model loaded on one thread and freed leaves its pages in that thread's malloc arena: the
    # process's resident size would not drop at all. glibc only; elsewhere a no-op.
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def max_batch_from_memory(free_bytes: int, per_item_bytes: int, fraction: float, cap: int) -> int:
    """The largest batch whose items fit ``fraction`` of ``free_bytes``, at most ``cap``, at least 1.

    At least 1 because a model that fits no item still has to answer, and then each item's
    out-of-memory error says why (the batcher's split stops at single items). An unknown or
    non-positive per-item cost leaves ``cap``.
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if per_item_bytes <= 0:
        return cap
    fits = math.floor(max(free_bytes, 0) * fraction / per_item_bytes)
    return max(1, min(cap, fits))


def per_item_from_peaks(sizes: Sequence[int], peaks: Sequence[int]) -> int:
    """Bytes per item from the peak memory of batches of ``sizes`` items (ascending).

    The slope between the smallest and the largest probe, which leaves out the fixed workspace
    every batch pays; when that is not positive (allocator noise), the largest peak per item.
    """
    if len(sizes) != len(peaks) or not sizes:
        raise ValueError("one peak per probe size is needed")
    if len(sizes) > 1 and sizes[-1] > sizes[0]:
        slope = (peaks[-1] - peaks[0]) / (sizes[-1] - sizes[0])
        if slope > 0:
            return math.ceil(slope)
    return max(1, math.ceil(peaks[-1] / sizes[-1]))


def measure_per_item_bytes(run: Callable[[int], object], sizes: Sequence[int] = PROBE_SIZES) -> int:
    """CUDA only (unchecked here): peak memory of ``run(n)`` for each probe size, as bytes per item.

    ``run(n)`` computes one batch of ``n`` representative (worst-case sized) inputs. The peak is
    measured above what was allocated before the batch (the weights), with torch's counters.
    """
    import torch

    peaks: list[int] = []
    for size in sizes:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run(size)
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - before)
    torch.cuda.empty_cache()
    return per_item_from_peaks(sizes, peaks)


def cuda_free_bytes() -> int:
    """Free memory on the current CUDA device, as the driver reports it (unchecked here)."""
    import torch

    free, _total = torch.cuda.mem_get_info()
    return int(free)
