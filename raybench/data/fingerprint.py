"""Dataset fingerprints: content hashes that are stable across machines and go into trial ids.

A file-based cohort (manifest, BIDS) is fingerprinted by the sha256 of a canonical JSON document
holding its normalised table (columns sorted, rows sorted by ``sample_id``, paths relative to the
data root) and, for each referenced file, its relative path, size and content sha256. Content
hashes are memoised in ``<data root>/.raybench-hashes.json`` keyed by absolute path, size and
``mtime_ns``, so only new or changed files are read again. A synthetic cohort is fingerprinted by
its generator parameters and generator version: its content is a deterministic function of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from raybench.suite.schema import SyntheticParams

HASH_CACHE_NAME = ".raybench-hashes.json"
PATH_COLUMNS = ("image", "mask")
_CHUNK = 1 << 20


def canonical_hash(document: Any) -> str:
    """sha256 hex digest of ``document`` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_identity(params: SyntheticParams) -> dict[str, Any]:
    """What determines a synthetic cohort's bytes: generator name, version and parameters."""
    from raybench.data.phantom import GENERATOR_VERSION

    dump = params.model_dump(mode="json")
    for key, default in ADDED_PARAMS.items():  # absent at their default: fingerprints kept
        if dump.get(key) == default:
            dump.pop(key)
    return {"generator": "raybench.synthetic", "version": GENERATOR_VERSION, "params": dump}


#: Generator parameters added after version 1, with the default that leaves a cohort as before.
ADDED_PARAMS: dict[str, Any] = {
    "site_weights": None,
    "lesion_scale": 1.0,
    "subject_prefix": "",
    "shortcut": None,
}


def synthetic_fingerprint(params: SyntheticParams) -> str:
    """Fingerprint of a synthetic cohort (no file is read: the content follows from the params).

    Examples:
        >>> from raybench.suite.schema import SyntheticParams
        >>> a = synthetic_fingerprint(SyntheticParams(seed=1))
        >>> a == synthetic_fingerprint(SyntheticParams(seed=1)), a == synthetic_fingerprint(
        ...     SyntheticParams(seed=2))
        (True, False)
    """
    return canonical_hash(synthetic_identity(params))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """Memo of file content hashes, keyed by absolute path, size and ``mtime_ns``.

    Stored as a small JSON file under the data root; a missing, unreadable or corrupt memo is simply
    rebuilt, and a read-only data root just means nothing is memoised. ``write=False`` never writes.
    """

    def __init__(self, root: Path, *, write: bool = True) -> None:
        self.path = root / HASH_CACHE_NAME
        self.write = write
        self.changed = False
        try:
            loaded = json.loads(self.path.read_text())
            self.entries: dict[str, list[Any]] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def stat_and_hash(self, path: Path) -> tuple[int, str]:
        """``(size, sha256)`` of ``path``, from the memo when size and mtime are unchanged."""
        key = os.path.abspath(path)
        stat = path.stat()
        entry = self.entries.get(key)
        if isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            return stat.st_size, str(entry[2])
        digest = file_sha256(path)
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self.changed = True
        return stat.st_size, digest

    def save(self) -> None:
        """Write the memo atomically (temp file then rename); failures are ignored."""
        if not (self.write and self.changed):
            return
        with contextlib.suppress(OSError):
            fd, tmp = tempfile.mkstemp(prefix=".raybench-hashes.", dir=self.path.parent)
            with os.fdopen(fd, "w") as handle:
                json.dump(self.entries, handle, sort_keys=True)
            os.replace(tmp, self.path)


def _relative(value: str | None, base: Path) -> str | None:
    if value is None or not os.path.isabs(value):
        return value
    return Path(os.path.relpath(value, base)).as_posix()


def table_fingerprint(table: pl.DataFrame, base: Path, cache: HashCache) -> str:
    """Fingerprint of a file-based cohort table whose paths live under ``base`` (see module doc)."""
    paths = [c for c in PATH_COLUMNS if c in table.columns]
    normal = table.with_columns(
        pl.col(c).map_elements(lambda v: _relative(v, base), return_dtype=pl.String) for c in paths
    )
    normal = normal.select(sorted(normal.columns))
    if "sample_id" in normal.columns:
        normal = normal.sort("sample_id")
    files = []
    for column in paths:
        for value in sorted({v for v in table[column].to_list() if v}):
            size, digest = cache.stat_and_hash(Path(value))
            files.append([_relative(value, base), size, digest])
    cache.save()
    document = {
        "columns": normal.columns,
        "rows": normal.rows(),
        "files": sorted(files),
    }
    return canonical_hash(document)
