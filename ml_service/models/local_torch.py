"""What the torch models loaded from a local directory share (text embeddings, image–text embeddings):
the directory as the weights, the device, and half precision on a GPU as part of the version."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from ml_service.device import DeviceSetting, resolve_device, use_half
from ml_service.models.base import InferenceModel

In = TypeVar("In")
Out = TypeVar("Out")


def directory_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` except prose (``*.md``): weights, tokenizer, configs change results."""
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".md"]


class LocalTorchModel(InferenceModel[In, Out]):
    """A torch model whose files are one local directory, on ``ML_DEVICE``, in half precision on a GPU."""

    def __init__(
        self,
        model_path: Path,
        *,
        device: DeviceSetting = "auto",
        half_precision: bool | None = None,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
        compute_batch: int | None = None,
    ) -> None:
        super().__init__(
            max_batch=max_batch, preferred_batch=preferred_batch, threads=threads, compute_batch=compute_batch
        )
        self.model_path = model_path
        self.requested_device: DeviceSetting = device
        self.half_precision = half_precision
        self.half = False

    def weight_files(self) -> list[Path]:
        files = directory_files(self.model_path)
        if not files:
            raise FileNotFoundError(f"no model files under {self.model_path}")
        return files

    def processing_options(self) -> str:
        # Half precision (GPU) moves vectors by ~1e-3, so it is part of the version; on the CPU the
        # string, and so the version, is what it always was.
        return "normalize=1" + (";dtype=float16" if self.half else "")

    def capabilities(self) -> dict[str, object]:
        return {**super().capabilities(), "half_precision": self.half}

    def _resolve(self) -> None:
        self.device = resolve_device(self.requested_device)
        self.half = use_half(self.device, self.half_precision)
