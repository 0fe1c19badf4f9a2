"""The collection catalog: each collection's versions (which store collection holds its points, built with
which manifest), the version searches read, and the roots its files came from.

A collection name users see is an alias: its `current` version's physical collection answers searches.
Version 1 of a collection is stored under the collection's own name (collections from before versions
need no move); a rebuild writes version n under `<name>__v<n>` while the current one keeps answering, and
`switch` makes it current in one SQLite transaction (the alias switch: atomic, survives kill -9). The
old version is `retired`: kept, searchable by nobody, until deleted (`forget_version`, or retention).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from orchestrator.manifest import Manifest
from orchestrator.sqlite_db import SqliteDb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    collection  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    physical    TEXT NOT NULL,
    state       TEXT NOT NULL,      -- building | current | retired
    manifest    TEXT NOT NULL,      -- JSON (manifest.Manifest)
    created_at  REAL NOT NULL,
    switched_at REAL,
    PRIMARY KEY (collection, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roots (
    collection TEXT NOT NULL,
    root       TEXT NOT NULL,
    PRIMARY KEY (collection, root)
) WITHOUT ROWID;
-- The tenant a collection belongs to (tenancy.py); a collection without a row is the operator's.
CREATE TABLE IF NOT EXISTS owners (
    collection TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL
) WITHOUT ROWID;
"""

State = Literal["building", "current", "retired"]
# The suffix of a rebuilt version's physical collection: `<name>__v<n>`.
VERSION_SUFFIX = "__v"


def physical_name(collection: str, version: int) -> str:
    return collection if version == 1 else f"{collection}{VERSION_SUFFIX}{version}"


@dataclass(frozen=True, slots=True)
class CollectionVersion:
    collection: str
    version: int
    physical: str
    state: State
    manifest: Manifest
    created_at: float
    switched_at: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "physical": self.physical,
            "state": self.state,
            "models": self.manifest.models,
            "plans": self.manifest.plans,
            "pipeline": self.manifest.pipeline,
            "created_at": self.created_at,
            "switched_at": self.switched_at,
        }


_COLUMNS = "collection, version, physical, state, manifest, created_at, switched_at"
_Row = tuple[str, int, str, str, str, float, float | None]


def _version(row: _Row) -> CollectionVersion:
    state: State = "current" if row[3] == "current" else "building" if row[3] == "building" else "retired"
    manifest = Manifest.from_json(orjson.loads(row[4]))
    return CollectionVersion(row[0], int(row[1]), row[2], state, manifest, float(row[5]), row[6])


