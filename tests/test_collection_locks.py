"""Ingests share a collection; a re-analysis has it alone, and goes before ingests that come after it."""

from __future__ import annotations

import asyncio

from orchestrator.collection_locks import CollectionLocks


async def test_shared_holders_run_together_and_exclusive_waits_for_them() -> None:
    locks = CollectionLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def reader(name: str, hold: asyncio.Event | None = None) -> None:
        async with locks.shared("c"):
            order.append(f"{name}+")
            if hold is not None:
                first_in.set()
                await hold.wait()
            order.append(f"{name}-")

    async def writer() -> None:
        async with locks.exclusive("c"):
            order.append("w+")
            order.append("w-")

    r1 = asyncio.create_task(reader("r1", release_first))
    await asyncio.wait_for(first_in.wait(), 5)
    w = asyncio.create_task(writer())
    await asyncio.sleep(0)
    r2 = asyncio.create_task(reader("r2"))  # came after the writer: waits behind it
    async with locks.shared("other"):  # another collection is not held up
        pass
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["r1+"] and locks.busy("c")
    release_first.set()
    await asyncio.wait_for(asyncio.gather(r1, w, r2), 5)
    assert order == ["r1+", "r1-", "w+", "w-", "r2+", "r2-"]
    assert not locks.busy("c")


async def test_a_cancelled_waiter_leaves_nothing_held() -> None:
    locks = CollectionLocks()
    holding = asyncio.Event()
    done = asyncio.Event()

    async def hold() -> None:
        async with locks.shared("c"):
            holding.set()
            await done.wait()

    holder = asyncio.create_task(hold())
    await asyncio.wait_for(holding.wait(), 5)
    waiter = asyncio.create_task(locks.exclusive("c").__aenter__())
    for _ in range(3):
        await asyncio.sleep(0)

    async def read() -> None:
        async with locks.shared("c"):
            pass

    reader = asyncio.create_task(read())  # waits behind the writer
    for _ in range(3):
        await asyncio.sleep(0)
    assert not reader.done()
    waiter.cancel()  # the ingest holding the collection ends later: the waiting one then runs, not never
    await asyncio.gather(waiter, return_exceptions=True)
    done.set()
    await asyncio.wait_for(asyncio.gather(holder, reader), 5)
    assert not locks.busy("c")
