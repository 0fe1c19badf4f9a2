"""What a worker's pass over one partition commits to PostgreSQL (the pipeline's `Checkpoint`).

After each durable write the upsert stage hands over the files it marked done; the ledger adds the errors
the pass recorded since its last commit and the deltas of its work counters, and commits them under the
partition's ownership token (`ClusterStore.checkpoint`): a pass that lost its partition (another worker took
it over after this one went silent) raises `StaleCheckpoint` and its counts never land. The last commit
(`finish`) settles every name of the partition that nothing settled yet (not media, stored without a caption,
unchanged) and marks the partition done.
"""

from __future__ import annotations

import os

from orchestrator.distributed.store import Claim, ClusterStore, Settled
from orchestrator.file_index import IndexedFile
from orchestrator.pipeline.context import PipelineConfig
from orchestrator.pipeline.progress import JobProgress

# Counted from the settled rows themselves (exact), never from a pass's own counters.
_ROW_COUNTERS = frozenset({"done", "failed", "discovered", "unchanged"})


class PartitionLedger:
    def __init__(self, store: ClusterStore, claim: Claim, progress: JobProgress) -> None:
        self._store = store
        self._claim = claim
        self._progress = progress
        self._errors_sent = 0
        self._counters_sent: dict[str, int] = {}

    async def files_done(self, files: list[IndexedFile]) -> None:
        settled = [Settled(os.path.join(f.directory, f.name), "done", row=f) for f in files]
        await self._store.checkpoint(self._claim, self._new_errors() + settled, self._deltas(), final=False)

    async def flush(self) -> None:
        """Errors and counters recorded since the last commit (a stopped pass's last words)."""
        await self._store.checkpoint(self._claim, self._new_errors(), self._deltas(), final=False)

    async def finish(self) -> None:
        settled = self._new_errors()
        seen = {s.path for s in settled}
        directory = self._claim.directory
        for name in self._claim.names:  # already settled ones are left as they are (primary key)
            path = os.path.join(directory, name)
            if path not in seen:
                settled.append(Settled(path, "skipped"))
        await self._store.checkpoint(self._claim, settled, self._deltas(), final=True)

    def _new_errors(self) -> list[Settled]:
        errors = self._progress.errors[self._errors_sent :]
        self._errors_sent += len(errors)
        latest = {e.path: Settled(e.path, "failed", e.stage, e.reason) for e in errors}
        return list(latest.values())

    def _deltas(self) -> dict[str, int]:
        deltas = {}
        for key, value in self._progress.counters.items():
            if key in _ROW_COUNTERS:
                continue
            delta = value - self._counters_sent.get(key, 0)
            if delta:
                deltas[key] = delta
                self._counters_sent[key] = value
        return deltas


def redelivery_bound(config: PipelineConfig, slots: int) -> int:
    """The most chunks one worker can have had analysed by the ML service without their checkpoint committed:
    per slot, its infer workers' rounds (`infer_batch` chunks each), the infer -> upsert queue and the upsert
    batch being filled (one chunk per queued file at least). A worker killed at the worst moment costs at most
    this much ML work again (whoever takes its partitions over redoes it); the test of kill -9 checks it."""
    return slots * (config.infer_workers * config.infer_batch + config.queue_size + config.upsert_batch)
