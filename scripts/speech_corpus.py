"""Real speech of different people, and multi-speaker conversations made of it with known turns.

For measuring speaker diarization (``scripts/eval_diarization.py``) and for tests and test videos that need
real voices (not synthetic ones). Nothing is downloaded; the speech ships in packages:

- Debian ``klettres-data``: one native speaker per language reading letters and syllables
  (``/usr/share/klettres/<lang>/{alpha,syllab}/*.ogg``) -> speakers ``klettres-<lang>``;
- Debian ``pocketsphinx-testdata``: a LibriVox reader (``librivox``) and another speaker (``cards``);
- pyannote.audio's bundled real conversation (``sample.wav`` + ``sample.rttm``): each of its two speakers'
  non-overlapping turns -> ``pyannote-sample-90``, ``pyannote-sample-91``; and the conversation itself.

    from scripts.speech_corpus import conversations, speakers, utterances_of
    pool = speakers()                          # {"klettres-en": Speaker(...), ...}; ~3 s
    for conv in conversations(seed=0, pool=pool):
        conv.samples, conv.turns, conv.tags    # float32 16 kHz; [(start, end, speaker)]; {"telephone", ...}
    audio = utterances_of("klettres-en_GB", 8.0)   # 8 s of one real voice, e.g. for a test video

Each source file is cut into utterances at its pauses (>= 0.25 s, by frame energy against the file's own
noise floor) and every utterance is brought to the same speech level. A speaker's sex is told by its median
F0 (YIN over its utterances): below 165 Hz male. Conversations are deterministic for a seed.
Missing packages raise ``CorpusMissing`` (never a silent skip): ``apt-get install klettres-data
pocketsphinx-testdata`` (scripts/test.sh installs them).

Hand-written on purpose: the F0 estimate is a numpy YIN (~30 lines) because librosa's costs 6-8 s of imports
(numba) in every process that builds the corpus. Resampling is soxr's (libsoxr), filtering scipy's.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import soundfile  # type: ignore[import-untyped]
import soxr  # type: ignore[import-untyped]
from scipy.signal import butter, sosfilt  # type: ignore[import-untyped]

SAMPLE_RATE = 16_000
KLETTRES_DIR = Path("/usr/share/klettres")
POCKETSPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")
PACKAGES_HINT = (
    "apt-get install klettres-data pocketsphinx-testdata (scripts/test.sh installs them): the real speech "
    "of the diarization corpus (scripts/speech_corpus.py)"
)

# Sex by median F0: below this, male. Speakers within 10 % of it are "ambiguous" and are not used where a
# conversation's sexes matter (same-sex and mixed-sex pairs).
MALE_BELOW_HZ = 165.0
_AMBIGUOUS_RATIO = 1.10

# Cutting source files into utterances (10 ms frames).
_FRAME = SAMPLE_RATE // 100
_SPLIT_PAUSE_S = 0.25  # a quieter stretch at least this long ends an utterance
_MIN_UTTERANCE_S = 0.2
_EDGE_PAD_S = 0.03  # kept around each utterance's speech frames
_SPEECH_LEVEL_DBFS = -23.0  # every utterance's speech frames at this RMS
_MAX_FILES = 60  # klettres files read per speaker, at most (alphabet first, then syllables)
_MAX_SPEECH_S = 40.0  # stop reading a speaker's files once this much speech is in
_F0_SECONDS = 20.0  # a speaker's F0 is measured on this much of their speech

# Conversations.
_TURN_S = (2.0, 6.0)  # a turn is utterances up to about this long
_TURN_CAP_S = 6.5
_PAUSE_IN_TURN_S = (0.0, 0.1)  # between a turn's utterances (counted as the turn's speech)
_GAP_S = (0.2, 1.0)  # between turns
_OVERLAP_S = (0.3, 1.5)  # how far an overlapping turn starts before the previous one ends
_OVERLAP_SHARE = 0.5  # turns that overlap the previous one, in "overlap" conversations
_NOISE_DBFS = -55.0  # the room: white noise under the whole conversation
_GAIN_DB = 3.0  # each speaker of a conversation is up to this much louder or quieter

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
Sex = Literal["f", "m"]


class CorpusMissing(RuntimeError):
    """A package the corpus reads its speech from is not installed."""


@dataclass(frozen=True, slots=True)
class Speaker:
    """One real person: their utterances (16 kHz mono float32, speech level normalised) and measured F0."""

    id: str
    source: str  # the package the speech comes from
    utterances: tuple[FloatArray, ...]
    f0_hz: float  # median F0 over the voiced frames of the utterances

    @property
    def sex(self) -> Sex:
        return "m" if self.f0_hz < MALE_BELOW_HZ else "f"

    @property
    def sex_is_clear(self) -> bool:
        """F0 is more than 10 % away from the 165 Hz boundary."""
        ratio = self.f0_hz / MALE_BELOW_HZ
        return ratio < 1 / _AMBIGUOUS_RATIO or ratio > _AMBIGUOUS_RATIO

    @property
    def seconds(self) -> float:
        return sum(len(u) for u in self.utterances) / SAMPLE_RATE


class RefTurn(NamedTuple):
    """A reference turn: who speaks from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """A multi-speaker recording with its reference turns (they may overlap)."""

    id: str
    samples: FloatArray  # 16 kHz mono float32 in [-1, 1]
    turns: tuple[RefTurn, ...]
    tags: frozenset[str]

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def speakers(self) -> tuple[str, ...]:
        """The speakers, in order of first turn."""
        return tuple(dict.fromkeys(turn.speaker for turn in sorted(self.turns)))

    @property
    def n_speakers(self) -> int:
        return len(self.speakers)

    def rttm(self) -> str:
        """The reference turns as RTTM lines (NIST's format; pyannote reads it)."""
        return "".join(
            f"SPEAKER {self.id} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
            for t in sorted(self.turns)
        )


