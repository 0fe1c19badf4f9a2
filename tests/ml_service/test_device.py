"""Device selection, half precision and batch sizing from GPU memory (ml_service/device.py).

No GPU here: auto resolves to the CPU for real; the CUDA decisions are checked by making torch
*report* a GPU (monkeypatched ``torch.cuda.is_available``) and by faking the memory measurement,
which exercises the wiring but not torch's CUDA calls themselves (docs/ml-api.md, "Devices").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from ml_service import device
from ml_service.config import MLSettings
from ml_service.device import (
    is_out_of_memory,
    max_batch_from_memory,
    per_item_from_peaks,
    resolve_device,
    use_half,
)
from ml_service.models import base
from ml_service.models.base import InferenceModel, ItemResult
from ml_service.models.registry import ModelRegistry
from ml_service.models.text import TextEmbedder

MIB = 2**20


def test_auto_is_the_cpu_without_a_gpu_and_explicit_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever this host has: torch reports no GPU (the test must pass on a GPU host too).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda") == "cuda"  # loading then fails with a clear reason (require_cuda)
    with pytest.raises(RuntimeError, match="ML_DEVICE=cuda"):
        device.require_cuda()


def test_auto_picks_cuda_when_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_half_precision_only_on_cuda() -> None:
    assert use_half("cuda", None) is True  # default on a GPU
    assert use_half("cuda", False) is False
    assert use_half("cpu", None) is False
    assert use_half("cpu", True) is False  # float16 is slower on the CPU: never


def test_text_model_version_changes_only_with_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    path = MLSettings().text_model_path
    from ml_service.config import packaged_text_model

    folder = path or packaged_text_model()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = TextEmbedder(folder, device="auto")
    cpu_version = on_cpu.identify()
    assert (on_cpu.device, on_cpu.half, on_cpu.loaded) == ("cpu", False, False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    on_gpu = TextEmbedder(folder, device="auto")
    gpu_version = on_gpu.identify()  # identify decides device and precision without loading
    assert (on_gpu.device, on_gpu.half) == ("cuda", True)
    full = TextEmbedder(folder, device="auto", half_precision=False)
    assert full.identify() == cpu_version  # float32 on a GPU: same vectors as the CPU, same version
    assert gpu_version != cpu_version


def test_max_batch_from_memory() -> None:
    # 10 GiB free, 80% usable, 100 MiB per item: 81 items fit; the cap decides when smaller.
    assert max_batch_from_memory(10 * 1024 * MIB, 100 * MIB, 0.8, cap=1000) == 81
    assert max_batch_from_memory(10 * 1024 * MIB, 100 * MIB, 0.8, cap=64) == 64
    assert max_batch_from_memory(10 * 1024 * MIB, 100 * MIB, 1.0, cap=1000) == 102
    # Nothing fits: still 1 (that item's out-of-memory error then says why).
    assert max_batch_from_memory(50 * MIB, 100 * MIB, 0.8, cap=64) == 1
    assert max_batch_from_memory(0, 100 * MIB, 0.8, cap=64) == 1
    # Unknown per-item cost: the configured cap.
    assert max_batch_from_memory(10 * MIB, 0, 0.8, cap=64) == 64
    with pytest.raises(ValueError):
        max_batch_from_memory(10 * MIB, MIB, 0.0, cap=64)
    with pytest.raises(ValueError):
        max_batch_from_memory(10 * MIB, MIB, 0.5, cap=0)


def test_per_item_cost_is_the_slope_between_probes() -> None:
    # 1 item peaks at 30 MiB (20 of fixed workspace), 4 items at 60 MiB: 10 MiB per item.
    assert per_item_from_peaks((1, 4), (30 * MIB, 60 * MIB)) == 10 * MIB
    # Allocator noise (no growth): fall back to the largest peak per item.
    assert per_item_from_peaks((1, 4), (40 * MIB, 40 * MIB)) == 10 * MIB
    assert per_item_from_peaks((4,), (40 * MIB,)) == 10 * MIB
    assert per_item_from_peaks((1, 4), (0, 0)) == 1
    with pytest.raises(ValueError):
        per_item_from_peaks((1, 4), (1,))


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    # CTranslate2 and onnxruntime raise RuntimeError-like errors that say so in words.
    assert is_out_of_memory(RuntimeError("CUDA failed with error out of memory"))
    assert is_out_of_memory(
        RuntimeError(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"
        )
    )
    assert not is_out_of_memory(ValueError("negative input"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


class _Probed(InferenceModel[int, int]):
    """A model that claims to run on CUDA, to check how load sizes its batch from memory."""

    key: ClassVar[str] = "probed"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "probed"
    default_max_batch: ClassVar[int] = 256
    default_preferred_batch: ClassVar[int] = 64
    processing_version: ClassVar[str] = "1"

    def __init__(self, weights: Path, max_batch: int | None = None) -> None:
        super().__init__(max_batch=max_batch)
        self.weights = weights
        self.probed: list[int] = []

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _resolve(self) -> None:
        self.device = "cuda"

    def _load(self) -> None:
        pass

    def memory_probe(self, size: int) -> Sequence[int] | None:
        return list(range(size))

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        self.probed.append(len(batch))
        return [ItemResult(value=x) for x in batch]


def test_load_on_cuda_sizes_max_batch_from_free_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    peaks = {1: 30 * MIB, 4: 60 * MIB}  # 10 MiB per item

    def fake_measure(run: object) -> int:
        assert callable(run)
        for size in (1, 4):
            run(size)
        return per_item_from_peaks((1, 4), (peaks[1], peaks[4]))

    monkeypatch.setattr(base, "measure_per_item_bytes", fake_measure)
    monkeypatch.setattr(base, "cuda_free_bytes", lambda: 1000 * MIB)
    model = _Probed(weights)
    model.memory_fraction = 0.5
    model.load()
    # 1000 MiB x 0.5 / 10 MiB = 50 items (under the cap of 256); preferred follows it down.
    assert model.probed == [1, 4]
    assert (model.max_batch, model.preferred_batch, model.per_item_bytes) == (50, 50, 10 * MIB)
    capped = _Probed(weights, max_batch=32)
    capped.load()
    assert (capped.max_batch, capped.preferred_batch) == (32, 32)


def test_capabilities_report_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ML_DEVICE", "ML_ASR_DEVICE", "ML_HALF_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ML_IMAGE_TASKS", "tags")
    monkeypatch.setenv("ML_ASR_ENABLED", "false")
    monkeypatch.setenv("ML_VOICES_ENABLED", "false")
    registry = ModelRegistry.from_settings(MLSettings())
    registry.load_all(lazy=True)  # identify only: nothing is loaded
    caps = registry.capabilities()
    assert caps["device"] == "cpu"
    assert {key: (m["device"], m["loaded"]) for key, m in caps["models"].items()} == {
        "text": ("cpu", False),
        "tags": ("cpu", False),
    }
    assert caps["models"]["text"]["half_precision"] is False
    registry.close()


def test_audio_models_follow_ml_device_when_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_service.models.asr import AsrModel

    monkeypatch.setenv("ML_IMAGE_TASKS", "")
    monkeypatch.setenv("ML_TEXT_ENABLED", "false")
    monkeypatch.delenv("ML_ASR_DEVICE", raising=False)
    for setting, expected in (("cpu", "cpu"), ("cuda", "cuda"), ("auto", "auto")):
        monkeypatch.setenv("ML_DEVICE", setting)
        audio = ModelRegistry.from_settings(MLSettings()).audio
        assert {m.requested_device for m in audio.values()} == {expected}  # type: ignore[attr-defined]
    monkeypatch.setenv("ML_ASR_DEVICE", "cpu")  # its own setting wins over ML_DEVICE
    monkeypatch.setenv("ML_DEVICE", "cuda")
    audio = ModelRegistry.from_settings(MLSettings()).audio
    assert {m.requested_device for m in audio.values()} == {"cpu"}  # type: ignore[attr-defined]

    from ml_service.models.packaged_whisper import english_tiny_model

    # Compute type without loading: int8 on the CPU, float16 on a GPU unless half precision is off.
    types = {}
    for device_setting, half in (("cpu", None), ("cuda", None), ("cuda", False)):
        model = AsrModel(english_tiny_model(), device=device_setting, half_precision=half)  # type: ignore[arg-type]
        version = model.identify()
        types[(device_setting, half)] = (model.device, model.compute_type, model.language, version)
    assert [t[:3] for t in types.values()] == [
        ("cpu", "int8", "en"),  # tiny.en is English-only: read from its vocabulary, not loaded
        ("cuda", "float16", "en"),
        ("cuda", "float32", "en"),
    ]
    assert len({t[3] for t in types.values()}) == 3  # the compute type is part of the version


def test_a_probe_that_runs_out_of_memory_leaves_batches_of_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")

    def no_room(run: object) -> int:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(base, "measure_per_item_bytes", no_room)
    model = _Probed(weights)
    model.load()
    assert model.loaded and (model.max_batch, model.preferred_batch) == (1, 1)
