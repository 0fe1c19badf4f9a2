"""The procrastinate side: the app, the two task names and how to defer them (API nodes and workers alike).

`archivist.scan` lists one directory (its files into partitions, its subdirectories into scans);
`archivist.partition` runs the four-stage pipeline over one partition. Each is deferred with a queueing lock
(the scan's or the partition's id): deferring again while one waits is refused by procrastinate
(`AlreadyEnqueued`), so a scan or a resume that defers twice queues one task.
"""

from __future__ import annotations

import uuid

import procrastinate
from procrastinate import exceptions

from orchestrator.distributed.connection import ClosingConnection
from orchestrator.distributed.store import scan_id

QUEUE = "archivist"
SCAN_TASK = "archivist.scan"
PARTITION_TASK = "archivist.partition"


def queue_app(database_url: str) -> procrastinate.App:
    # (procrastinate's pool checks each connection it hands out: one from before a restart is replaced; its
    # LISTEN connection is made with the pool's connection class too)
    connector = procrastinate.PsycopgConnector(conninfo=database_url, connection_class=ClosingConnection)
    return procrastinate.App(connector=connector)


async def defer_scan(app: procrastinate.App, job_id: str, directory: str) -> None:
    deferrer = app.configure_task(SCAN_TASK, queue=QUEUE, queueing_lock=f"s:{scan_id(job_id, directory)}")
    try:
        await deferrer.defer_async(job_id=job_id, directory=directory)
    except exceptions.AlreadyEnqueued:
        pass


async def defer_partition(app: procrastinate.App, partition: uuid.UUID) -> None:
    deferrer = app.configure_task(PARTITION_TASK, queue=QUEUE, queueing_lock=f"p:{partition}")
    try:
        await deferrer.defer_async(partition=str(partition))
    except exceptions.AlreadyEnqueued:
        pass
