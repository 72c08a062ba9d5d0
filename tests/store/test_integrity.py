"""Issue 12 items 5, 6, 7, 13: damaged files, another suite, full or read-only disks, bad locks.

Each test here failed before its fix: a truncated file read as "completed", a second suite pooled
silently, ENOSPC ended in a traceback, an empty lock file blamed "pid None".
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from raybench_analysis import load
from raybench_analysis._frames import AnalysisError
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.errors import ResultsError, StorageError
from raybench.store import ResultStore, table_from_rows
from raybench.store.faults import storage_errors


def _store(make_tables, tmp_path: Path, ids: tuple[str, ...] = ("t1", "t2")) -> ResultStore:
    store = ResultStore(tmp_path / "res")
    for trial_id in ids:
        store.commit(trial_id, make_tables(trial_id))
    (tmp_path / "res" / "plan.json").write_text(
        json.dumps({"suite": "s1", "stages": [{"trials": [{"trial_id": t} for t in ids]}]})
    )
    return store


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --------------------------------------------------------------------------- item 5: integrity


def test_commit_records_each_tables_row_count(make_tables, tmp_path: Path) -> None:
    store = _store(make_tables, tmp_path, ("t1",))
    row = store.scan("trials").collect().row(0, named=True)
    assert (row["rows_predictions"], row["rows_epochs"], row["rows_splits"]) == (1, 1, 3)
    failed = table_from_rows("trials", [{"trial_id": "f", "status": "failed"}])
    store.commit("f", {"trials": failed})
    row = store.scan("trials").filter(pl.col("trial_id") == "f").collect().row(0, named=True)
    assert (row["rows_predictions"], row["rows_epochs"], row["rows_splits"]) == (0, 0, 0)


@pytest.mark.parametrize(
    ("table", "damage", "reason"),
    [
        ("predictions", "truncate", "unreadable"),
        ("splits", "truncate", "unreadable"),
        ("splits", "fewer_rows", "holds 1 rows; trials recorded 3"),
        ("predictions", "wrong_type", "column 'y_true' is string"),
        ("epochs", "delete", "missing; trials recorded 1 rows"),
        ("trials", "truncate", "unreadable"),
    ],
)
def test_a_damaged_trial_is_reported_not_committed_and_named(
    make_tables, tmp_path: Path, table: str, damage: str, reason: str
) -> None:
    store = _store(make_tables, tmp_path)
    path = tmp_path / "res" / table / "t2.parquet"
    if damage == "truncate":
        _truncate(path)
    elif damage == "fewer_rows":
        pq.write_table(pq.read_table(path).slice(0, 1), path)
    elif damage == "wrong_type":
        bad = pq.read_table(path)
        column = bad.schema.get_field_index("y_true")
        bad = bad.set_column(column, "y_true", pa.array(["1.0"] * bad.num_rows))
        pq.write_table(bad, path)
    else:
        path.unlink()

    # the runner asks for committed ids: t2 is not among them, so `run` redoes it
    assert store.committed_ids() == ["t1"] == store.completed_ids()
    st = store.status()
    assert st["damaged"] == {"t2": {"file": str(path), "reason": st["damaged"]["t2"]["reason"]}}
    assert reason in st["damaged"]["t2"]["reason"]
    assert st["completed"] == 1 and st["pending"] == ["t2"]
    assert store.scan(table).collect()["trial_id"].unique().to_list() in ([], ["t1"])

    res = CliRunner().invoke(app, ["status", str(tmp_path / "res")])
    assert res.exit_code == 2, res.output
    assert "damaged" in res.output and "t2.parquet" in res.output

    with pytest.raises(AnalysisError, match=f"{table}/t2.parquet of trial t2 is damaged"):
        load(tmp_path / "res")

    store.commit("t2", make_tables("t2"))  # the rerun repairs it
    assert store.committed_ids() == ["t1", "t2"] and store.status()["damaged"] == {}
    assert load(tmp_path / "res").predictions.collect().height == 2


def test_a_failed_rerun_removes_the_stale_files_of_the_earlier_attempt(
    make_tables, tmp_path: Path
) -> None:
    store = _store(make_tables, tmp_path, ("t1",))
    _truncate(tmp_path / "res" / "predictions" / "t1.parquet")
    assert store.committed_ids() == []
    failed = table_from_rows("trials", [{"trial_id": "t1", "status": "failed", "error": "x"}])
    store.commit("t1", {"trials": failed})  # the rerun failed: a failed trial, not a damaged one
    assert store.failed_ids() == ["t1"] and store.status()["damaged"] == {}
    assert not (tmp_path / "res" / "predictions" / "t1.parquet").exists()


def test_verification_reads_footers_only(
    make_tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(make_tables, tmp_path)
    read = []
    original_table, original_read = pq.read_table, pq.ParquetFile.read

    def spy_table(source, *args, **kwargs):
        read.append(source)
        return original_table(source, *args, **kwargs)

    def spy_read(self, *args, **kwargs):
        read.append(self)
        return original_read(self, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", spy_table)
    monkeypatch.setattr(pq.ParquetFile, "read", spy_read)
    assert store.committed_ids() == ["t1", "t2"]
    # at most the two one-row trials files (read together by polars, or one by one);
    # predictions/splits/epochs/explanations: footers only
    assert len(read) <= 2


# --------------------------------------------------------------------------- item 6: suite change


def test_another_suite_is_refused_unless_it_only_adds_trials_or_is_allowed(
    make_tables,
    tmp_path: Path,
) -> None:
    store = _store(make_tables, tmp_path)
    (tmp_path / "res" / "suite.yaml").write_bytes(b"name: s1\n")
    assert store.check_suite(b"name: s1\n", ["t1", "t2"]).rule == "same"
    added = store.check_suite(b"name: s1\nseeds: 2\n", ["t1", "t2", "t3"])
    assert added.rule == "adds_trials" and added.changed and "only adds trials" in added.message
    with pytest.raises(ResultsError, match="written by another suite") as refused:
        store.check_suite(b"name: s2\n", ["u1", "u2"])
    assert "--allow-suite-change" in str(refused.value) and "2 trial(s)" in str(refused.value)
    allowed = store.check_suite(b"name: s2\n", ["u1"], allow_change=True)
    assert allowed.rule == "allowed" and "--allow-suite-change" in allowed.message
    assert ResultStore(tmp_path / "new").check_suite(b"x", ["a"]).rule == "new"


def test_status_counts_trials_the_plan_does_not_list(make_tables, tmp_path: Path) -> None:
    store = _store(make_tables, tmp_path)
    (tmp_path / "res" / "plan.json").write_text(
        json.dumps({"suite": "s2", "stages": [{"trials": [{"trial_id": "t1"}]}]})
    )
    st = store.status()
    assert (st["planned"], st["completed"], st["unplanned"]) == (1, 2, ["t2"])


# --------------------------------------------------------------------------- item 7: full disk


def _enospc_after_some_bytes(monkeypatch: pytest.MonkeyPatch, tables: set[str]) -> list[str]:
    """Make the store's Parquet writes of ``tables`` leave half a file, then fail with ENOSPC."""
    original = pq.write_table
    written: list[str] = []

    def write_table(table, where, *args, **kwargs):
        if any(f"/{name}/.tmp/" in where for name in tables):
            Path(where).write_bytes(b"PAR1 half a file")
            written.append(where)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(table, where, *args, **kwargs)

    monkeypatch.setattr("raybench.store.writer.pq.write_table", write_table)
    return written