# ---------------------------------------------------------------------------------------------- reading


def _read(path: Path) -> FloatArray:
    """A sound file as 16 kHz mono float32 (soundfile decodes, soxr resamples)."""
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = np.asarray(data.mean(axis=1), dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = np.asarray(soxr.resample(mono, rate, SAMPLE_RATE), dtype=np.float32)
    return mono


def _frame_db(samples: FloatArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    count = len(samples) // _FRAME
    frames = samples[: count * _FRAME].astype(np.float64).reshape(count, _FRAME)
    db: np.ndarray[Any, np.dtype[np.float64]] = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return db


def split_utterances(samples: FloatArray) -> list[FloatArray]:
    """Cut a recording into utterances at its pauses, each brought to the same speech level.

    A frame is speech when it is 10 dB above the recording's noise floor (its 10th percentile) and within
    40 dB of its loudest frame; quieter stretches of >= 0.25 s end an utterance.
    """
    db = _frame_db(samples)
    if db.size == 0:
        return []
    threshold = max(float(np.percentile(db, 10)) + 10.0, float(db.max()) - 40.0)
    speech = db > threshold
    pause = round(_SPLIT_PAUSE_S * 100)
    runs: list[tuple[int, int]] = []  # [start, end) in frames
    for index in np.flatnonzero(speech):
        if runs and index - runs[-1][1] < pause:
            runs[-1] = (runs[-1][0], int(index) + 1)
        else:
            runs.append((int(index), int(index) + 1))
    pad = round(_EDGE_PAD_S * SAMPLE_RATE)
    pieces: list[FloatArray] = []
    for first, last in runs:
        if (last - first) / 100 < _MIN_UTTERANCE_S:
            continue
        level = 10 * math.log10(float(np.mean(10 ** (db[first:last][speech[first:last]] / 10))))
        start, end = max(0, first * _FRAME - pad), min(len(samples), last * _FRAME + pad)
        piece = samples[start:end] * np.float32(10 ** ((_SPEECH_LEVEL_DBFS - level) / 20))
        peak = float(np.max(np.abs(piece)))
        if peak > 0.9:
            piece = piece * np.float32(0.9 / peak)
        pieces.append(piece.astype(np.float32))
    return pieces


# ---------------------------------------------------------------------------------------------- F0


def voiced_f0(samples: FloatArray, fmin: float = 60.0, fmax: float = 400.0) -> np.ndarray[Any, Any]:
    """F0 (Hz) of the voiced 10 ms frames of ``samples`` (YIN: de Cheveigné & Kawahara, 2002).

    A frame is voiced when its cumulative-mean-normalised difference dips below 0.15 between the lags of
    ``fmax`` and ``fmin`` and it is within 30 dB of the loudest frame; its F0 is the first such dip's lag.
    """
    window = 512  # the difference function's integration window (32 ms)
    min_lag, max_lag = int(SAMPLE_RATE / fmax), int(SAMPLE_RATE / fmin)
    length = window + max_lag
    if len(samples) < length:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), length)[::_FRAME]
    energy = np.sum(frames[:, :window] ** 2, axis=1)
    frames = frames[energy > energy.max() * 1e-3]
    size = 1 << math.ceil(math.log2(length + window))
    spectrum = np.fft.rfft(frames, size)
    lagged = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :window], size)) * spectrum, size)[:, : max_lag + 1]
    squares = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(max_lag + 1)
    shifted_energy = squares[:, lags + window] - squares[:, lags]
    difference = shifted_energy[:, :1] + shifted_energy - 2 * lagged
    cumulative = np.cumsum(difference[:, 1:], axis=1)
    normalised = difference[:, 1:] * lags[1:] / np.maximum(cumulative, 1e-12)  # lag 1 .. max_lag
    band = normalised[:, min_lag - 1 : max_lag - 1]
    dips = (band < 0.15) & (band <= normalised[:, min_lag:max_lag])  # below threshold and not falling
    voiced = dips.any(axis=1)
    first = np.argmax(dips, axis=1)[voiced]
    f0: np.ndarray[Any, Any] = SAMPLE_RATE / (first + min_lag).astype(np.float64)
    return f0


