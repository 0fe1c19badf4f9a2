"""Request and response bodies at the HTTP edge (pydantic lives here and nowhere deeper).

Request bodies refuse unknown fields (422) and take their flags strictly: `"false"` or `0` is not a bool.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

COLLECTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobOptions(_Request):
    """What a job may change about one run (the pipeline reads them from `Job.options`, a dict)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_hidden: bool | None = Field(
        default=None, description="Ingest names starting with a dot; unset: INCLUDE_HIDDEN"
    )
    prune: bool = Field(default=True, description="Remove points of files gone since the last scan")
    retry_failed: bool = Field(
        default=False, description="Process again the files that failed in an earlier run, though unchanged"
    )

    def as_job_options(self) -> dict[str, Any]:
        """The dict a job carries: unset options are left out, so the settings' defaults apply."""
        return self.model_dump(exclude_none=True)


class JobCreate(_Request):
    path: str = Field(
        min_length=1, max_length=4096, description="Absolute path of a directory under one of ALLOWED_ROOTS"
    )
    collection: str | None = Field(default=None, pattern=COLLECTION_NAME)
    options: JobOptions = Field(default_factory=JobOptions)


class IngestAlias(_Request):
    """Seed-compatible body of POST /ingest."""

    directory_path: str = Field(min_length=1, max_length=4096)
    collection: str | None = Field(default=None, pattern=COLLECTION_NAME)
    options: JobOptions = Field(default_factory=JobOptions)


# What a re-analysis may ask again, cached or not (the image tasks, the image–text vector, the audio tasks).
ReanalyzeTask = Literal["ocr", "faces", "tags", "objects", "caption", "image_text", "asr", "speakers"]


class ReanalyzeBody(_Request):
    tasks: list[ReanalyzeTask] | None = Field(
        default=None,
        max_length=8,
        description="Tasks to run again whatever the cache holds; unset: what the models changed",
    )


class JobAccepted(BaseModel):
    job_id: str
    state: str
    status_url: str


MediaType = Literal["image", "video", "audio"]


class SearchFilters(_Request):
    """What narrows a search (GET /search takes the same as query parameters)."""

    collection: str | None = Field(default=None, pattern=COLLECTION_NAME)
    limit: int = Field(default=10, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=800, description="the previous page's next_offset")
    group_by: Literal["media"] | None = Field(
        default=None, description="media: the best moment per file, its other moments under it"
    )
    mode: Literal["hybrid", "dense", "keyword"] = Field(
        default="hybrid", description="hybrid: meaning and keywords fused; dense: meaning; keyword: words"
    )
    media_type: MediaType | None = None
    path_prefix: str | None = Field(default=None, max_length=4096)
    taken_after: float | None = Field(default=None, description="epoch seconds")
    taken_before: float | None = None
    ingested_after: float | None = Field(default=None, description="epoch seconds")
    ingested_before: float | None = None
    person: str | None = Field(
        default=None, max_length=200, description="a person's id or name: seen or heard"
    )
    speaker: str | None = Field(
        default=None, max_length=200, description="a person's id or name: speaks (the matched words)"
    )
    has_text: bool | None = Field(default=None, description="words read on screen or spoken")
    min_duration_s: float | None = Field(default=None, ge=0)
    max_duration_s: float | None = Field(default=None, ge=0)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")


class SearchBody(SearchFilters):
    """Words (`query`), or an example: a stored moment (`media_id`) or an image (`image_base64`)."""

    query: str | None = Field(default=None, min_length=1, max_length=2000)
    media_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{36}$")
    image_base64: str | None = Field(default=None, min_length=4, description="an image file, base64")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchBody:
        given = [n for n in ("query", "media_id", "image_base64") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of query, media_id, image_base64")
        return self


class PersonPatch(_Request):
    name: str | None = Field(max_length=200, description="the person's name; null or empty clears it")


class PersonMerge(_Request):
    people: list[str] = Field(min_length=1, max_length=1000, description="the people merged into this one")


class PersonSplit(_Request):
    clusters: list[str] = Field(
        min_length=1, max_length=1000, description="this person's face/voice clusters to move to a new person"
    )