@pytest.mark.parametrize("table", ["predictions", "trials"])
def test_enospc_during_a_commit_leaves_nothing_and_releases_the_lock(
    make_tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str
) -> None:
    store = _store(make_tables, tmp_path, ("t1",))
    written = _enospc_after_some_bytes(monkeypatch, {table})
    with pytest.raises(StorageError) as caught, store.lock():
        store.commit("t2", make_tables("t2"))
    message = str(caught.value)
    assert "disk (or quota) is full" in message and "ENOSPC" in message
    assert str(tmp_path / "res") in message and "trial t2" in message
    assert caught.value.exit_code == 2 and isinstance(caught.value, ResultsError)
    assert written and not any(Path(p).exists() for p in written)
    assert not list((tmp_path / "res").glob("*/.tmp/*"))  # nothing half-written
    assert not (tmp_path / "res" / ".lock").exists()  # lock released
    assert store.committed_ids() == ["t1"]  # t2 not committed, not failed: redone on resume
    assert not (tmp_path / "res" / "trials" / "t2.parquet").exists()


def test_a_real_enospc_from_pyarrow_is_recognised() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    table = pa.table({"a": list(range(100_000))})
    # through a stream: given a path, pq.write_table deletes it on failure (/dev/full included)
    with (
        pytest.raises(StorageError, match="ENOSPC"),
        storage_errors("a test file", "/dev/full"),
        pafs.LocalFileSystem().open_output_stream("/dev/full") as stream,
    ):
        pq.write_table(table, stream)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_results_directory_is_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    store = ResultStore(tmp_path / "res")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("raybench.store.reader.os.open", refuse)
    with pytest.raises(StorageError, match="read-only or not writable") as caught, store.lock():
        pass
    assert str(tmp_path / "res" / ".lock") in str(caught.value)


