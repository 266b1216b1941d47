"""Objects in an S3-compatible bucket through boto3: AWS S3, Ceph's RADOS Gateway and the like.

Every call is bounded: S3_TIMEOUT seconds to connect and per socket read, at most S3_MAX_ATTEMPTS
tries in all (botocore's "standard" retries: connection errors, timeouts, 5xx, throttling), then
StorageUnavailable. A conditional write sends `If-None-Match: *`, which the engine answers with 412
when the key exists; the existing object's SHA-256, kept as user metadata (`x-amz-meta-sha256`) by
every put, then says whether it holds the same bytes. Every put also sends Content-MD5, so the engine
refuses bytes damaged on the way, and every read checks the SHA-256 it brought back.
`check` (readiness) is one listing of at most one key, one try of at most CHECK_TIMEOUT seconds
through a second client, so a gateway that is down or frozen is reported within a couple of seconds.
Credentials come from boto3's usual sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from server.core.errors import StorageUnavailable
from server.store.local import _storage_error, temp_path_for
from server.store.objects import (
    CHUNK,
    ObjectInfo,
    ObjectMissing,
    PutResult,
    Source,
    checked_key,
    checked_prefix,
    digest_of,
)

if TYPE_CHECKING:
    from server.config import Config

SHA256_META = "sha256"
PUT_TRIES = 3  # a key deleted between our 412 and our HEAD is written again, a few times at most
CHECK_TIMEOUT = 2.0  # seconds `check` waits to connect and to read (one try): /readyz answers promptly


class _Taken(Exception):
    """The engine refused a conditional write: the key holds an object."""


class S3Objects:
    """An ObjectStore on one bucket, every key under `prefix`."""

    backend = "s3"

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        prefix: str = "",
        *,
        region: str = "us-east-1",
        timeout: float = 10.0,
        max_attempts: int = 3,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = checked_prefix(prefix)
        self.bucket = bucket
        config = BotoConfig(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            # boto3 otherwise adds CRC32 checksums (trailers, aws-chunked bodies) that engines older
            # than 2025 (RGW 16 among them) refuse; Content-MD5 and our SHA-256 cover integrity.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        where = {
            "endpoint_url": endpoint_url or None,
            "region_name": region,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
        }
        self.client = session.client("s3", config=config, **where)
        brief = min(timeout, CHECK_TIMEOUT)
        self._checker = session.client(
            "s3",
            config=config.merge(
                BotoConfig(connect_timeout=brief, read_timeout=brief, retries={"total_max_attempts": 1, "mode": "standard"})
            ),
            **where,
        )

    @classmethod
    def from_config(cls, config: Config) -> S3Objects:
        return cls(
            config.S3_ENDPOINT_URL,
            config.S3_BUCKET,
            config.S3_PREFIX,
            region=config.S3_REGION,
            timeout=config.S3_TIMEOUT,
            max_attempts=config.S3_MAX_ATTEMPTS,
        )

    def _name(self, key: str) -> str:
        return self.prefix + checked_key(key)

    def put(self, key: str, source: Source, *, if_absent: bool = False, durable: bool = True) -> PutResult:
        name = self._name(key)
        sha256, md5, size = digest_of(source)
        for _ in range(PUT_TRIES):
            try:
                self._put(key, name, source, sha256=sha256, md5=md5, size=size, if_absent=if_absent)
                return PutResult.CREATED
            except _Taken:
                info = self.head(key)
                if info is not None:
                    return PutResult.SAME if info.sha256 == sha256 else PutResult.DIFFERENT
        raise StorageUnavailable("the object store kept refusing a write", detail=f"{self.bucket}/{name}")

    def _put(self, key: str, name: str, source: Source, *, sha256: str, md5: str, size: int, if_absent: bool) -> None:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": name,
            "ContentLength": size,
            "ContentMD5": base64.b64encode(bytes.fromhex(md5)).decode(),
            "Metadata": {SHA256_META: sha256},
        }
        if if_absent:
            args["IfNoneMatch"] = "*"
        with self._answers("store", key):
            if isinstance(source, Path):
                with open(source, "rb") as body:
                    self.client.put_object(Body=body, **args)
            else:
                self.client.put_object(Body=bytes(source), **args)

    def get(self, key: str) -> bytes:
        name = self._name(key)
        with self._answers("read", key):
            answer = self.client.get_object(Bucket=self.bucket, Key=name)
            data: bytes = answer["Body"].read()
        self._check(key, answer, hashlib.sha256(data).hexdigest())
        return data

    def download(self, key: str, path: Path) -> None:
        name = self._name(key)
        temp = temp_path_for(path)
        try:
            with self._answers("read", key), open(temp, "xb") as out:
                answer = self.client.get_object(Bucket=self.bucket, Key=name)
                sha = hashlib.sha256()
                for chunk in answer["Body"].iter_chunks(CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            self._check(key, answer, sha.hexdigest())
            os.replace(temp, path)
        except OSError as exc:
            raise _storage_error(exc) from exc
        finally:
            temp.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo | None:
        name = self._name(key)
        try:
            with self._answers("look up", key):
                answer = self.client.head_object(Bucket=self.bucket, Key=name)
        except ObjectMissing:
            return None
        sha256 = answer.get("Metadata", {}).get(SHA256_META)
        if sha256 is None:  # written by another tool: hash what is there, a chunk at a time
            sha256 = self._hash(key)
        return ObjectInfo(size=answer["ContentLength"], sha256=sha256)

    def _hash(self, key: str) -> str:
        sha = hashlib.sha256()
        with self._answers("read", key):
            for chunk in self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"].iter_chunks(CHUNK):
                sha.update(chunk)
        return sha.hexdigest()

    def delete(self, key: str) -> None:
        name = self._name(key)
        with self._answers("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def list(self, prefix: str = "") -> list[str]:
        start = self.prefix + checked_prefix(prefix)
        keys: list[str] = []
        with self._answers("list", prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", ()))
        return sorted(keys)

    def folders(self, prefix: str) -> builtins.list[str]:
        start = self.prefix + checked_prefix(prefix)
        names: builtins.list[str] = []
        with self._answers("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start, Delimiter="/")
            for page in pages:
                names.extend(item["Prefix"][len(start) :].rstrip("/") for item in page.get("CommonPrefixes", ()))
        return sorted(names)

    def local_path(self, key: str) -> Path | None:
        return None  # every read is a download

    def check(self) -> None:
        """Raise StorageUnavailable unless the bucket answers a listing (it exists and these credentials read it),
        within one try of at most CHECK_TIMEOUT: /readyz and `media migrate` ask it before anything else."""
        with self._answers("list", ""):
            self._checker.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)

    def presign_get(self, key: str, ttl: int) -> str:
        """Return a URL that GETs the object without credentials for `ttl` seconds."""
        params = {"Bucket": self.bucket, "Key": self._name(key)}
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(ttl))
        return url

    def presign_put(self, key: str, ttl: int) -> str:
        """Return a URL that PUTs the object's bytes without credentials for `ttl` seconds."""
        params = {"Bucket": self.bucket, "Key": self._name(key)}
        url: str = self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=int(ttl))
        return url

    def _check(self, key: str, answer: dict[str, Any], sha256: str) -> None:
        expected = answer.get("Metadata", {}).get(SHA256_META)
        if expected is not None and expected != sha256:
            raise StorageUnavailable("the object store sent damaged bytes", detail=f"{self.bucket}/{self.prefix}{key}")

    @contextmanager
    def _answers(self, what: str, key: str) -> Iterator[None]:
        """Turn boto3's failures into ObjectMissing, _Taken or StorageUnavailable (no other kind escapes)."""
        where = f"{self.bucket}/{self.prefix}{key}"
        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 404 and code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(f"no object {key}") from None
            # 409: AWS's answer while another conditional write of the key is under way.
            if status == 412 or code == "ConditionalRequestConflict":
                raise _Taken from None
            raise StorageUnavailable(f"the object store refused to {what}", detail=f"{where}: HTTP {status} {code}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"the object store did not answer to {what}", detail=f"{where}: {exc}") from exc
