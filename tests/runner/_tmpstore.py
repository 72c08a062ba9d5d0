"""Temporary local store double used until raybench.store lands (same methods)."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from raybench.errors import ResultsError


class DirStore:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.root = Path(uri)

    def commit(self, trial_id, tables):
        order = [t for t in tables if t != "trials"] + ["trials"]
        for name in order:
            tmp = self.root / name / ".tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            path = tmp / f"{trial_id}.{uuid.uuid4().hex}.parquet"
            pq.write_table(tables[name], path)
            os.replace(path, self.root / name / f"{trial_id}.parquet")

    def committed_ids(self):
        d = self.root / "trials"
        return {p.stem for p in d.glob("*.parquet")} if d.exists() else set()

    def failed_ids(self):
        if not self.committed_ids():
            return set()
        f = self.scan("trials").filter(pl.col("status") == "failed").collect()
        return set(f["trial_id"].to_list())

    def scan(self, table):
        return pl.scan_parquet(str(self.root / table / "*.parquet"))

    @contextmanager
    def lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.root / ".lock"
        if p.exists() and _alive(int(p.read_text())):
            raise ResultsError(f"{self.root} is locked by pid {p.read_text()}")
        p.write_text(str(os.getpid()))
        try:
            yield
        finally:
            p.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
