"""Object storage for the pipeline: ``s3://`` URIs through boto3, or local paths in tests.

One implementation for the conversion job (driver and Spark tasks) and the
Airflow side's steps, so both read and write the layout's objects the same way.
Deletes check every key's outcome: a quiet ``DeleteObjects`` reports failures
per key instead of failing the call.

Reading a file version (``read_version_chunks``) sorts S3's answers into three
kinds, because the job treats them differently:

- the object no longer has the eTag (HTTP 412 on the If-Match, or 404):
  ``ObjectChanged``, the file is superseded;
- S3 refuses the object for good (any other 4xx, such as 403 AccessDenied for a
  KMS key the role cannot use or a key deleted without list permission, or
  InvalidObjectState for an archived object): ``ObjectUnreadable``, the file is
  quarantined;
- anything transient (5xx, throttling, RequestTimeout, connection errors) is
  retried by botocore (standard mode, ``max_attempts``); a body that breaks off
  mid-read is resumed with a ranged GET that carries If-Match as well. What is
  still failing after that is raised as it is, so the run fails and is retried
  rather than quarantining a file for a passing reason.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import HTTPClientError, IncompleteReadError


class StorageError(RuntimeError):
    """An object operation failed for some objects; the message names them."""


class ObjectChanged(StorageError):
    """The object no longer has the eTag asked for: it was overwritten or deleted."""


class ObjectUnreadable(StorageError):
    """S3 refuses to return the object for a reason retrying will not change; ``code`` is S3's error code."""

    def __init__(self, uri: str, code: str, message: str) -> None:
        super().__init__(f"{uri}: {code}: {message}")
        self.code = code
        self.message = message


# Error codes S3 returns with a 4xx status that still mean "try again".
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException", "TooManyRequests"}
)
# How often a body that broke off mid-read is resumed before the error is raised.
_RESUMES = 5


