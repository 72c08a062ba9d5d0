"""The result store: atomic commits, readers (polars, DuckDB), lock, provenance rows."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import duckdb
import polars as pl
import pyarrow.fs as pafs
import pytest

from raybench.errors import ResultsError
from raybench.store import ResultStore, table_from_rows
from raybench.store.schemas import SCHEMAS, TABLES, conform


def test_commit_then_polars_and_duckdb_read_every_table(make_tables, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "res")
    for t in ("t1", "t2"):
        store.commit(t, make_tables(t))
    assert store.committed_ids() == ["t1", "t2"] == store.completed_ids()
    assert store.failed_ids() == []
    for name in TABLES:
        frame = store.scan(name).collect()
        assert frame.columns == SCHEMAS[name].names and frame["trial_id"].n_unique() == 2
        files = str(tmp_path / "res" / name / "*.parquet")
        assert pl.scan_parquet(files).collect().height == frame.height
        count = duckdb.sql(
            f"select count(*), count(distinct trial_id) from read_parquet('{files}')"
        )
        assert count.fetchall() == [(frame.height, 2)]
    trials = store.scan("trials").collect().row(0, named=True)
    assert trials["status"] == "completed" and trials["node"] == socket.gethostname()
    assert (
        trials["torch_version"] and trials["python_version"] and trials["params"] == '{"lr": 0.001}'
    )
    assert not list((tmp_path / "res").glob("*/.tmp/*"))


class _FailingRename(pafs.LocalFileSystem):
    """A local filesystem whose rename of the ``trials`` file fails (a crash mid-commit)."""

    moves: ClassVar[list[str]] = []

    def move(self, src: str, dest: str) -> None:
        if "/trials/" in dest:
            raise OSError("disk full")
        self.moves.append(dest)
        super().move(src, dest)


def test_failure_mid_commit_leaves_no_committed_trial(make_tables, tmp_path: Path) -> None:
    broken = ResultStore(str(tmp_path / "res"), filesystem=_FailingRename())
    with pytest.raises(OSError, match="disk full"):
        broken.commit("t1", make_tables("t1"))
    assert len(_FailingRename.moves) == 5  # predictions, epochs, splits, explanations, features
    store = ResultStore(tmp_path / "res")
    assert store.committed_ids() == []
    for name in TABLES:
        assert store.scan(name).collect().height == 0  # orphans are invisible
    assert not list((tmp_path / "res").glob("*/.tmp/*"))
    store.commit("t1", make_tables("t1"))  # the retry overwrites the orphans
    assert store.committed_ids() == ["t1"] and store.scan("predictions").collect().height == 1


def test_failed_trial_rows_and_bad_tables(make_tables, tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path / "res"))
    failed = table_from_rows("trials", [{"trial_id": "bad", "status": "failed", "error": "boom"}])
    store.commit("bad", {"trials": failed})
    assert store.failed_ids() == ["bad"] and store.completed_ids() == []
    with pytest.raises(ResultsError, match="'trials' table is required"):
        store.commit("x", {"predictions": make_tables("x")["predictions"]})
    with pytest.raises(ResultsError, match="rows of other trials"):
        store.commit("x", make_tables("y"))
    with pytest.raises(ResultsError, match=r"missing columns \['severity'"):
        conform("predictions", make_tables("x")["predictions"].drop(["severity"]))
    with pytest.raises(ResultsError, match="unknown column"):
        table_from_rows("epochs", [{"trial_id": "x", "epochz": 1}])
    assert store.committed_ids() == ["bad"]


def test_lock_refuses_a_second_holder_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "res")
    with (
        store.lock(),
        pytest.raises(ResultsError, match=f"pid {os.getpid()} on host"),
        store.lock(),
    ):
        pass
    assert not (tmp_path / "res" / ".lock").exists()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / "res" / ".lock").write_text(
        f'{{"pid": {int(dead.stdout)}, "hostname": "{socket.gethostname()}", "token": "old"}}'
    )
    with store.lock() as held:
        assert held.token != "old"
    (tmp_path / "res" / ".lock").write_text('{"pid": 1, "hostname": "elsewhere", "token": "x"}')
    with pytest.raises(ResultsError, match="host elsewhere"), store.lock():
        pass


def test_cleanup_tmp_and_pickling(make_tables, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "res")
    stale = tmp_path / "res" / "predictions" / ".tmp"
    stale.mkdir(parents=True)
    (stale / "t9.abc.parquet").write_bytes(b"half")
    assert store.cleanup_tmp() == 1 and not list(stale.iterdir())
    (stale / "t9.def.parquet").write_bytes(b"half")
    with store.lock():
        assert not list(stale.iterdir())  # taking the lock clears what a killed run left
    clone = pickle.loads(pickle.dumps(store))
    clone.commit("t1", make_tables("t1"))
    assert store.committed_ids() == ["t1"]


def test_any_pyarrow_filesystem(make_tables, tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    store = ResultStore("/rb-test-store", filesystem=fs)
    with store.lock():
        store.commit("t1", make_tables("t1"))
        with pytest.raises(ResultsError, match="in use by another run"), store.lock():
            pass
    assert store.committed_ids() == ["t1"]
    assert store.scan("splits").collect().height == 3
    with pytest.raises(ResultsError, match="not a usable pyarrow filesystem URI"):
        ResultStore("nosuchscheme://bucket/x")


def test_rows_never_hold_environment_secrets(
    make_tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wandb-key-0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    store = ResultStore(tmp_path / "res")
    store.commit("t1", make_tables("t1"))
    for path in (tmp_path / "res").rglob("*.parquet"):
        assert secret.encode() not in path.read_bytes()


def test_write_file_creates_nested_folders_and_leaves_no_staged_file(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "res")
    store.write_file("maps/t1/sub-01_gradcam.nii.gz", b"map")
    assert (tmp_path / "res" / "maps" / "t1" / "sub-01_gradcam.nii.gz").read_bytes() == b"map"
    assert [p.name for p in (tmp_path / "res" / "maps" / "t1").iterdir()] == [
        "sub-01_gradcam.nii.gz"
    ]


def test_a_relative_path_survives_pickling_into_another_directory(
    make_tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray workers unpickle the store with another working directory: a relative path would
    # commit into the worker's directory and the driver would see no committed trial

    monkeypatch.chdir(tmp_path)
    store = ResultStore("results/rel")
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pickle.loads(pickle.dumps(store)).commit("t1", make_tables("t1"))
    assert list(ResultStore(tmp_path / "results" / "rel").committed_ids()) == ["t1"]