def median_f0(utterances: Iterable[FloatArray], seconds: float = _F0_SECONDS) -> float:
    """The median F0 over the voiced frames of the first ``seconds`` of ``utterances`` (0.0: none voiced)."""
    values, heard = [], 0
    for utterance in utterances:
        if heard >= seconds * SAMPLE_RATE:
            break
        values.append(voiced_f0(utterance))
        heard += len(utterance)
    joined = np.concatenate(values) if values else np.zeros(0)
    return round(float(np.median(joined)), 1) if joined.size else 0.0


# ---------------------------------------------------------------------------------------------- speakers


def _pyannote_sample_dir() -> Path:
    # find_spec of the subpackage imports only the "pyannote" namespace, not pyannote.audio (and no torch).
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusMissing("pyannote.audio is not installed: its sample conversation is part of the corpus")
    return Path(next(iter(spec.submodule_search_locations))) / "sample"


def _klettres_languages() -> list[str]:
    if not KLETTRES_DIR.is_dir():
        raise CorpusMissing(f"{KLETTRES_DIR} is missing: {PACKAGES_HINT}")
    return sorted(d.name for d in KLETTRES_DIR.iterdir() if any(d.glob("alpha/*.ogg")))


def _pocketsphinx_sets() -> dict[str, Path]:
    sets = {"librivox": POCKETSPHINX_DIR / "librivox", "cards": POCKETSPHINX_DIR / "cards"}
    for path in sets.values():
        if not any(path.glob("*.wav")):
            raise CorpusMissing(f"{path} has no .wav files: {PACKAGES_HINT}")
    return sets


def speaker_ids() -> list[str]:
    """Every speaker of the corpus (reads directory listings only); raises ``CorpusMissing``."""
    klettres = [f"klettres-{lang}" for lang in _klettres_languages()]
    _pyannote_sample_dir()
    return [*klettres, *_pocketsphinx_sets(), "pyannote-sample-90", "pyannote-sample-91"]


def read_rttm(path: Path) -> list[RefTurn]:
    """The SPEAKER lines of an RTTM file as reference turns."""
    turns: list[RefTurn] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            turns.append(RefTurn(start, start + duration, fields[7]))
    return turns


