"""Per-item failures as the service reports them: a closed set of machine-readable codes, and the one
place that writes a failed task into an item's answer (docs/ml-api.md, "Item errors")."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Why an item (or one task of it) has no result. Clients branch on these, never on messages."""

    BAD_INPUT = "bad_input"  # not usable input: not an image, invalid base64, wrong sample rate, empty
    TOO_LARGE = "too_large"  # over a limit: ML_MAX_IMAGE_PIXELS, ML_MAX_AUDIO_SECONDS
    MODEL_ERROR = "model_error"  # the model raised on this item
    INVALID_OUTPUT = "invalid_output"  # the model answered unusably: a NaN/infinite/zero/wrong-size vector,
    # a VLM answer that is not a valid scene description
    MODEL_UNAVAILABLE = "model_unavailable"  # the model could not run: failed to load, its server unreachable


def new_item(item_id: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """An item's answer before any task ran: ``ok``, no error, and ``fields`` all null."""
    return {
        "id": item_id,
        "ok": True,
        "error": None,
        "code": None,
        "task_errors": {},
        **dict.fromkeys(fields),
    }


def fail_item(result: dict[str, Any], code: ErrorCode, message: str) -> None:
    """The whole item failed before any task ran (decoding): ``ok`` false, its code and message."""
    result["ok"], result["error"], result["code"] = False, message, code.value


def fail_task(result: dict[str, Any], task: str, code: ErrorCode, message: str) -> None:
    """One task of an answered item failed: recorded under ``task_errors[task]``; the item is not ``ok``,
    ``error`` names every failed task (``"<task>: <message>"`` joined by ``"; "``, for people) and ``code`` is
    its first failure's."""
    result["task_errors"][task] = {"code": code.value, "message": message}
    text = f"{task}: {message}"
    result["error"] = f"{result['error']}; {text}" if result["error"] else text
    if result["ok"]:
        result["ok"], result["code"] = False, code.value
