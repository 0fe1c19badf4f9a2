"""Request and response bodies at the HTTP edge (pydantic lives here and nowhere deeper)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class JobCreate(BaseModel):
    path: str = Field(description="Absolute path of a directory under one of ALLOWED_ROOTS")
    collection: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    options: dict[str, Any] = Field(default_factory=dict)


class IngestAlias(BaseModel):
    """Seed-compatible body of POST /ingest."""

    directory_path: str
    collection: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class JobAccepted(BaseModel):
    job_id: str
    state: str
    status_url: str


class SearchBody(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    collection: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    limit: int = Field(default=10, ge=1, le=200)
    media_type: str | None = None
    path_prefix: str | None = None
    taken_after: float | None = None
    taken_before: float | None = None
    person: str | None = Field(default=None, max_length=64)