def _alone(turns: Sequence[RefTurn], speaker: str) -> list[tuple[float, float]]:
    """The stretches where ``speaker`` speaks and nobody else does."""
    others = [(t.start, t.end) for t in turns if t.speaker != speaker]
    spans: list[tuple[float, float]] = []
    for turn in (t for t in turns if t.speaker == speaker):
        pieces = [(turn.start, turn.end)]
        for o_start, o_end in others:
            pieces = [
                part
                for start, end in pieces
                for part in ((start, min(end, o_start)), (max(start, o_end), end))
                if part[1] - part[0] > 0
            ]
        spans.extend(pieces)
    return sorted(spans)


def _source_utterances(speaker_id: str) -> tuple[str, list[FloatArray]]:
    if speaker_id.startswith("klettres-"):
        lang = speaker_id.removeprefix("klettres-")
        if lang not in _klettres_languages():
            raise KeyError(f"unknown speaker {speaker_id!r}")
        files = sorted((KLETTRES_DIR / lang / "alpha").glob("*.ogg"))
        files += sorted((KLETTRES_DIR / lang / "syllab").glob("*.ogg"))
        utterances: list[FloatArray] = []
        for path in files[:_MAX_FILES]:
            try:
                utterances.extend(split_utterances(_read(path)))
            except RuntimeError:  # soundfile's LibsndfileError: a few files do not decode; skipped
                continue
            if sum(len(u) for u in utterances) >= _MAX_SPEECH_S * SAMPLE_RATE:
                break
        return "klettres-data", utterances
    sets = _pocketsphinx_sets()
    if speaker_id in sets:
        files = sorted(sets[speaker_id].glob("*.wav"))
        return "pocketsphinx-testdata", [u for path in files for u in split_utterances(_read(path))]
    if speaker_id.startswith("pyannote-sample-"):
        sample = _pyannote_sample_dir()
        audio = _read(sample / "sample.wav")
        label = "speaker" + speaker_id.removeprefix("pyannote-sample-")
        spans = _alone(read_rttm(sample / "sample.rttm"), label)
        if not spans:
            raise KeyError(f"unknown speaker {speaker_id!r}")
        pieces = [audio[round(s * SAMPLE_RATE) : round(e * SAMPLE_RATE)] for s, e in spans]
        return "pyannote.audio", [u for piece in pieces for u in split_utterances(piece)]
    raise KeyError(f"unknown speaker {speaker_id!r}")


def load_speaker(speaker_id: str) -> Speaker:
    """One speaker's utterances and measured F0; raises ``CorpusMissing`` or ``KeyError``."""
    source, utterances = _source_utterances(speaker_id)
    if not utterances:
        raise CorpusMissing(f"no decodable speech for {speaker_id}: {PACKAGES_HINT}")
    return Speaker(speaker_id, source, tuple(utterances), median_f0(utterances))


def speakers() -> dict[str, Speaker]:
    """Every speaker of the corpus, by id (a few seconds: decodes ~1,000 short files)."""
    return {speaker_id: load_speaker(speaker_id) for speaker_id in speaker_ids()}


def utterances_of(speaker_id: str, seconds: float, pause_s: float = 0.2) -> FloatArray:
    """Exactly ``seconds`` of one speaker: whole utterances in corpus order (from the first again when they
    run out) with ``pause_s`` of silence between them, and silence after the last one that fits.

    Deterministic. For test videos of people speaking: e.g. ``utterances_of("klettres-en_GB", 8.0)`` is a
    woman reading English letters, ``utterances_of("librivox", 8.0)`` a man reading a novel.
    """
    speaker = load_speaker(speaker_id)
    total = round(seconds * SAMPLE_RATE)
    out = np.zeros(total, dtype=np.float32)
    position, index = 0, 0
    while True:
        piece = speaker.utterances[index % len(speaker.utterances)]
        if position + len(piece) > total:
            if position == 0:  # one utterance is longer than asked: its beginning
                out[:] = piece[:total]
            break
        out[position : position + len(piece)] = piece
        position += len(piece) + round(pause_s * SAMPLE_RATE)
        index += 1
    return out


# ---------------------------------------------------------------------------------------------- mixing


