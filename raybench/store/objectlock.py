"""Creating the run lock on an object store, where there is no exclusive create (``O_EXCL``).

Two primitives, chosen by :func:`lock_primitive` from the results filesystem:

- :class:`ConditionalPut` (``s3://``, through boto3: ``pip install 'raybench[s3]'``): a put with
  ``If-None-Match: *`` creates the lock object only if no object has that key, atomically on
  the server (S3 since 2024, MinIO, moto); taking over a stale lock is a put with ``If-Match:
  <its ETag>``, so of two runs taking over the same dead run's lock one wins. This is as safe as
  ``O_EXCL`` on a local disk.
- :class:`WriteThenVerify` (any other pyarrow filesystem, e.g. ``gs://``, which pyarrow gives no
  precondition for): check that no lock exists, put ours, wait :data:`SETTLE_S`, read it back;
  a run that finds another run's token there refuses. Of two runs that both passed the check,
  the one whose put landed last keeps the lock and the other refuses, provided each put completes
  within :data:`SETTLE_S` and reads see the latest put (strong read-after-write consistency, as
  on GCS and S3). It is not an atomic primitive: docs/object-storage.md says so.

Both refuse a second run with the holder's pid, host and start time (the caller's message).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import pyarrow.fs as pafs

from raybench.errors import ResultsError

__all__ = ["SETTLE_S", "ConditionalPut", "WriteThenVerify", "lock_primitive"]

#: Seconds a write-then-verify lock waits before reading its lock back.
SETTLE_S = 2.0


class ConditionalPut:
    """The lock object created with conditional puts on S3 (boto3's client, same endpoint)."""

    def __init__(self, fs: pafs.S3FileSystem, uri: str) -> None:
        try:
            import boto3
            from botocore.exceptions import ClientError
        except ImportError as exc:
            raise ResultsError(
                "an s3:// results location needs boto3 for its run lock (an atomic conditional "
                "put; pyarrow has none): pip install 'raybench[s3]' (docs/object-storage.md)"
            ) from exc
        self._client_error = ClientError
        query = {k: v[-1] for k, v in parse_qs(uri.partition("?")[2]).items()}
        endpoint = query.get("endpoint_override")
        if endpoint and "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        self.client: Any = boto3.client(
            "s3", region_name=query.get("region") or fs.region or None, endpoint_url=endpoint
        )

    @staticmethod
    def _key(path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, key

    def _refused(self, exc: Exception) -> bool:
        """True when the server refused the precondition (the key exists / changed)."""
        if not isinstance(exc, self._client_error):
            return False
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in (409, 412)  # 409: a concurrent conditional write won

    def create(self, path: str, data: bytes) -> bool:
        """Put ``data`` at ``path`` if no object is there; False if one is."""
        bucket, key = self._key(path)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as exc:
            if self._refused(exc):
                return False
            raise
        return True

    def take_over(self, path: str, data: bytes, stale_token: Any) -> bool:
        """Replace the lock at ``path`` by ``data`` if it is still the one of ``stale_token``
        (a put with ``If-Match`` on the ETag read with it); False if it changed meanwhile."""
        bucket, key = self._key(path)
        try:
            found = self.client.get_object(Bucket=bucket, Key=key)
            content = json.loads(found["Body"].read().decode() or "{}")
            if not isinstance(content, dict) or content.get("token") != stale_token:
                return False
            self.client.put_object(Bucket=bucket, Key=key, Body=data, IfMatch=found["ETag"])
        except ValueError:
            return False
        except Exception as exc:
            if self._refused(exc) or _missing(exc):
                return False
            raise
        return True


class WriteThenVerify:
    """Put the lock, wait, read it back (see the module's notes: not atomic)."""

    def __init__(self, fs: pafs.FileSystem, settle_s: float = SETTLE_S) -> None:
        self.fs = fs
        self.settle_s = settle_s

    def create(self, path: str, data: bytes) -> bool:
        """False if a lock exists, or if another run's lock replaced ours while settling."""
        if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            return False
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        time.sleep(self.settle_s)
        try:
            with self.fs.open_input_stream(path) as stream:
                return stream.read() == data
        except FileNotFoundError:
            return False


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404


def lock_primitive(fs: pafs.FileSystem, uri: str) -> ConditionalPut | WriteThenVerify:
    """The primitive that creates the lock on ``fs`` (not local): see the module's notes."""
    if isinstance(fs, pafs.S3FileSystem):
        return ConditionalPut(fs, uri)
    return WriteThenVerify(fs)
