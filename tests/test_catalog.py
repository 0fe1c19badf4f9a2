"""The collection catalog: versions, the alias switch, roots; it survives a reopen (a restart)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.catalog import Catalog
from orchestrator.manifest import Manifest

OLD = Manifest(models={"text": "minilm@1"}, plans={})
NEW = Manifest(models={"text": "minilm@2"}, plans={})


async def test_versions_switch_and_survive_a_reopen(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    await catalog.open()
    try:
        assert await catalog.resolve("photos") == "photos"  # not versioned yet: its own name
        first = await catalog.register("photos", OLD)
        assert (first.version, first.physical, first.state) == (1, "photos", "current")
        assert (await catalog.register("photos", NEW)).manifest == OLD  # registering twice changes nothing
        building = await catalog.start_build("photos", NEW)
        assert (building.version, building.physical, building.state) == (2, "photos__v2", "building")
        assert await catalog.resolve("photos") == "photos"  # searches stay on version 1 while it builds
        await catalog.switch("photos", 2)
    finally:
        await catalog.close()
    reopened = Catalog(tmp_path / "catalog.sqlite3")
    await reopened.open()
    try:
        assert await reopened.resolve("photos") == "photos__v2"
        states = [(v.version, v.state) for v in await reopened.versions("photos")]
        assert states == [(1, "retired"), (2, "current")]
        current = await reopened.current("photos")
        assert current is not None and current.manifest == NEW and current.switched_at is not None
        assert await reopened.physical_names() == {
            "photos": ("photos", 1, "retired"),
            "photos__v2": ("photos", 2, "current"),
        }
        await reopened.forget_version("photos", 1)
        assert [v.version for v in await reopened.versions("photos")] == [2]
        third = await reopened.start_build("photos", OLD)
        assert third.version == 3  # numbers are never reused
    finally:
        await reopened.close()


async def test_roots_inside_another_root_are_walked_with_it(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    await catalog.open()
    try:
        for root in ("/media/a/b", "/media/a", "/media/ab", "/media/a"):
            await catalog.add_root("c", root)
        assert await catalog.roots("c") == ["/media/a", "/media/ab"]
        await catalog.forget("c")
        assert await catalog.roots("c") == [] and await catalog.versions("c") == []
    finally:
        await catalog.close()