def telephone(samples: FloatArray) -> FloatArray:
    """A narrowband telephone channel: down to 8 kHz (soxr), 300-3400 Hz band (4th-order Butterworth,
    scipy), G.711 mu-law 8-bit companding, and back to 16 kHz (soxr). Nothing is left above 4 kHz."""
    narrow = np.asarray(soxr.resample(samples, SAMPLE_RATE, 8000), dtype=np.float64)
    band = sosfilt(butter(4, (300.0, 3400.0), btype="bandpass", fs=8000, output="sos"), narrow)
    mu = 255.0
    compressed = np.sign(band) * np.log1p(mu * np.minimum(np.abs(band), 1.0)) / np.log1p(mu)
    quantised = np.round(compressed * 127.0) / 127.0
    expanded = np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu
    wide = np.asarray(soxr.resample(expanded.astype(np.float32), 8000, SAMPLE_RATE), dtype=np.float32)
    out = np.zeros(len(samples), dtype=np.float32)
    out[: min(len(out), len(wide))] = wide[: len(out)]
    return out


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    sexes: str  # one letter per speaker ("mf", "ff", ...); "" for the pyannote sample
    telephone: bool = False
    overlap: bool = False
    fixed: tuple[str, ...] = ()  # these speakers, instead of a draw


# The set: clean, telephone band, overlapping turns, similar voices (same sex; librivox/cards are two men
# reading American English, the pyannote pair two women in one room), and the real pyannote conversation.
_SPECS: tuple[_Spec, ...] = (
    _Spec("clean-mf-a", "mf"),
    _Spec("clean-mf-b", "fm"),
    _Spec("clean-mff", "mff"),
    _Spec("clean-mmff", "mmff"),
    _Spec("same-ff-a", "ff"),
    _Spec("same-ff-b", "ff", fixed=("pyannote-sample-90", "pyannote-sample-91")),
    _Spec("same-mm-a", "mm"),
    _Spec("same-mm-b", "mm", fixed=("librivox", "cards")),
    _Spec("phone-mf", "mf", telephone=True),
    _Spec("phone-ff-a", "ff", telephone=True),
    _Spec("phone-ff-b", "ff", telephone=True, fixed=("pyannote-sample-90", "pyannote-sample-91")),
    _Spec("phone-mm", "mm", telephone=True),
    _Spec("phone-mff", "mff", telephone=True),
    _Spec("overlap-mf", "mf", overlap=True),
    _Spec("overlap-ff", "ff", overlap=True),
    _Spec("overlap-mmf", "mmf", overlap=True),
    _Spec("overlap-phone-mf", "fm", telephone=True, overlap=True),
    _Spec("pyannote-sample", ""),
    _Spec("pyannote-sample-phone", "", telephone=True),
)
# One of each kind, for quick runs (tests): clean, same sex, telephone same sex, overlap, 3 speakers, real.
QUICK = ("clean-mf-a", "same-mm-b", "phone-ff-a", "overlap-mf", "clean-mff", "pyannote-sample")


def _draw_speakers(spec: _Spec, pool: Mapping[str, Speaker], rng: np.random.Generator) -> list[str]:
    if spec.fixed:
        return list(spec.fixed)
    chosen: list[str] = []
    for sex in spec.sexes:
        # Drawn from the speakers whose sex is clear (and the pyannote pair only by name: few utterances).
        candidates = sorted(
            s.id
            for s in pool.values()
            if s.sex == sex and s.sex_is_clear and s.id not in chosen and not s.id.startswith("pyannote")
        )
        chosen.append(str(rng.choice(candidates)))
    return chosen


def _tags(spec: _Spec, people: Sequence[Speaker]) -> frozenset[str]:
    tags = {f"{len(people)}-speakers"}
    if spec.telephone:
        tags.add("telephone")
    if spec.overlap:
        tags.add("overlap")
    if not spec.telephone and not spec.overlap:
        tags.add("clean")
    if len(people) == 2:
        tags.add("same-sex" if people[0].sex == people[1].sex else "mixed-sex")
    return frozenset(tags)


