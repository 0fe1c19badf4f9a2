"""The distributed mode's tables in PostgreSQL (beside procrastinate's own `procrastinate_*` tables).

jobs        one row per job (the API's Job: state, options, error)
scans       one row per directory a scan task lists: uuid5(job, directory), so a task run twice is harmless;
            the unchanged files it counted (the shared index had them with the same size, mtime, inode)
partitions  at most PARTITION_FILES names of one directory: uuid5(job, directory, page); `attempt` is the
            ownership token (a claim increments it; a checkpoint of an older attempt is refused); counts of
            the files it settled
file_results  one row per (job, path) a partition settled: done, failed (with stage and reason) or skipped;
            the primary key makes a count exact however often a file is delivered
file_index  the shared stat index per collection (path + size + mtime + inode -> content hash, chunks):
            the cross-node "already done?" of every later job
"""

from __future__ import annotations

# An advisory lock key: every process applies the schema under it (the API and N workers start at once).
SCHEMA_LOCK = 0x41524348  # "ARCH"

TABLES = """
CREATE TABLE IF NOT EXISTS archivist_jobs (
    id text PRIMARY KEY,
    collection text NOT NULL,
    root text NOT NULL,
    options jsonb NOT NULL,
    state text NOT NULL,
    error text,
    created_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    idempotency_key text UNIQUE
);
CREATE TABLE IF NOT EXISTS archivist_scans (
    id uuid PRIMARY KEY,
    job_id text NOT NULL REFERENCES archivist_jobs (id) ON DELETE CASCADE,
    directory text NOT NULL,
    state text NOT NULL DEFAULT 'queued',
    discovered integer NOT NULL DEFAULT 0,
    unchanged integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS archivist_scans_job ON archivist_scans (job_id, state);
CREATE TABLE IF NOT EXISTS archivist_partitions (
    id uuid PRIMARY KEY,
    job_id text NOT NULL REFERENCES archivist_jobs (id) ON DELETE CASCADE,
    directory text NOT NULL,
    page integer NOT NULL,
    names text[] NOT NULL,
    files integer NOT NULL,
    state text NOT NULL DEFAULT 'queued',
    attempt integer NOT NULL DEFAULT 0,
    owner text,
    task_id bigint,
    done integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    counters jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS archivist_partitions_job ON archivist_partitions (job_id, state);
CREATE TABLE IF NOT EXISTS archivist_file_results (
    job_id text NOT NULL REFERENCES archivist_jobs (id) ON DELETE CASCADE,
    path text NOT NULL,
    partition_id uuid,
    status text NOT NULL,
    stage text,
    reason text,
    at double precision NOT NULL,
    seq bigserial,
    PRIMARY KEY (job_id, path)
);
CREATE INDEX IF NOT EXISTS archivist_file_results_errors ON archivist_file_results (job_id, seq)
    WHERE status <> 'done' AND status <> 'skipped';
CREATE TABLE IF NOT EXISTS archivist_file_index (
    collection text NOT NULL,
    directory text NOT NULL,
    name text NOT NULL,
    size bigint NOT NULL,
    mtime_ns bigint NOT NULL,
    inode bigint NOT NULL,
    content_hash text NOT NULL,
    chunks integer NOT NULL,
    PRIMARY KEY (collection, directory, name)
);
"""
