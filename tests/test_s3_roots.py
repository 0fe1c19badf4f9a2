"""The pieces of s3:// roots that need no server: parsing and persisting roots, the ETag's index number, the
spool's bound (backpressure), the check of a requested root. (That a plain start does not import boto3 is
tests/test_imports.py's.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.jobs import Job
from orchestrator.security import PathInvalidError, PathNotAllowedError, resolve_s3_root
from orchestrator.sources.roots import S3Prefix, key_problem, parse_root, parse_s3_uri, split_s3_path
from orchestrator.sources.s3 import etag_inode
from orchestrator.sources.spool import Spool


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix", "key_prefix", "shown"),
    [
        ("s3://photos", "photos", "", "", "s3://photos"),
        ("s3://photos/", "photos", "", "", "s3://photos"),
        ("s3://photos/2019/summer/", "photos", "2019/summer", "2019/summer/", "s3://photos/2019/summer"),
        ("S3://my.bucket-1/a", "my.bucket-1", "a", "a/", "s3://my.bucket-1/a"),
        ("s3://photos/café 東京", "photos", "café 東京", "café 東京/", "s3://photos/café 東京"),
    ],
)
def test_parse_s3_uri(uri: str, bucket: str, prefix: str, key_prefix: str, shown: str) -> None:
    root = parse_s3_uri(uri)
    assert (root.bucket, root.prefix, root.key_prefix, root.uri) == (bucket, prefix, key_prefix, shown)
    assert parse_root(str(root)) == root  # persisted as its URI, read back the same


@pytest.mark.parametrize(
    "uri",
    [
        "s3://",
        "s3:///photos",
        "s3://ab",  # too short
        "s3://Photos",  # capitals
        "s3://under_score",
        "s3://-dash",
        "s3://a..b",
        "s3://photos/a//b",
        "s3://photos/../etc",
        "s3://photos/./x",
        "s3://photos/x?versionId=1",
        "s3://photos/" + "k" * 1100,
        "http://photos/x",
    ],
)
def test_bad_s3_uris(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_s3_uri(uri)


def test_local_roots_stay_paths() -> None:
    assert parse_root("/srv/media") == Path("/srv/media")
    assert parse_root(".") == Path()  # a re-analysis's root, as its job row has it
    job = Job(id="j", root=Path("/srv/media"), collection="c", options={})
    assert Job.from_row(job.to_row()).root == Path("/srv/media")
    s3_job = Job(id="k", root=S3Prefix("photos", "2019"), collection="c", options={})
    row = s3_job.to_row()
    assert row.root == "s3://photos/2019"
    assert Job.from_row(row).root == S3Prefix("photos", "2019")
    assert s3_job.status()["path"] == "s3://photos/2019"


def test_directories_and_paths_map_back_to_keys() -> None:
    root = S3Prefix("photos", "2019")
    assert root.directory_uri("2019/") == "s3://photos/2019"
    assert root.directory_uri("2019/summer/") == "s3://photos/2019/summer"
    assert S3Prefix("photos").directory_uri("") == "s3://photos"
    assert split_s3_path(root.key_uri("2019/summer/a b.jpg")) == ("photos", "2019/summer/a b.jpg")
    assert split_s3_path("/srv/media/a.jpg") is None
    assert split_s3_path("s3://photos") is None
    assert split_s3_path("s3://photos/a//b.jpg") is None
    assert key_problem("a/b/c.jpg") is None and key_problem("a/b/") is None
    for bad in ("a//b.jpg", "/a.jpg", "a/../b", "a/./b", "a/.."):
        assert key_problem(bad) is not None, bad


def test_etag_inode_is_stable_and_fits_the_column() -> None:
    etags = ['"5d41402abc4b2a76b9719d911017c592"', '"5d41402abc4b2a76b9719d911017c593"', '"abc-3"', '""']
    numbers = [etag_inode(e) for e in etags]
    assert len(set(numbers)) == len(numbers)
    assert all(0 <= n < 2**63 for n in numbers)  # SQLite INTEGER, signed
    # Pinned: the index keeps these numbers across restarts and versions (a change re-reads every object).
    assert etag_inode(etags[0]) == 0x4384B25D1282ED94


def test_resolve_s3_root() -> None:
    assert resolve_s3_root("s3://photos/x", {"photos"}) == S3Prefix("photos", "x")
    with pytest.raises(PathNotAllowedError, match="not in S3_ALLOWED_BUCKETS"):
        resolve_s3_root("s3://other/x", {"photos"})
    with pytest.raises(PathNotAllowedError, match="no S3_ALLOWED_BUCKETS"):
        resolve_s3_root("s3://photos/x", set())
    with pytest.raises(PathInvalidError):
        resolve_s3_root("s3://photos/a//b", {"photos"})


async def test_spool_bounds_the_bytes_held(tmp_path: Path) -> None:
    """A reservation waits while the spool is full and goes on when a copy is released; a copy larger than
    the whole spool is refused at once."""
    spool = Spool(tmp_path / "spool" / "job", capacity=100)
    await spool.open()
    first = spool.new_path()
    first.write_bytes(b"x" * 60)
    await spool.reserve(60)
    second = asyncio.create_task(spool.reserve(50))
    await asyncio.sleep(0)  # (lets the task run up to its wait; the assertion below is what matters)
    for _ in range(20):
        await asyncio.sleep(0.01)
        assert not second.done(), "60 + 50 > 100: the second reservation must wait"
    await spool.release(first, 60)
    await asyncio.wait_for(second, 5)
    assert not first.exists() and spool.used == 50
    with pytest.raises(ValueError, match="S3_SPOOL_BYTES"):
        await spool.reserve(101)
    await spool.unreserve(50)
    assert spool.used == 0
    await spool.close()
    assert not spool.directory.exists()