def _pyannote_conversation(spec: _Spec, pool: Mapping[str, Speaker]) -> Conversation:
    sample = _pyannote_sample_dir()
    audio = _read(sample / "sample.wav")
    reference = read_rttm(sample / "sample.rttm")
    rename = {f"speaker{sid.removeprefix('pyannote-sample-')}": sid for sid in pool if sid.startswith("pyan")}
    turns = tuple(RefTurn(t.start, t.end, rename.get(t.speaker, t.speaker)) for t in reference)
    people = [pool[sid] for sid in dict.fromkeys(t.speaker for t in turns) if sid in pool]
    tags = (set(_tags(spec, people)) | {"real", "overlap"}) - {"clean"}  # its RTTM has overlapping turns
    samples = telephone(audio) if spec.telephone else audio
    return Conversation(spec.name, samples, turns, frozenset(tags))


def _mixed_conversation(spec: _Spec, pool: Mapping[str, Speaker], rng: np.random.Generator) -> Conversation:
    people = [pool[sid] for sid in _draw_speakers(spec, pool, rng)]
    target = float(rng.uniform(35.0, 75.0))
    gains = {p.id: float(10 ** (rng.uniform(-_GAIN_DB, _GAIN_DB) / 20)) for p in people}
    queues = {p.id: [int(i) for i in rng.permutation(len(p.utterances))] for p in people}
    used = dict.fromkeys(queues, 0)

    def next_utterance(speaker: Speaker) -> FloatArray:
        order = queues[speaker.id]
        piece = speaker.utterances[order[used[speaker.id] % len(order)]]
        used[speaker.id] += 1
        return piece

    # Everyone speaks once in a drawn order, then a different speaker than the last each time.
    order = [people[int(i)] for i in rng.permutation(len(people))]
    placed: list[tuple[int, FloatArray, str]] = []  # start sample, signal, speaker
    cursor = round(rng.uniform(0.5, 1.5) * SAMPLE_RATE)
    while True:
        if order:
            speaker = order.pop(0)
        else:
            others = [p for p in people if p.id != placed[-1][2]]
            speaker = others[int(rng.integers(len(others)))]
        length = rng.uniform(*_TURN_S)
        parts: list[FloatArray] = []
        spoken = 0.0
        while spoken < length:
            piece = next_utterance(speaker)
            if parts and spoken + len(piece) / SAMPLE_RATE > _TURN_CAP_S:
                break
            if parts:
                parts.append(np.zeros(round(rng.uniform(*_PAUSE_IN_TURN_S) * SAMPLE_RATE), np.float32))
            parts.append(piece[: round(_TURN_CAP_S * SAMPLE_RATE)])
            spoken = sum(len(p) for p in parts) / SAMPLE_RATE
        signal = np.concatenate(parts) * np.float32(gains[speaker.id])
        start = cursor
        if placed and spec.overlap and rng.random() < _OVERLAP_SHARE:
            previous = placed[-1][1]
            limit = min(len(previous), len(signal)) / 2 / SAMPLE_RATE
            overlap = min(float(rng.uniform(*_OVERLAP_S)), limit)
            start = cursor - round(overlap * SAMPLE_RATE)
        elif placed:
            start = cursor + round(rng.uniform(*_GAP_S) * SAMPLE_RATE)
        placed.append((start, signal, speaker.id))
        cursor = start + len(signal)
        if cursor / SAMPLE_RATE >= target and not order:
            break
    total = cursor + round(rng.uniform(0.5, 1.0) * SAMPLE_RATE)
    mix = np.zeros(total, dtype=np.float64)
    for start, signal, _ in placed:
        mix[start : start + len(signal)] += signal
    mix += rng.standard_normal(total) * 10 ** (_NOISE_DBFS / 20)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.99:
        mix *= 0.99 / peak
    samples = mix.astype(np.float32)
    if spec.telephone:
        samples = telephone(samples)
    turns = tuple(
        RefTurn(round(s / SAMPLE_RATE, 3), round((s + len(x)) / SAMPLE_RATE, 3), sid) for s, x, sid in placed
    )
    return Conversation(spec.name, samples, turns, _tags(spec, people))