class Catalog(SqliteDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, "catalog")

    async def versions(self, collection: str) -> list[CollectionVersion]:
        return await self.run(self._versions, collection)

    def _versions(self, collection: str) -> list[CollectionVersion]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE collection = ? ORDER BY version", (collection,)
        ).fetchall()
        return [_version(r) for r in rows]

    async def current(self, collection: str) -> CollectionVersion | None:
        return next((v for v in await self.versions(collection) if v.state == "current"), None)

    async def building(self, collection: str) -> CollectionVersion | None:
        return next((v for v in await self.versions(collection) if v.state == "building"), None)

    async def resolve(self, collection: str) -> str:
        """The physical collection that answers for `collection` (its own name when it has no versions)."""
        current = await self.current(collection)
        return collection if current is None else current.physical

    async def physical_names(self) -> dict[str, tuple[str, int, State]]:
        """Every physical collection a version owns -> (collection, version, state)."""
        return await self.run(self._physical_names)

    def _physical_names(self) -> dict[str, tuple[str, int, State]]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM versions").fetchall()
        return {v.physical: (v.collection, v.version, v.state) for v in map(_version, rows)}

    async def register(self, collection: str, manifest: Manifest) -> CollectionVersion:
        """Version 1, current, stored under the collection's own name (a new or a pre-version collection)."""
        await self.run(self._insert, collection, 1, "current", manifest)
        current = await self.current(collection)
        if current is None:  # another version took the name's place (a rebuild switched meanwhile)
            raise RuntimeError(f"collection {collection} has versions but none is current")
        return current

    async def start_build(self, collection: str, manifest: Manifest) -> CollectionVersion:
        """A new version being built beside the current one (numbered after every version so far)."""
        versions = await self.versions(collection)
        number = max((v.version for v in versions), default=0) + 1
        await self.run(self._insert, collection, number, "building", manifest)
        return next(v for v in await self.versions(collection) if v.version == number)

    def _insert(self, collection: str, version: int, state: State, manifest: Manifest) -> None:
        with self.conn:
            self.conn.execute(
                f"INSERT OR IGNORE INTO versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    collection,
                    version,
                    physical_name(collection, version),
                    state,
                    orjson.dumps(manifest.to_json()).decode(),
                    time.time(),
                ),
            )

    async def set_manifest(self, collection: str, version: int, manifest: Manifest) -> None:
        def update() -> None:
            with self.conn:
                self.conn.execute(
                    "UPDATE versions SET manifest = ? WHERE collection = ? AND version = ?",
                    (orjson.dumps(manifest.to_json()).decode(), collection, version),
                )

        await self.run(update)

    async def switch(self, collection: str, version: int) -> None:
        """Make `version` current and the current one retired, in one transaction (the alias switch)."""

        def switch() -> None:
            with self.conn:
                self.conn.execute(
                    "UPDATE versions SET state = 'retired' WHERE collection = ? AND state = 'current'",
                    (collection,),
                )
                self.conn.execute(
                    "UPDATE versions SET state = 'current', switched_at = ?"
                    " WHERE collection = ? AND version = ?",
                    (time.time(), collection, version),
                )

        await self.run(switch)

    async def forget_version(self, collection: str, version: int) -> None:
        def forget() -> None:
            with self.conn:
                self.conn.execute(
                    "DELETE FROM versions WHERE collection = ? AND version = ?", (collection, version)
                )

        await self.run(forget)

    async def forget(self, collection: str) -> None:
        def forget() -> None:
            with self.conn:
                self.conn.execute("DELETE FROM versions WHERE collection = ?", (collection,))
                self.conn.execute("DELETE FROM roots WHERE collection = ?", (collection,))
                self.conn.execute("DELETE FROM owners WHERE collection = ?", (collection,))

        await self.run(forget)

    async def owner(self, collection: str) -> str | None:
        """The tenant that owns `collection`; None: nobody (the operator's, or not made yet)."""

        def owner() -> str | None:
            row = self.conn.execute(
                "SELECT tenant FROM owners WHERE collection = ?", (collection,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.run(owner)

    async def claim(self, collection: str, tenant: str, exists: bool) -> str | None:
        """Make `tenant` the owner of `collection` unless someone owns it, or it `exists` already (made
        before tenants, or by the operator: not the tenant's to take). Returns the owner after the call."""

        def claim() -> str | None:
            with self.conn:
                if not exists:
                    self.conn.execute(
                        "INSERT OR IGNORE INTO owners (collection, tenant) VALUES (?, ?)",
                        (collection, tenant),
                    )
                row = self.conn.execute(
                    "SELECT tenant FROM owners WHERE collection = ?", (collection,)
                ).fetchone()
            return None if row is None else str(row[0])

        return await self.run(claim)

    async def owned(self, tenant: str) -> set[str]:
        def owned() -> set[str]:
            rows = self.conn.execute("SELECT collection FROM owners WHERE tenant = ?", (tenant,)).fetchall()
            return {str(r[0]) for r in rows}

        return await self.run(owned)

    async def add_root(self, collection: str, root: str) -> None:
        def add() -> None:
            with self.conn:
                self.conn.execute("INSERT OR IGNORE INTO roots VALUES (?, ?)", (collection, root))

        await self.run(add)

    async def roots(self, collection: str) -> list[str]:
        """The roots files of the collection came from; one inside another is left out (walked with it)."""

        def roots() -> list[str]:
            rows = self.conn.execute(
                "SELECT root FROM roots WHERE collection = ? ORDER BY root", (collection,)
            ).fetchall()
            return [str(r[0]) for r in rows]

        every = await self.run(roots)
        return [r for r in every if not any(o != r and Path(r).is_relative_to(o) for o in every)]
