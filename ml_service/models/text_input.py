"""How a text reaches a text model: as a search query or as a document (a chunk's text).

Some models are trained with an instruction in front of each text (multilingual-e5: ``query: `` and
``passage: ``); the others read both kinds alike. The service puts the model's prefix in front of each
text before it joins a batch, so queries and documents of concurrent requests share one batch and the
model reads the kind from the text itself (``split_prefixed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol


class InputType(StrEnum):
    QUERY = "query"
    DOCUMENT = "document"


class PrefixedModel(Protocol):
    """A text model that reads a prefix: ``input_prefixes[kind]`` goes in front of each text."""

    input_prefixes: dict[InputType, str]


def model_input(model: object, texts: Sequence[str], input_type: InputType) -> list[str]:
    """``texts`` as ``model`` reads them: with its prefix for ``input_type`` when it has prefixes."""
    prefixes: dict[InputType, str] | None = getattr(model, "input_prefixes", None)
    if not prefixes:
        return list(texts)
    prefix = prefixes[input_type]
    return [prefix + text for text in texts]


def split_prefixed(
    texts: Sequence[str], prefixes: dict[InputType, str]
) -> dict[InputType, list[tuple[int, str]]]:
    """A prefixed batch's texts by kind, each with its position in the batch and without its prefix. A
    text without a known prefix (a caller outside the service) is a document, read as given."""
    groups: dict[InputType, list[tuple[int, str]]] = {kind: [] for kind in InputType}
    for n, text in enumerate(texts):
        for kind, prefix in prefixes.items():
            if text.startswith(prefix):
                groups[kind].append((n, text[len(prefix) :]))
                break
        else:
            groups[InputType.DOCUMENT].append((n, text))
    return groups