def conversations(
    seed: int, pool: Mapping[str, Speaker] | None = None, names: Sequence[str] | None = None
) -> list[Conversation]:
    """The conversation set for ``seed`` (the same for the same seed): 19 conversations of 2-4 speakers,
    30-90 s each; ``names`` picks some of them (e.g. ``QUICK``). ``pool`` saves reading the speakers again.

    Tags: "clean", "telephone", "overlap", "same-sex" / "mixed-sex" (two speakers, by measured F0), "real"
    (the pyannote sample and its telephone version), "<n>-speakers".
    """
    pool = speakers() if pool is None else pool
    chosen = [s for s in _SPECS if names is None or s.name in names]
    if names is not None and len(chosen) != len(set(names)):
        unknown = sorted(set(names) - {s.name for s in _SPECS})
        raise KeyError(f"unknown conversations {unknown}")
    result: list[Conversation] = []
    for spec in chosen:
        if not spec.sexes:
            result.append(_pyannote_conversation(spec, pool))
            continue
        index = next(i for i, s in enumerate(_SPECS) if s.name == spec.name)
        result.append(_mixed_conversation(spec, pool, np.random.default_rng([seed, index])))
    return result


def chunks(
    conv: Conversation, seconds: float, min_seconds: float = 4.0, min_turn_s: float = 0.5
) -> list[Conversation]:
    """``conv`` cut as the orchestrator cuts a file's audio: consecutive pieces of ``seconds`` (a last one
    shorter than ``min_seconds`` joins the one before), each with the reference turns inside it (times from
    the piece's start; a sliver of a turn shorter than ``min_turn_s`` at a cut is left out: nobody to count).
    Ids ``<id>@<k>``; tags are the conversation's, with the speaker count (and "same-sex" / "mixed-sex",
    which need both speakers) of the piece."""
    total = len(conv.samples)
    step = round(seconds * SAMPLE_RATE)
    bounds = list(range(0, total, step))
    if len(bounds) > 1 and total - bounds[-1] < min_seconds * SAMPLE_RATE:
        bounds.pop()
    pieces: list[Conversation] = []
    for index, start in enumerate(bounds):
        end = bounds[index + 1] if index + 1 < len(bounds) else total
        t0, t1 = start / SAMPLE_RATE, end / SAMPLE_RATE
        turns = tuple(
            RefTurn(round(max(t.start, t0) - t0, 3), round(min(t.end, t1) - t0, 3), t.speaker)
            for t in conv.turns
            if min(t.end, t1) - max(t.start, t0) >= min_turn_s
        )
        present = len({t.speaker for t in turns})
        tags = {tag for tag in conv.tags if not tag.endswith("-speakers")} | {f"{present}-speakers"}
        if present != 2:
            tags -= {"same-sex", "mixed-sex"}
        pieces.append(Conversation(f"{conv.id}@{index}", conv.samples[start:end], turns, frozenset(tags)))
    return pieces


def write_set(directory: Path, convs: Sequence[Conversation]) -> None:
    """Each conversation as ``<id>.wav`` (16-bit PCM) and ``<id>.rttm`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for conv in convs:
        soundfile.write(str(directory / f"{conv.id}.wav"), conv.samples, SAMPLE_RATE, subtype="PCM_16")
        (directory / f"{conv.id}.rttm").write_text(conv.rttm())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="List the corpus's speakers; write a conversation set.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write <id>.wav and <id>.rttm of every conversation here")
    args = parser.parse_args(argv)
    pool = speakers()
    for speaker in pool.values():
        print(
            f"{speaker.id:22} {speaker.source:22} {len(speaker.utterances):4d} utterances "
            f"{speaker.seconds:6.1f} s  F0 {speaker.f0_hz:6.1f} Hz  {speaker.sex}"
            f"{'' if speaker.sex_is_clear else ' (ambiguous)'}"
        )
    convs = conversations(args.seed, pool)
    for conv in convs:
        print(
            f"{conv.id:24} {conv.duration:5.1f} s  {','.join(conv.speakers):60} {' '.join(sorted(conv.tags))}"
        )
    if args.out is not None:
        write_set(args.out, convs)


if __name__ == "__main__":
    main()
