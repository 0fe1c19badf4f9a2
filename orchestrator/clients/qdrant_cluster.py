"""How a Qdrant server or cluster lays out and orders our collections (QDRANT_SHARD_NUMBER, ...).

A module that imports nothing, so the settings can name these types without loading qdrant-client.

- shard_number, replication_factor, write_consistency_factor: given when a collection is created (the main
  collection and its companions alike); unset, the server's own default (its config, usually 1).
- write_ordering: sent with every write. `strong` by default: in distributed mode several workers write the
  same points (a content found under paths in two jobs, payload merges, deletes when its last path goes),
  and with replicas (replication_factor > 1) `weak` lets two replicas apply two such writes in opposite
  orders and stay different for good; `medium` still may while a shard's leader changes. `strong` sends a
  shard's writes through its one permanent leader: every replica applies them in the same order. The cost is
  availability: while that leader's node is down the shard's writes fail, which the pipeline already
  survives (a failed write fails its unit before the file is marked done; releases are recorded and paid
  later), whereas a reordered write is silent. With one replica the three are the same. Ordering does not
  make a read-merge-write (retrieve `paths`, set the merged list) atomic between two workers: that needs the
  two not to write the same point at once, whatever the ordering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WriteOrdering = Literal["weak", "medium", "strong"]


@dataclass(frozen=True, slots=True)
class QdrantCluster:
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    write_ordering: WriteOrdering = "strong"

    def __post_init__(self) -> None:
        for name, value in self.collection_params().items():
            if value < 1:
                raise ValueError(f"Qdrant {name} must be at least 1, got {value}")
        factor, replicas = self.write_consistency_factor, self.replication_factor
        if factor is not None and replicas is not None and factor > replicas:
            # Every write would wait for more replicas than exist, and fail.
            raise ValueError(
                f"QDRANT_WRITE_CONSISTENCY_FACTOR ({factor}) exceeds QDRANT_REPLICATION_FACTOR ({replicas})"
            )

    def collection_params(self) -> dict[str, int]:
        """The creation parameters that are set (create_collection keywords); unset ones: the server's."""
        given = {
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
            "write_consistency_factor": self.write_consistency_factor,
        }
        return {name: value for name, value in given.items() if value is not None}
