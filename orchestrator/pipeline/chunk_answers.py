"""One chunk's ML answers by task within an infer round: what the result cache had, what the ML service
answered now, whether every task is answered, and what goes back to the cache (pure; infer.py does the I/O).

Image tasks are answered per keyframe (`frames[n][task]`, with the keyframes' times in `times`), audio tasks
once per chunk (`audio[task]`). A cached image task is `[[t_s, fields], ...]` over the keyframes, an audio
task its fields (task_results.split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.pipeline import task_results
from orchestrator.pipeline.messages import ChunkInput

CAPTION_TASK = "caption"  # the VLM's image task (docs/ml-api.md)


@dataclass(slots=True)
class ChunkAnswers:
    chunk: ChunkInput
    plan: str  # the chunk plan's digest (part of every cache key of the chunk)
    image_tasks: tuple[str, ...] = ()  # what this chunk's keyframes need
    audio_tasks: tuple[str, ...] = ()
    times: list[float | None] = field(default_factory=list)
    frames: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # per keyframe: task -> fields
    audio: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> fields
    fresh: set[str] = field(default_factory=set)  # tasks answered now (to be cached)
    cached: bool = False  # every task's answers came from the cache (no ML request for it)

    def take_cached(self, entries: dict[str, Any]) -> None:
        """The cache's answers (task -> entry) for this chunk. A file not decoded learns its keyframes'
        times from them; an image task cached for another keyframe count is left to be asked again."""
        self.times = [f.t_s for f in self.chunk.frames]
        for task in self.image_tasks:
            entry = entries.get(task)
            if entry is None:
                continue
            if not self.times and not self.frames:  # not decoded: the cache tells the keyframes
                self.times = [t for t, _ in entry]
            if not self.frames:
                self.frames = [{} for _ in self.times]
            if len(entry) != len(self.frames):
                continue
            for n, (_, fields) in enumerate(entry):
                self.frames[n][task] = fields
        if not self.frames:
            self.frames = [{} for _ in self.times]
        for task in self.audio_tasks:
            if (entry := entries.get(task)) is not None:
                self.audio[task] = entry
        self.cached = self.complete

    @property
    def complete(self) -> bool:
        """Every task of the chunk has its answer (on every keyframe)."""
        if self.image_tasks and (
            not self.frames or any(t not in f for f in self.frames for t in self.image_tasks)
        ):
            return False
        return all(t in self.audio for t in self.audio_tasks)

    def missing_image_tasks(self) -> list[str]:
        return [t for t in self.image_tasks if not self.frames or any(t not in f for f in self.frames)]

    def missing_audio_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in self.audio_tasks if t not in self.audio)

    def joined_frames(self) -> list[tuple[float | None, dict[str, Any]]]:
        """Each keyframe's answers put back together, as one analyze/images result (for unify.py)."""
        return [
            (t, task_results.join([frame[task] for task in self.image_tasks]))
            for t, frame in zip(self.times, self.frames, strict=True)
        ]

    def joined_audio(self) -> dict[str, Any]:
        return task_results.join([self.audio[t] for t in self.audio_tasks])

    def fresh_entries(self, caption_partial: bool) -> dict[str, Any]:
        """task -> cache entry of the tasks answered now, each complete over its keyframes (a caption the
        VLM failed to give is not one)."""
        out: dict[str, Any] = {}
        for task in self.fresh:
            if task in self.audio_tasks:
                out[task] = self.audio[task]
            elif all(task in f for f in self.frames) and not (task == CAPTION_TASK and caption_partial):
                out[task] = [[t, frame[task]] for t, frame in zip(self.times, self.frames, strict=True)]
        return out
