"""Orchestrator settings: environment first (pydantic-settings), documented in .env.example."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.clients.qdrant_cluster import QdrantCluster, WriteOrdering
from orchestrator.clients.vector_params import EDGE_SUBDIR
from orchestrator.hosts import is_loopback_host
from orchestrator.sources.addresses import IPNetwork, parse_networks
from orchestrator.tenancy import TenantKeys


class Settings(BaseSettings):
    """Everything the orchestrator can be told; one instance is passed down explicitly."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8002
    log_level: str = "INFO"
    log_json: bool = True

    # Security: nothing is ingested outside these roots (comma- or os.pathsep-separated absolute paths).
    allowed_roots: str = ""
    api_key: str | None = None
    # Tenants and their keys ("tenant:key,…", orchestrator/tenancy.py): a tenant's key reaches only the
    # collections it owns; API_KEY stays the operator's (every collection).
    tenant_keys: str = ""
    # Listening beyond loopback without an API key is refused unless this is set deliberately.
    allow_unauthenticated: bool = False
    # Host header names the API answers (comma-separated; HOST is added when it names one address); any
    # other is refused with 400, so a web page that rebinds its DNS name to 127.0.0.1 cannot reach us.
    # "*" turns the check off.
    trusted_hosts: str = "localhost,127.0.0.1,::1"
    # Largest request body in bytes (JSON bodies are small); a larger one is answered 413.
    max_request_bytes: int = 1 << 20
    # Files that arrive over HTTP (POST /uploads, tus uploads, URL and text jobs) are kept under UPLOAD_DIR
    # (unset: DATA_DIR/uploads), always an allowed ingest root beside ALLOWED_ROOTS.
    upload_dir: Path | None = None
    # Largest upload in bytes (POST /uploads body, a tus Upload-Length); a larger one is answered 413 and
    # nothing of it is kept. Those routes are exempt from MAX_REQUEST_BYTES.
    max_upload_bytes: int = Field(default=8 << 30, ge=1)
    # URL jobs: a download larger than URL_MAX_BYTES or longer than URL_TIMEOUT_S (the whole download)
    # fails the job. Only public addresses are fetched unless one is in URL_ALLOWED_NETWORKS (comma-separated
    # CIDRs, e.g. 10.0.0.0/8 for an intranet): private, loopback, link-local, multicast, reserved refused.
    url_max_bytes: int = Field(default=8 << 30, ge=1)
    url_timeout_s: float = Field(default=3600.0, gt=0)
    url_allowed_networks: str = ""
    # Live streams (POST /streams: rtsp:// or an HLS .m3u8; the host is judged like a URL job's): recorded
    # into segments of about CHUNK_SECONDS under UPLOAD_DIR/.streams. At most STREAM_BUFFER_SEGMENTS closed
    # segments wait for ingest (the oldest beyond are dropped unprocessed); segments older than
    # STREAM_RETENTION_HOURS (a stream's options.retention_hours wins) are deleted with their points. A
    # dropped connection is opened again after a wait that doubles up to STREAM_RECONNECT_MAX_S.
    stream_buffer_segments: int = Field(default=20, ge=1)
    stream_retention_hours: float = Field(default=24.0, gt=0)
    stream_reconnect_max_s: float = Field(default=30.0, gt=0)
    # Object storage (a job's path s3://bucket/prefix): S3_ENDPOINT_URL unset is AWS S3; set, any
    # S3-compatible store (MinIO, Ceph, R2...), addressed path-style. Credentials come from here (unset:
    # boto3's own chain: AWS_* environment, shared files, instance role), never from a request. A bucket
    # is read only when S3_ALLOWED_BUCKETS (comma-separated) names it: the object-store ALLOWED_ROOTS.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_allowed_buckets: str = ""
    # Changed objects are downloaded into DATA_DIR/.spool for prepare to read: at most S3_SPOOL_BYTES at
    # once (downloads wait while it is full; a larger object fails with a reason), S3_DOWNLOAD_WORKERS at
    # a time.
    s3_spool_bytes: int = Field(default=8 << 30, ge=1)
    s3_download_workers: int = Field(default=4, ge=1, le=64)

    # Distributed mode (README "Many machines"): DATABASE_URL set (a libpq URL) -> PostgreSQL holds jobs,
    # partitions, the shared file index and progress; `archivist worker` processes claim partitions and
    # `archivist serve` only answers the API. It needs a Qdrant server (QDRANT_URL). Unset: one machine.
    database_url: str | None = None
    worker_slots: int = Field(default=2, ge=1, le=64)  # partitions one worker runs at once
    # A directory's files are cut into partitions of at most this many files and bytes (a scan task
    # inserts them; a worker claims one at a time per slot).
    partition_files: int = Field(default=1000, ge=1, le=100_000)
    partition_bytes: int = Field(default=64 << 30, ge=1)
    # Workers beat every WORKER_HEARTBEAT_S; one silent for WORKER_STALL_S is taken as dead and its
    # partitions go to another worker (resumed at their checkpoint).
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    worker_stall_s: float = Field(default=15.0, gt=0)
    # Where thumbnails are written and served from (unset: DATA_DIR/thumbnails). In the distributed mode the
    # workers write them and the API nodes serve them: one directory every node mounts.
    shared_thumbnails_dir: Path | None = None

    # Vector store: unset -> embedded Qdrant Edge under DATA_DIR; set -> a Qdrant server or cluster.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    # A Qdrant cluster (orchestrator/clients/qdrant_cluster.py says why these defaults). New collections (the
    # main one and its companions) get these shard and replica counts and this write consistency factor
    # (unset: the server's defaults); every write is sent with QDRANT_WRITE_ORDERING.
    qdrant_shard_number: int | None = Field(default=None, ge=1)
    qdrant_replication_factor: int | None = Field(default=None, ge=1)
    qdrant_write_consistency_factor: int | None = Field(default=None, ge=1)
    qdrant_write_ordering: WriteOrdering = "strong"
    default_collection: str = "media"

    # ML service.
    ml_service_url: str = "http://127.0.0.1:8001"
    # Several replicas, comma-separated: requests go to the one with the fewest items outstanding; one
    # that fails is taken out and polled (/ready) every ML_HEALTH_INTERVAL_S until it answers again.
    ml_service_urls: str = ""
    # Sent to every replica as X-API-Key: the ML service's ML_API_KEY (needed when it is set there).
    ml_service_api_key: str | None = None
    ml_health_interval_s: float = 2.0
    ml_inference_batch_size: int | None = None
    ml_request_timeout_s: float = 300.0
    # How long a job waits (retrying with backoff, the reason shown in its status) for an unreachable
    # or overloaded ML service before it fails: long enough for a replica to restart and load its models.
    ml_retry_deadline_s: float = 600.0
    # Largest side of the copy sent to the ML service: OCR of printed text stays legible at 1024 px,
    # and the payload stays ~100-200 KB as JPEG.
    ml_image_max_side: int = 1024

    # Qdrant writes.
    qdrant_upsert_batch_size: int | None = None

    # Pipeline shape. Queue bounds are the backpressure: memory stays flat however large the tree.
    queue_size: int = 64
    prepare_workers: int = 2
    infer_workers: int = 2
    thumbnail_size: int = 256
    max_image_pixels: int = 200_000_000
    # Video and audio are hashed as a stream; images are read whole (and also bounded by MAX_IMAGE_PIXELS).
    max_file_bytes: int = 64 << 30
    include_hidden: bool = False
    # Watched folders (a job's options.watch): a new or changed file is read once its size and mtime have
    # not changed for this long (a file still being copied is looked at again, never read half written).
    watch_settle_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    # Jobs beyond this many wait in state "queued": two jobs would only split the same two cores.
    max_concurrent_jobs: int = 1
    # Video and audio: time chunks of about CHUNK_SECONDS, ended at a shot change when one is found, never
    # shorter than MIN_CHUNK_SECONDS; a few keyframes per chunk (near-identical ones skipped) go to the ML
    # service at most KEYFRAME_MAX_SIDE px. Longer files than MAX_MEDIA_SECONDS fail with a reason.
    chunk_seconds: float = 15.0
    min_chunk_seconds: float = 4.0
    keyframes_per_chunk: int = 3
    keyframe_max_side: int = 640
    max_media_seconds: float = 6 * 3600.0
    # Documents (PDF, DOCX, HTML, Markdown, plain text) become chunk records of at most DOCUMENT_PASSAGE_WORDS
    # words of one page and one section each (the text models read ~256-512 tokens). A job's
    # `options.documents` overrides INGEST_DOCUMENTS; off, documents are skipped like any other file.
    ingest_documents: bool = True
    document_passage_words: int = Field(default=150, ge=10, le=2000)
    document_max_pages: int = Field(default=2000, ge=1)
    # Decoding runs in worker processes; a file that takes longer than this is killed and fails alone.
    decode_workers: int = 1
    decode_timeout_s: float = 900.0
    # Address space (RLIMIT_AS) each decode worker may map; a file that needs more fails alone, before the
    # OOM killer picks a process. Measured: a worker with its libraries maps ~270 MB, a 1080p H.264 minute
    # ~460 MB, an hour of audio ~520 MB (6 h: ~0.7 GB of PCM, twice while it is sent back); more cores mean
    # more decoder threads (stacks, malloc arenas). 0: no limit.
    decode_memory_limit_mb: int = 4096
    # Decoded video/audio files held between decoding and inference (each may carry minutes of audio).
    media_in_flight: int = 2
    # People: a face (SFace, cosine) or a voice joins the nearest cluster of its collection when the
    # similarity reaches the threshold; clusters bridged by a face are merged at the job's end. Unset voice
    # threshold: the one the ML service's speaker model announces (/capabilities `cluster_threshold`: its
    # vectors' own scale, measured per backend), else 0.75.
    face_cluster_threshold: float = 0.45
    voice_cluster_threshold: float | None = None
    # Who speaks when is found over a chunk's audio with this much of the file's audio either side (the
    # speaker model hears more of each voice; turns are kept for the chunk's span). Development
    # conversations' 15 s pieces (README "Diarization"): DER 0.19 alone, 0.13 with 15 s, 0.10 with 30 s;
    # speaker count exact 0.59 / 0.81 / 0.83; the speaker model's time 1 / 2.6 / 3.8. 0: each chunk alone.
    # Part of the speaker model's id in the manifest (another context: a new collection version).
    speaker_context_seconds: float = Field(default=30.0, ge=0.0, le=60.0)
    # Edge searches exactly (brute force, ~19 ms at 100k points) until a collection is this large;
    # past it a job's end builds the HNSW index.
    ann_index_threshold: int = 50_000
    # Versions of a collection replaced by a rebuild (a new text, image–text, face or voice model, a new
    # chunk plan) kept after the switch, newest first; older ones are deleted. 0: delete at the switch.
    collection_versions_kept: int = Field(default=1, ge=0)
    # The relevance floor (relevance.py): a hit is a good match when its text-vector cosine, image–text
    # cosine or share of the query's words reaches these; `no_good_match` when none of the first hits
    # does. The text floor is per text model when unset (relevance.TEXT_FLOORS, calibrated by
    # scripts/eval_search.py); the others are calibrated for the default models.
    search_text_floor: float | None = None
    search_image_floor: float = 0.27
    search_keyword_floor: float = Field(default=0.5, ge=0.0, le=1.0)
    # How long the signed media URLs in search answers (thumbnail_url, stream_url) work when API_KEY is set:
    # a browser's <img> and <video> cannot send the key, so the URL carries a signature made with it.
    media_url_ttl_s: int = Field(default=43_200, ge=60)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("url_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a typo fails at start-up, not at the first URL job
        return value

    @field_validator("tenant_keys")
    @classmethod
    def _tenant_keys(cls, value: str) -> str:
        TenantKeys.parse(value)  # a malformed entry fails at start-up
        return value

    @field_validator("qdrant_write_consistency_factor")
    @classmethod
    def _write_consistency(cls, value: int | None, info: ValidationInfo) -> int | None:
        replicas = info.data.get("qdrant_replication_factor")
        QdrantCluster(replication_factor=replicas, write_consistency_factor=value)
        return value

    @property
    def qdrant_cluster(self) -> QdrantCluster:
        return QdrantCluster(
            shard_number=self.qdrant_shard_number,
            replication_factor=self.qdrant_replication_factor,
            write_consistency_factor=self.qdrant_write_consistency_factor,
            write_ordering=self.qdrant_write_ordering,
        )

    @property
    def tenants(self) -> TenantKeys:
        return TenantKeys.parse(self.tenant_keys)

    @property
    def signing_key(self) -> str | None:
        """What signs media URLs (api/signing.py): API_KEY, else a secret made from the tenants' keys;
        None without keys (URLs are not signed)."""
        if self.api_key:
            return self.api_key
        if not self.tenant_keys:
            return None
        return hashlib.sha256(("archivist-media-urls\n" + self.tenant_keys).encode()).hexdigest()

    @property
    def url_allowed_network_list(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.url_allowed_networks)

    @property
    def s3_allowed_bucket_set(self) -> frozenset[str]:
        return frozenset(b.strip() for b in self.s3_allowed_buckets.split(",") if b.strip())

    @property
    def upload_root(self) -> Path:
        """UPLOAD_DIR, resolved (symlinks followed) like the allowed roots."""
        return (self.upload_dir or self.data_dir / "uploads").expanduser().resolve()

    @property
    def managed_root_paths(self) -> list[Path]:
        """Roots the orchestrator fills itself (UPLOAD_DIR): ingested and served, ALLOWED_ROOTS or not."""
        return [self.upload_root]

    @property
    def ingest_root_paths(self) -> list[Path]:
        """Every root a job may ingest and a file may be served from: ALLOWED_ROOTS and UPLOAD_DIR."""
        return [*self.allowed_root_paths, *self.managed_root_paths]

    @property
    def allowed_root_paths(self) -> list[Path]:
        """The configured roots, resolved (symlinks followed) so containment checks are exact."""
        parts = [p.strip() for chunk in self.allowed_roots.split(",") for p in chunk.split(":")]
        return [Path(p).expanduser().resolve() for p in parts if p]

    @property
    def ml_urls(self) -> list[str]:
        urls = [u.strip().rstrip("/") for u in self.ml_service_urls.split(",") if u.strip()]
        return urls or [self.ml_service_url.rstrip("/")]

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def trusted_host_list(self) -> list[str]:
        """TRUSTED_HOSTS as Host-header names (IPv6 literals in brackets), plus HOST when it names one
        address (not 0.0.0.0 or ::); ["*"] when the check is off."""
        names = [h.strip().lower() for h in self.trusted_hosts.split(",") if h.strip()]
        if "*" in names:
            return ["*"]
        unspecified = {"", "0.0.0.0", "::", "[::]"}
        if self.host.strip().lower() not in unspecified:
            names.append(self.host.strip().lower())
        out: list[str] = []
        for name in names:
            if ":" in name and not name.startswith("["):
                name = f"[{name}]"  # the Host header writes an IPv6 literal in brackets
            if name not in out:
                out.append(name)
        return out

    def check_exposure(self) -> None:
        """Refuse to listen beyond loopback without an API key (security by default)."""
        keyed = bool(self.api_key or self.tenant_keys)
        if not self.is_loopback and not keyed and not self.allow_unauthenticated:
            raise ValueError(
                f"refusing to listen on {self.host} without API_KEY; set API_KEY "
                "(or ALLOW_UNAUTHENTICATED=true if a proxy in front authenticates)"
            )

    @property
    def thumbnails_dir(self) -> Path:
        return self.shared_thumbnails_dir or self.data_dir / "thumbnails"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "file_index.sqlite3"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite3"

    @property
    def people_path(self) -> Path:
        return self.data_dir / "people.sqlite3"

    @property
    def jobs_db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def qdrant_dir(self) -> Path:
        """Where the embedded engine keeps its shards (what open_vector_store uses under DATA_DIR)."""
        return self.data_dir / EDGE_SUBDIR
