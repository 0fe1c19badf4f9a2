"""Instance groups with a small deterministic model: splitting, order, errors, threads, settings."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import pytest
from pydantic import ValidationError

from ml_service.config import LOCAL_IMAGE_TASKS, ImageTask, MLSettings
from ml_service.models.base import InferenceModel, ItemResult
from ml_service.models.instances import InstanceGroup, equal_shares

_ids = itertools.count()


@dataclass(frozen=True)
class Call:
    instance: int
    threads: int
    thread: str
    items: list[int]


class Doubler(InferenceModel[int, int]):
    """Doubles ints and records every call; a negative input makes its whole batch raise."""

    key: ClassVar[str] = "doubler"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "doubler"
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"

    def __init__(self, weights: Path, calls: list[Call], threads: int) -> None:
        super().__init__(threads=threads)
        self.weights = weights
        self.calls = calls
        self.id = next(_ids)
        self.loaded_on: str | None = None

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _load(self) -> None:
        self.loaded_on = threading.current_thread().name

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        self.calls.append(Call(self.id, self.threads, threading.current_thread().name, list(batch)))
        if any(x < 0 for x in batch):
            raise ValueError(f"negative input in {list(batch)}")
        return [ItemResult(value=2 * x) for x in batch]


class PooledDoubler(Doubler):
    """Like an OpenCV model: threads come from a process-wide pool, not from the instance."""

    threads_fixed_at_load: ClassVar[bool] = False


class OneByOneDoubler(Doubler):
    per_item_dispatch: ClassVar[bool] = True


class Broken(Doubler):
    """A bug, not a bad item: predict() itself raises (wrong number of results)."""

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        super()._predict_batch(batch)
        return []


@dataclass
class Setup:
    group: InstanceGroup[int, int]
    calls: list[Call]
    pool_sizes: list[int]  # every size the group gave the process-wide pool, in order
    built: list[Doubler]  # every instance the group made, in order (the lone-item one last)


class MakeGroup(Protocol):
    def __call__(
        self,
        model: type[Doubler] = ...,
        *,
        instances: int = ...,
        threads: int = ...,
        single_threads: int = ...,
    ) -> Setup: ...


@pytest.fixture
def make(tmp_path: Path) -> Iterator[MakeGroup]:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    groups: list[InstanceGroup[int, int]] = []

    def build(
        model: type[Doubler] = Doubler, *, instances: int = 2, threads: int = 1, single_threads: int = 2
    ) -> Setup:
        calls: list[Call] = []
        pool_sizes: list[int] = []
        built: list[Doubler] = []

        def one(threads: int) -> Doubler:
            built.append(model(weights, calls, threads))
            return built[-1]

        group = InstanceGroup(
            one,
            instances=instances,
            threads=threads,
            single_threads=single_threads,
            set_pool_threads=pool_sizes.append,
        )
        groups.append(group)
        group.load()
        return Setup(group, calls, pool_sizes, built)

    yield build
    for group in groups:
        group.close()


def test_equal_shares() -> None:
    assert equal_shares(8, 2) == [(0, 4), (4, 8)]
    assert equal_shares(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert equal_shares(2, 2) == [(0, 1), (1, 2)]


def test_batch_is_split_across_instances_in_order(make: MakeGroup) -> None:
    both_inside = threading.Barrier(2, timeout=10)

    class Meeting(Doubler):
        def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
            both_inside.wait()  # passes only while both instances are predicting at once
            return super()._predict_batch(batch)

    setup = make(Meeting, instances=2)
    assert [r.value for r in setup.group.predict(list(range(8)))] == [2 * x for x in range(8)]
    # Two equal contiguous shares, one per instance, each on a different thread.
    assert sorted(c.items for c in setup.calls) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len({c.instance for c in setup.calls}) == 2 and len({c.thread for c in setup.calls}) == 2
    assert all(c.threads == 1 for c in setup.calls)
    assert setup.pool_sizes[-1] == 1  # the process-wide pool was narrowed for the parallel run


def test_instances_run_where_they_were_loaded(make: MakeGroup) -> None:
    setup = make(instances=3, single_threads=1)
    setup.group.predict(list(range(9)))
    loaded = {i.id: i.loaded_on for i in setup.built}
    assert len(set(loaded.values())) == 3
    assert all(c.thread == loaded[c.instance] for c in setup.calls)


def test_lone_item_runs_on_every_thread(make: MakeGroup) -> None:
    setup = make(instances=2, threads=1, single_threads=2)
    assert setup.group.predict([5]) == [ItemResult(value=10)]
    [call] = setup.calls
    assert call.threads == 2 and call.thread == threading.current_thread().name
    assert setup.pool_sizes[-1] == 2
    # 3 items on 2 instances: a round of 2 in parallel, then the last one on every thread.
    setup.calls.clear()
    assert [r.value for r in setup.group.predict([1, 2, 3])] == [2, 4, 6]
    assert sorted((c.items, c.threads) for c in setup.calls) == [([1], 1), ([2], 1), ([3], 2)]
    assert setup.group.capabilities()["single_image_threads"] == 2


def test_pooled_model_widens_instance_zero_instead_of_a_copy(make: MakeGroup) -> None:
    setup = make(PooledDoubler, instances=2, threads=1, single_threads=2)
    assert len(setup.built) == 2  # no third instance for lone items
    setup.group.predict([1])
    assert setup.calls[-1].instance == setup.built[0].id
    assert setup.pool_sizes[-1] == 2


def test_without_a_lone_item_path_everything_is_split(make: MakeGroup) -> None:
    setup = make(instances=2, threads=1, single_threads=1)
    setup.group.predict([1])
    setup.group.predict([1, 2, 3])
    assert all(c.threads == 1 for c in setup.calls)
    assert setup.group.capabilities()["single_image_threads"] == 1


def test_bad_item_in_the_middle_fails_alone(make: MakeGroup) -> None:
    setup = make(instances=2, single_threads=1)
    results = setup.group.predict([1, 2, -3, 4, 5, 6])
    assert [r.value for r in results] == [2, 4, None, 8, 10, 12]
    assert results[2].error is not None and "negative input" in results[2].error
    assert [r.ok for r in results] == [True, True, False, True, True, True]


def test_per_item_dispatch_hands_out_one_item_at_a_time(make: MakeGroup) -> None:
    setup = make(OneByOneDoubler, instances=2, single_threads=1)
    assert [r.value for r in setup.group.predict(list(range(6)))] == [0, 2, 4, 6, 8, 10]
    assert sorted(c.items for c in setup.calls) == [[i] for i in range(6)]


def test_a_broken_instance_fails_the_batch(make: MakeGroup) -> None:
    setup = make(Broken, instances=2, single_threads=1)
    with pytest.raises(RuntimeError, match="0 results for"):
        setup.group.predict([1, 2, 3, 4])
    # The group is still usable afterwards (no helper thread left working on the old batch).
    with pytest.raises(RuntimeError, match="0 results for"):
        setup.group.predict([1, 2])


def test_capabilities_report_instances(make: MakeGroup) -> None:
    caps = make(instances=2, threads=1, single_threads=2).group.capabilities()
    assert (caps["instances"], caps["instance_threads"], caps["single_image_threads"]) == (2, 1, 2)
    assert caps["max_concurrency"] == 1 and str(caps["version"]).endswith("-p1")


# --- settings ------------------------------------------------------------------------------------


def test_instance_defaults_fill_the_thread_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_CPU_THREADS", "4")
    settings = MLSettings()
    pairs = [(settings.instances_for(t), settings.threads_per_instance(t)) for t in LOCAL_IMAGE_TASKS]
    assert pairs == [(4, 1)] * 4
    monkeypatch.setenv("ML_IMAGE_INSTANCES", '{"objects": 1, "ocr": 2}')
    settings = MLSettings()
    assert (
        settings.instances_for(ImageTask.OBJECTS) == 1
        and settings.threads_per_instance(ImageTask.OBJECTS) == 4
    )
    assert settings.instances_for(ImageTask.OCR) == 2 and settings.threads_per_instance(ImageTask.OCR) == 2
    assert settings.instances_for(ImageTask.TAGS) == 4


@pytest.mark.parametrize(
    ("instances", "threads"),
    [("3", None), ("2", "2"), ('{"ocr": 3}', None), ('{"captions": 1}', None), ("0", None)],
)
def test_oversubscribing_or_bad_instances_are_rejected(
    monkeypatch: pytest.MonkeyPatch, instances: str, threads: str | None
) -> None:
    monkeypatch.setenv("ML_CPU_THREADS", "2")
    monkeypatch.setenv("ML_IMAGE_INSTANCES", instances)
    if threads is not None:
        monkeypatch.setenv("ML_IMAGE_INSTANCE_THREADS", threads)
    with pytest.raises(ValidationError):
        MLSettings()
