"""Object storage for the pipeline: ``s3://`` URIs through boto3, or local paths in tests.

One implementation for the conversion job (driver and Spark tasks) and the
Airflow side's steps, so both read and write the layout's objects the same way.
Deletes check every key's outcome: a quiet ``DeleteObjects`` reports failures
per key instead of failing the call.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class StorageError(RuntimeError):
    """An object operation failed for some objects; the message names them."""


class Storage:
    """File-level operations on ``s3://`` URIs (boto3) and local paths.

    ``bucket_root`` maps ``s3://bucket/key`` to ``<bucket_root>/bucket/key`` on the local
    disk; the benchmark and the transform tests use it to run the whole job without S3.
    """

    def __init__(self, *, bucket_root: str | None = None, s3_client: Any = None, recorder: Any = None) -> None:
        self.bucket_root = bucket_root
        self._s3 = s3_client
        # A ``usage.RequestRecorder`` that counts the requests of the client this storage makes itself.
        self.recorder = recorder

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3

            # boto3 honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, which the local runner sets.
            self._s3 = boto3.client("s3")
            if self.recorder is not None:
                self.recorder.attach(self._s3)
        return self._s3

    def _s3_location(self, uri: str) -> tuple[str, str] | None:
        if self.bucket_root is not None or not uri.startswith("s3://"):
            return None
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def _local(self, uri: str) -> Path:
        if uri.startswith("s3://"):
            if self.bucket_root is None:
                raise ValueError(f"{uri} is not a local path")
            parsed = urlparse(uri)
            return Path(self.bucket_root) / parsed.netloc / parsed.path.lstrip("/")
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri)

    def for_tasks(self) -> Storage:
        """A plain copy for Spark tasks: no client (each task makes its own) and no subclass behaviour.

        With a recorder, the copy gets an empty one of its own: each task counts its requests and reports them.
        """
        recorder = None if self.recorder is None else type(self.recorder)(computed_capacity=False)
        return Storage(bucket_root=self.bucket_root, recorder=recorder)

    def read_version(self, uri: str, etag: str) -> bytes | None:
        """The object's bytes if it still has ``etag``; None when it changed or is gone.

        On S3 the condition travels with the read (If-Match), so the bytes returned are
        exactly that version's, however the object changes around the read.
        """
        location = self._s3_location(uri)
        if location is None:
            path = self._local(uri)
            data = path.read_bytes() if path.is_file() else None
            matches = data is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() == etag
            return data if matches else None
        try:
            return self.s3.get_object(Bucket=location[0], Key=location[1], IfMatch=etag)["Body"].read()
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("412", "PreconditionFailed", "404", "NoSuchKey"):
                return None
            raise

    def read_bytes(self, uri: str) -> bytes:
        location = self._s3_location(uri)
        if location is None:
            return self._local(uri).read_bytes()
        return self.s3.get_object(Bucket=location[0], Key=location[1])["Body"].read()

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
            path = self._local(uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            partial.write_bytes(data)
            partial.replace(path)
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
            path = self._local(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            shutil.copyfile(self._local(source), partial)
            partial.replace(path)
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
