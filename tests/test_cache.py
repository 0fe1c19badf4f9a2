from pathlib import Path

from orchestrator.cache import ResultCache, media_key, models_signature, result_key


def test_signature_changes_with_any_model_version() -> None:
    models = {"text": {"name": "minilm", "version": "1"}, "ocr": {"name": "rapidocr", "version": "a"}}
    base = models_signature(models, ["text", "ocr"])
    assert base == models_signature(dict(reversed(list(models.items()))), ["ocr", "text"])
    bumped = {**models, "ocr": {"name": "rapidocr", "version": "b"}}
    assert models_signature(bumped, ["text", "ocr"]) != base
    assert models_signature(models, ["text"]) != base


def test_keys_include_every_input() -> None:
    keys = {
        result_key("h", 0, "s"),
        result_key("h", 1, "s"),
        result_key("h", 0, "t"),
        result_key("g", 0, "s"),
    }
    assert len(keys) == 4
    assert media_key("h") != result_key("h", 0, "s")


async def test_set_many_get_many_roundtrip_and_persistence(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c")
    await cache.open()
    await cache.set_many({"k1": {"v": [1.5, 2.0]}, "k2": {"v": "x"}})
    assert await cache.get_many(["k1", "k2", "missing"]) == {"k1": {"v": [1.5, 2.0]}, "k2": {"v": "x"}}
    await cache.close()
    again = ResultCache(tmp_path / "c")
    await again.open()
    try:
        assert again.get_many_sync(["k2"]) == {"k2": {"v": "x"}}
    finally:
        await again.close()