def test_read_only_directory_with_chmod(make_tables, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions; the injected EROFS/EACCES tests cover it")
    store = _store(make_tables, tmp_path, ("t1",))
    (tmp_path / "res").chmod(0o555)
    try:
        with pytest.raises(StorageError, match="read-only"), store.lock():
            pass
    finally:
        (tmp_path / "res").chmod(0o755)


def test_other_os_errors_pass_unchanged() -> None:
    with pytest.raises(OSError, match="something else"), storage_errors("x", "/y"):
        raise OSError("something else")


# --------------------------------------------------------------------------- item 13: lock file


@pytest.mark.parametrize("content", [b"", b"\x00garbage{", b'["a list"]'])
def test_an_unreadable_lock_says_so_and_how_to_clear_it(
    make_tables, tmp_path: Path, content: bytes
) -> None:
    store = _store(make_tables, tmp_path, ("t1",))
    lock = tmp_path / "res" / ".lock"
    lock.write_bytes(content)
    with pytest.raises(ResultsError) as caught, store.lock():
        pass
    message = str(caught.value)
    assert "unreadable" in message and f"delete {str(lock)!r}" in message
    assert "pid None" not in message
    assert lock.exists()  # never removed behind the user's back
    assert store.status()["running"]["unreadable"] is True
    res = CliRunner().invoke(app, ["status", str(tmp_path / "res")])
    assert res.exit_code == 0 and "unreadable" in res.output


def test_trials_files_written_before_the_row_counts_still_read(make_tables, tmp_path: Path) -> None:
    store = _store(make_tables, tmp_path)
    old = tmp_path / "res" / "trials" / "t1.parquet"
    counts = ["rows_predictions", "rows_epochs", "rows_splits"]
    pq.write_table(pq.read_table(old).drop_columns(counts), old)  # as an older raybench wrote it
    assert store.committed_ids() == ["t1", "t2"]  # no counts recorded: readable files suffice
    trials = store.scan("trials").collect().sort("trial_id")
    assert trials["rows_splits"].to_list() == [None, 3]
    assert load(tmp_path / "res").trials.collect().sort("trial_id")["rows_splits"][1] == 3


class _FullOnRename(pafs.LocalFileSystem):
    """A local filesystem whose renames fail with ENOSPC (the disk filled while writing)."""

    def move(self, src: str, dest: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_root_files_are_written_whole_or_not_at_all(tmp_path: Path) -> None:
    ResultStore(tmp_path / "res").write_file("suite.yaml", b"name: s1\n")
    store = ResultStore(str(tmp_path / "res"), filesystem=_FullOnRename())
    assert store.read_file("suite.yaml") == b"name: s1\n"
    with pytest.raises(StorageError, match=r"cannot write plan\.json"):
        store.write_file("plan.json", b"{}")
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["suite.yaml"]


def test_run_refuses_another_suites_directory_unless_allowed(tmp_path: Path) -> None:
    suite = Path(__file__).resolve().parents[2] / "suites" / "quickstart.yaml"
    store = ResultStore(tmp_path / "res")
    row = table_from_rows("trials", [{"trial_id": "other", "status": "completed"}])
    store.commit("other", {"trials": row})
    store.write_file("suite.yaml", b"name: another suite\n")
    args = ["run", str(suite), "--results", str(tmp_path / "res"), "--dry-run"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert "written by another suite" in refused.output and "e.g. other" in refused.output
    allowed = CliRunner().invoke(app, [*args, "--allow-suite-change"])
    assert allowed.exit_code == 0, allowed.output
    assert "allowed by --allow-suite-change" in " ".join(allowed.output.split())


def test_analyze_names_the_damaged_file(make_tables, tmp_path: Path) -> None:
    _store(make_tables, tmp_path)
    _truncate(tmp_path / "res" / "predictions" / "t2.parquet")
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "res")])
    assert res.exit_code == 2, res.output
    assert "predictions/t2.parquet of trial t2 is damaged" in " ".join(res.output.split())
