"""One task's part of an ML answer, and answers put back together from their parts (pure).

The result cache keeps each task's answers apart (cache.task_key), so that a new model of one task is
asked again for that task only. An analyze/images item answers every task it was asked for in one dict;
`split` takes out one task's fields (tags: the ImageNet tags are the `tags` task's, those with
`source: "coco"` come from `objects`), `join` merges parts into the dict `unify.py` reads.
"""

from __future__ import annotations

from typing import Any

from orchestrator import answers

IMAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "ocr": ("ocr",),
    "faces": ("faces",),
    "tags": ("tags",),
    "objects": ("objects", "tags"),
    "caption": ("caption", "scene"),
    "image_text": ("image_vector",),
}
AUDIO_FIELDS: dict[str, tuple[str, ...]] = {
    "asr": ("language", "language_probability", "segments"),
    "speakers": ("turns",),
}
_COCO = "coco"  # the source of the tags the objects task adds (docs/ml-api.md)


def split(result: dict[str, Any], task: str) -> dict[str, Any]:
    """The fields of `result` that `task` produced."""
    fields = IMAGE_FIELDS.get(task) or AUDIO_FIELDS.get(task) or ()
    part = {name: result.get(name) for name in fields}
    if "tags" in part:
        coco = task == "objects"
        tags = answers.items(result.get("tags"))
        part["tags"] = [t for t in tags if (answers.mapping(t).get("source") == _COCO) == coco]
    return part


def join(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One answer from tasks' parts (as the service would give for all of them at once)."""
    out: dict[str, Any] = {"ok": True}
    tags: list[Any] = []
    for part in parts:
        for name, value in part.items():
            if name == "tags":
                tags.extend(answers.items(value))
            else:
                out[name] = value
    out["tags"] = tags
    return out