class Storage:
    """File-level operations on ``s3://`` URIs (boto3) and local paths.

    ``bucket_root`` maps ``s3://bucket/key`` to ``<bucket_root>/bucket/key`` on the local
    disk; the benchmark and the transform tests use it to run the whole job without S3.
    """

    def __init__(
        self,
        *,
        bucket_root: str | None = None,
        s3_client: Any = None,
        endpoint_url: str | None = None,
        max_attempts: int = 10,
        recorder: Any = None,
        check_local_versions: bool = True,
    ) -> None:
        """:param endpoint_url: S3 endpoint of the client this storage makes (None: boto3's default, which
            honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL as the local runner sets them).
        :param max_attempts: botocore's standard-mode attempts per request of that client.
        :param recorder: a ``usage.RequestRecorder`` counting the requests of the client this storage makes.
        :param check_local_versions: whether a local read checks the file's MD5 against the eTag asked for, as
            S3's If-Match does (on S3 that costs the reader nothing; a benchmark that stands the local disk in
            for S3 turns it off).
        """
        self.bucket_root = bucket_root
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self._s3 = s3_client
        self.recorder = recorder
        self.check_local_versions = check_local_versions

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            # Standard mode retries throttles, 5xx and connection errors with backoff; total_max_attempts
            # counts the first try too (max_attempts would count retries only).
            config = Config(retries={"mode": "standard", "total_max_attempts": self.max_attempts})
            self._s3 = boto3.client("s3", endpoint_url=self.endpoint_url, config=config)
            if self.recorder is not None:
                self.recorder.attach(self._s3)
        return self._s3

    def _s3_location(self, uri: str) -> tuple[str, str] | None:
        if self.bucket_root is not None or not uri.startswith("s3://"):
            return None
        return split_s3_uri(uri)

    def _local(self, uri: str) -> Path:
        if uri.startswith("s3://"):
            if self.bucket_root is None:
                raise ValueError(f"{uri} is not a local path")
            bucket, key = split_s3_uri(uri)
            segments = key.split("/")
            if any(segment in ("", ".", "..") for segment in segments[:-1]) or segments[-1] in (".", ".."):
                raise ValueError(f"{uri}: the key has an empty, '.' or '..' segment, which no local path can hold")
            return Path(self.bucket_root, bucket, *segments)
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri)

    def for_tasks(self) -> Storage:
        """A plain copy for Spark tasks: no client (each task makes its own) and no subclass behaviour.

        With a recorder, the copy gets an empty one of its own: each task counts its requests and reports them.
        """
        recorder = None if self.recorder is None else type(self.recorder)(computed_capacity=False)
        return Storage(
            bucket_root=self.bucket_root,
            endpoint_url=self.endpoint_url,
            max_attempts=self.max_attempts,
            recorder=recorder,
            check_local_versions=self.check_local_versions,
        )

    def read_version_chunks(self, uri: str, etag: str, chunk_bytes: int) -> Iterator[bytes]:
        """The bytes of the version ``etag`` of ``uri``, in chunks of at most ``chunk_bytes``.

        Raises ObjectChanged or ObjectUnreadable as the module docstring says. On S3 the
        condition travels with every read (If-Match, on resumed ranges too), so the bytes are
        exactly that version's however the object changes around the read.
        """
        location = self._s3_location(uri)
        if location is None:
            yield from self._local_version_chunks(uri, etag, chunk_bytes)
            return
        offset, size, resumes = 0, None, 0
        while size is None or offset < size:
            request = {"Bucket": location[0], "Key": location[1], "IfMatch": etag}
            if offset:
                request["Range"] = f"bytes={offset}-"
            try:
                response = self.s3.get_object(**request)
            except self.s3.exceptions.ClientError as exc:
                problem = _read_problem(uri, etag, exc)
                if problem is None:
                    raise
                raise problem from exc
            if size is None:
                size = response["ContentLength"]
            try:
                for chunk in response["Body"].iter_chunks(chunk_bytes):
                    offset += len(chunk)
                    yield chunk
            except (HTTPClientError, IncompleteReadError):
                response["Body"].close()
                resumes += 1
                if resumes > _RESUMES:
                    raise

    def _local_version_chunks(self, uri: str, etag: str, chunk_bytes: int) -> Iterator[bytes]:
        path = self._local(uri)
        try:
            with path.open("rb") as stream:
                if self.check_local_versions:
                    digest = hashlib.md5(usedforsecurity=False)
                    for chunk in iter(lambda: stream.read(chunk_bytes), b""):
                        digest.update(chunk)
                    if digest.hexdigest() != etag:
                        raise ObjectChanged(f"{uri} no longer has eTag {etag}")
                    stream.seek(0)
                yield from iter(lambda: stream.read(chunk_bytes), b"")
        except FileNotFoundError:
            raise ObjectChanged(f"{uri} no longer exists") from None
        except OSError as exc:
            raise ObjectUnreadable(uri, type(exc).__name__, str(exc)) from exc

    def upload_file(self, path: str, uri: str) -> None:
        """Store a local file at ``uri``; on S3 through boto3's managed (multipart, streamed) upload."""
        location = self._s3_location(uri)
        if location is None:
            _replace_locally(self._local(uri), lambda partial: shutil.copyfile(path, partial))
            return
        self.s3.upload_file(path, location[0], location[1])

    def read_bytes(self, uri: str) -> bytes:
        location = self._s3_location(uri)
        if location is None:
            return self._local(uri).read_bytes()
        body: bytes = self.s3.get_object(Bucket=location[0], Key=location[1])["Body"].read()
        return body

    def read_bytes_if_exists(self, uri: str) -> bytes | None:
        try:
            return self.read_bytes(uri)
        except FileNotFoundError:
            return None
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def write_bytes(self, uri: str, data: bytes) -> None:
        location = self._s3_location(uri)
        if location is None:
            _replace_locally(self._local(uri), lambda partial: partial.write_bytes(data))
            return
        self.s3.put_object(Bucket=location[0], Key=location[1], Body=data)

    def create_bytes(self, uri: str, data: bytes) -> bool:
        """Write ``data`` only if nothing exists at ``uri`` (S3 ``If-None-Match``); False when something did."""
        location = self._s3_location(uri)
        if location is None:
            path = self._local(uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with path.open("xb") as out:
                    out.write(data)
            except FileExistsError:
                return False
            return True
        try:
            self.s3.put_object(Bucket=location[0], Key=location[1], Body=data, IfNoneMatch="*")
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def list(self, prefix: str) -> dict[str, int]:
        """URIs (in the form of ``prefix``) and sizes of the objects whose names start with ``prefix``.

        Hidden local files (Hadoop's ``.crc`` files, partial copies) are skipped.
        """
        location = self._s3_location(prefix)
        if location is None:
            local = self._local(prefix)
            base, start = (local, "") if prefix.endswith("/") else (local.parent, local.name)
            uri_base = prefix[: len(prefix) - len(start)]
            found = {}
            for path in sorted(base.rglob("*")) if base.is_dir() else ():
                relative = path.relative_to(base).as_posix()
                hidden = any(part.startswith(".") for part in relative.split("/"))
                if relative.startswith(start) and not hidden and path.is_file():
                    found[uri_base + relative] = path.stat().st_size
            return found
        bucket, key_prefix = location
        found = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
            for obj in page.get("Contents", []):
                found[f"s3://{bucket}/{obj['Key']}"] = obj["Size"]
        return found

    def copy(self, source: str, target: str) -> None:
        src, dst = self._s3_location(source), self._s3_location(target)
        if src is None and dst is None:
            _replace_locally(self._local(target), lambda partial: shutil.copyfile(self._local(source), partial))
        elif src and dst:
            # The managed copy switches to multipart above 5 GB, where CopyObject stops working.
            self.s3.copy({"Bucket": src[0], "Key": src[1]}, dst[0], dst[1])
        else:
            raise ValueError(f"cannot copy between S3 and the local disk: {source} -> {target}")

    def delete(self, uris: Iterable[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            location = self._s3_location(uri)
            if location is None:
                self._local(uri).unlink(missing_ok=True)
            else:
                by_bucket.setdefault(location[0], []).append(location[1])
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), 1000):
                objects = [{"Key": key} for key in keys[start : start + 1000]]
                response = self.s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
                if response.get("Errors"):
                    failed = [f"{e.get('Key')}: {e.get('Code')}" for e in response["Errors"]]
                    raise StorageError(f"could not delete {len(failed)} objects from s3://{bucket}: {failed[:5]}")

    def delete_prefix(self, prefix: str) -> None:
        location = self._s3_location(prefix)
        if location is None:
            shutil.rmtree(self._local(prefix), ignore_errors=True)
        else:
            self.delete(self.list(prefix.rstrip("/") + "/"))


def split_s3_uri(uri: str) -> tuple[str, str]:
    """The bucket and key of ``s3://<bucket>/<key>``: the key is everything after the bucket's slash, as it is.

    Never parsed as a URL: an S3 key may hold any character, ``#``, ``?``, ``%``,
    ``//`` and a leading ``/`` included, and a URL parser would cut it at the
    first ``#`` or ``?`` and drop leading slashes.
    """
    bucket, slash, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ValueError(f"not an s3://<bucket>/<key> location: {uri!r}")
    return bucket, key if slash else ""


def _read_problem(uri: str, etag: str, exc: Any) -> StorageError | None:
    """What a failed GET of one version means: changed, unreadable for good, or (None) transient."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if status in (404, 412) or code in ("404", "412", "NoSuchKey", "PreconditionFailed"):
        return ObjectChanged(f"{uri} no longer has eTag {etag} ({code or status})")
    if 400 <= status < 500 and status not in (408, 429) and code not in _TRANSIENT_CODES:
        return ObjectUnreadable(uri, code or str(status), str(error.get("Message", "")))
    return None


def _replace_locally(path: Path, write: Callable[[Path], object]) -> None:
    """Write a local file through a hidden partial file, so a reader sees the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    write(partial)
    partial.replace(path)
