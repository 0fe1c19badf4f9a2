"""News-like English sentences of 8-30 words, the text load of scripts/bench_peer.py and
scripts/measure_compute_batch.py: lengths spread like real chunk texts and queries (12-36 MiniLM tokens),
a vocabulary wide enough that words split into several word pieces, the same list for every seed."""

from __future__ import annotations

import random

VOCABULARY = (
    "the a of in on at to from with by for after before during mayor council police firefighters residents "
    "river harbour market station museum garden bridge tower school library stadium festival budget election "
    "storm rescue train airport concert parade winter summer protest flood crowd rain night morning ferry "
    "street square church water government minister parliament announced reported yesterday tuesday "
    "thousands hundreds several dozens evacuated closed reopened delayed cancelled approved rejected opened "
    "investigation spokesperson according officials emergency services hospital patients doctors nurses "
    "teachers students university researchers scientists discovered unexpected significant temperature "
    "record highest lowest electricity prices inflation economy companies workers strike negotiations union "
    "agreement contract construction infrastructure highway motorway railway passengers commuters traffic "
    "accident injured damage estimated millions euros dollars international cooperation neighbouring "
    "countries regional authorities environmental pollution recycling renewable energy solar wind turbines "
    "coastline fishermen harvest farmers drought wildfire firefighting helicopters volunteers donations "
    "charity exhibition paintings sculpture orchestra performance audience tickets championship football "
    "basketball tournament victory defeat coach players supporters celebrated historic anniversary"
).split()


def sentences(count: int, seed: int = 1, words: tuple[int, int] = (8, 30)) -> list[str]:
    """``count`` distinct sentences of ``words[0]``-``words[1]`` words (uniform), each numbered."""
    rng = random.Random(seed)
    out: list[str] = []
    for n in range(count):
        body = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(*words)))
        out.append(f"{body.capitalize()} {n}.")
    return out
