"""scripts/speech_corpus.py: real speakers, their measured sex, and conversations with true reference turns.

Needs Debian's klettres-data and pocketsphinx-testdata (scripts/test.sh installs them): without them these
tests fail with ``CorpusMissing`` naming the packages, never skip.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from scripts import speech_corpus
from scripts.speech_corpus import (
    SAMPLE_RATE,
    Conversation,
    CorpusMissing,
    Speaker,
    conversations,
    load_speaker,
    speakers,
    telephone,
    utterances_of,
    voiced_f0,
)


@pytest.fixture(scope="module")
def pool() -> dict[str, Speaker]:
    return speakers()


@pytest.fixture(scope="module")
def conversation_set(pool: dict[str, Speaker]) -> list[Conversation]:
    return conversations(0, pool)


def _band_share_above(samples: np.ndarray, hz: float) -> float:
    """Share of the signal's energy above ``hz``."""
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    return float(power[freqs > hz].sum() / power.sum())


def test_missing_packages_fail_with_the_apt_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(speech_corpus, "KLETTRES_DIR", tmp_path / "klettres")
    with pytest.raises(CorpusMissing, match="apt-get install klettres-data pocketsphinx-testdata"):
        speech_corpus.speaker_ids()


def test_yin_measures_the_fundamental_of_a_harmonic_tone() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for f0 in (110.0, 220.0):
        tone = np.sum([np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)], axis=0).astype(np.float32)
        assert np.median(voiced_f0(0.3 * tone)) == pytest.approx(f0, rel=0.03)
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    assert len(voiced_f0(0.3 * noise)) < 10  # white noise has (almost) no voiced frame


def test_speakers_are_real_people_with_a_measured_sex(pool: dict[str, Speaker]) -> None:
    assert len(pool) >= 20
    for required in ("klettres-en", "klettres-en_GB", "librivox", "cards", "pyannote-sample-90"):
        assert required in pool
    for speaker in pool.values():
        assert speaker.seconds >= 8.0, speaker.id
        assert all(u.dtype == np.float32 and np.isfinite(u).all() for u in speaker.utterances)
        assert 60.0 < speaker.f0_hz < 400.0, speaker.id
    # Voices whose sex is well known (a LibriVox man, KLettres' English woman and French man).
    assert (pool["librivox"].sex, pool["klettres-fr"].sex, pool["klettres-en_GB"].sex) == ("m", "m", "f")
    assert {s.sex for s in pool.values() if s.sex_is_clear} == {"m", "f"}


def test_the_set_is_deterministic_and_covers_every_kind(
    pool: dict[str, Speaker], conversation_set: list[Conversation]
) -> None:
    assert len(conversation_set) >= 16
    again = conversations(0, pool, names=["clean-mf-a", "overlap-mf"])
    first = {c.id: c for c in conversation_set}
    for conv in again:
        assert np.array_equal(conv.samples, first[conv.id].samples) and conv.turns == first[conv.id].turns
    other = conversations(1, pool, names=["clean-mf-a"])[0]
    assert other.turns != first["clean-mf-a"].turns
    tags = set().union(*(c.tags for c in conversation_set))
    assert {"clean", "telephone", "overlap", "same-sex", "mixed-sex", "real"} <= tags
    assert {"2-speakers", "3-speakers", "4-speakers"} <= tags
    assert sum("same-sex" in c.tags for c in conversation_set) >= 4


def test_reference_turns_match_the_audio(conversation_set: list[Conversation]) -> None:
    for conv in conversation_set:
        assert 2 <= conv.n_speakers <= 4, conv.id
        assert 29.9 <= conv.duration <= 90.0, conv.id
        assert conv.samples.dtype == np.float32 and float(np.max(np.abs(conv.samples))) <= 1.0
        for turn in conv.turns:
            assert 0.0 <= turn.start < turn.end <= conv.duration, (conv.id, turn)
        # Speech where the reference says so: the turns are far louder than the gaps between them.
        level = speech_corpus._frame_db(conv.samples)
        inside = np.zeros(len(level), dtype=bool)
        for turn in conv.turns:
            inside[round(turn.start * 100) : round(turn.end * 100)] = True
        power_in, power_out = (10 * np.log10(np.mean(10 ** (level[m] / 10))) for m in (inside, ~inside))
        assert power_in > power_out + 15.0, conv.id
        rttm = conv.rttm().splitlines()
        assert len(rttm) == len(conv.turns) and rttm[0].startswith(f"SPEAKER {conv.id} 1 ")


def test_overlaps_only_where_tagged(conversation_set: list[Conversation]) -> None:
    for conv in conversation_set:
        turns = sorted(conv.turns)
        overlaps = [a.end - b.start for a, b in itertools.pairwise(turns) if b.start < a.end]
        if "overlap" in conv.tags and "real" not in conv.tags:
            assert overlaps and all(0.0 < o <= 1.5 + 1e-3 for o in overlaps), conv.id
        elif "overlap" not in conv.tags:
            assert overlaps == [], conv.id


def test_telephone_band_has_nothing_above_4_khz(conversation_set: list[Conversation]) -> None:
    wide = next(c for c in conversation_set if c.id == "clean-mf-a").samples  # klettres: full band
    narrow = telephone(wide)
    assert _band_share_above(wide, 4000.0) > 1e-3
    assert _band_share_above(narrow, 4000.0) < 1e-5
    assert _band_share_above(narrow, 3600.0) < 1e-3  # the 300-3400 Hz telephone band
    assert len(narrow) == len(wide) and float(np.std(narrow)) > 0.3 * float(np.std(wide))  # speech kept
    for conv in conversation_set:
        if "telephone" in conv.tags:
            assert _band_share_above(conv.samples, 4000.0) < 1e-5, conv.id


def test_utterances_of_a_speaker_for_test_videos() -> None:
    audio = utterances_of("klettres-en_GB", 8.0)
    assert audio.shape == (8 * SAMPLE_RATE,) and audio.dtype == np.float32
    assert np.array_equal(audio, utterances_of("klettres-en_GB", 8.0))
    assert float(np.sqrt(np.mean(audio**2))) > 0.01  # mostly speech, at the corpus's level
    assert not np.array_equal(audio[:SAMPLE_RATE], utterances_of("librivox", 1.0))
    with pytest.raises(KeyError):
        load_speaker("klettres-xx")
