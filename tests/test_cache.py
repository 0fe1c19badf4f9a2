from pathlib import Path

from orchestrator.cache import ResultCache, media_key, task_key, text_key


def test_task_keys_include_every_input() -> None:
    base = ("h", "plan", 0, "ocr", "rapidocr@a")
    variants = [
        ("g", "plan", 0, "ocr", "rapidocr@a"),
        ("h", "plan2", 0, "ocr", "rapidocr@a"),
        ("h", "plan", 1, "ocr", "rapidocr@a"),
        ("h", "plan", 0, "faces", "rapidocr@a"),
        ("h", "plan", 0, "ocr", "rapidocr@b"),
    ]
    keys = {task_key(*base), *(task_key(*v) for v in variants)}
    assert len(keys) == 1 + len(variants)
    assert text_key("minilm@1", "a cat") != text_key("minilm@2", "a cat")
    assert text_key("minilm@1", "a cat") != text_key("minilm@1", "a dog")
    assert media_key("h", "plan") != media_key("h", "plan2")


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
