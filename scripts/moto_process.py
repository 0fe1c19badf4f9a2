"""A real S3-compatible server for the tests and benchmarks of s3:// roots: moto's `moto_server` as a
subprocess on a free loopback port, with its credentials checked.

moto checks signatures and IAM policies once INITIAL_NO_AUTH_ACTION_COUNT requests have been served: the
first ones (made here) create the user `archivist` (allowed everything on `buckets`), its access key, and the
`locked` buckets (which that user may not touch); every request after them must be signed with a key moto
issued. With `record`, moto writes every request it serves to a JSON-lines file (MOTO_ENABLE_RECORDING):
`object_gets` counts the GETs of objects in it, independently of the orchestrator's own counters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from scripts.ml_process import free_port, log_tail

USER = "archivist"
START_TIMEOUT_S = 60.0  # moto imports for ~3-5 s on 2 cores


@dataclass(frozen=True, slots=True)
class MotoServer:
    url: str
    access_key_id: str
    secret_access_key: str
    recording: Path | None
    process: subprocess.Popen[bytes]

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client signed as `archivist` (or with the credentials given in `overrides`)."""
        import boto3

        args: dict[str, Any] = {
            "endpoint_url": self.url,
            "region_name": "us-east-1",
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            **overrides,
        }
        return boto3.session.Session().client("s3", **args)

    def object_gets(self, bucket: str) -> list[str]:
        """Keys of the object GETs served so far in `bucket` (listings excluded), in order."""
        if self.recording is None:
            raise RuntimeError("started without record=True")
        keys = []
        if self.recording.exists():
            for line in self.recording.read_text().splitlines():
                entry = json.loads(line)
                parts = urlsplit(entry["url"])
                bucket_part, _, key = parts.path.lstrip("/").partition("/")
                if (
                    entry["method"] == "GET"
                    and bucket_part == bucket
                    and key
                    and "list-type" not in parts.query
                ):
                    keys.append(unquote(key))
        return keys

    def stop(self) -> None:
        """Stop the server now (a test of an unreachable store); idempotent."""
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _policy(buckets: list[str]) -> str:
    resources = [f"arn:aws:s3:::{b}{tail}" for b in buckets for tail in ("", "/*")]
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": resources}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@contextmanager
def running_moto(
    workdir: Path, buckets: list[str], locked: tuple[str, ...] = (), record: bool = False
) -> Iterator[MotoServer]:
    """moto_server on a free port (see the module); `buckets` are what the user may use (created only by
    the caller: one may stay missing), `locked` are created here, out of its reach. Stopped at the end."""
    import boto3

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    recording = workdir / "moto_requests.jsonl" if record else None
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(3 + len(locked))}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    if recording is not None:
        env.update(MOTO_ENABLE_RECORDING="True", MOTO_RECORDER_FILEPATH=str(recording))
    log_path = workdir / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # /moto-api/ is moto's own: it is not one of the unauthenticated actions
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited ({process.returncode}):\n{log_tail(log_path)}")
            try:
                if httpx.get(f"{url}/moto-api/", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server not up in {START_TIMEOUT_S} s:\n{log_tail(log_path)}")
            time.sleep(0.05)
        setup = {"endpoint_url": url, "region_name": "us-east-1"}
        anonymous = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.session.Session().client("iam", **setup, **anonymous)
        iam.create_user(UserName=USER)
        iam.put_user_policy(UserName=USER, PolicyName="buckets", PolicyDocument=_policy(buckets))
        key = iam.create_access_key(UserName=USER)["AccessKey"]
        s3 = boto3.session.Session().client("s3", **setup, **anonymous)
        for bucket in locked:
            s3.create_bucket(Bucket=bucket)
        yield MotoServer(url, key["AccessKeyId"], key["SecretAccessKey"], recording, process)
    finally:
        _stop(process)
