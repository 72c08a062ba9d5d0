"""``raybench compact``: batch files read as per-trial files did, at every point of the protocol.

Compaction is checked the way it can go wrong: the tables read differently afterwards, a kill
between committing the batch and deleting the per-trial files duplicates rows, a damaged batch goes
unnoticed, a trial redone after compaction is shadowed by its old rows, or a run is compacting
under another's feet.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from raybench_analysis import load
from raybench_analysis.contract import DATA_TABLES, TABLE_NAMES
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.errors import ResultsError
from raybench.store import ResultStore

IDS = ("t1", "t2", "t3", "t4", "t5")


def _store(make_tables, root: Path) -> ResultStore:
    store = ResultStore(root)
    for trial_id in IDS:
        store.commit(trial_id, make_tables(trial_id))
    trials = make_tables("t6")["trials"]
    status = trials.schema.get_field_index("status")
    failed = trials.set_column(status, trials.schema.field(status), pa.array(["failed"]))
    store.commit("t6", {"trials": failed})
    (root / "plan.json").write_text(
        json.dumps({"suite": "s1", "stages": [{"trials": [{"trial_id": t} for t in (*IDS, "t6")]}]})
    )
    return store


def _tables(root: Path) -> dict[str, pl.DataFrame]:
    res = load(root)
    out = {}
    for table in TABLE_NAMES:
        frame = getattr(res, table).collect()
        sort = [
            c for c in ("trial_id", "sample_id", "epoch", "split", "role") if c in frame.columns
        ]
        out[table] = frame.sort(sort)
    return out


def _files(root: Path, table: str) -> list[str]:
    return sorted(p.name for p in (root / table).glob("*.parquet"))


def test_compaction_reads_the_same_and_keeps_resume_status_and_integrity(make_tables, tmp_path):
    root = tmp_path / "res"
    store = _store(make_tables, root)
    before, status_before = _tables(root), store.status()
    done = store.compact(batch_trials=3)
    assert (done.trials, done.batches) == (5, 2)
    for table in TABLE_NAMES:
        names = _files(root, table)
        assert len([n for n in names if n.startswith("_batch-")]) == 2, table
        assert [n for n in names if not n.startswith("_batch-")] == (
            ["t6.parquet"] if table == "trials" else []
        ), table
        assert _tables(root)[table].equals(before[table]), table
    assert store.status() == status_before
    assert store.statuses() == {**dict.fromkeys(IDS, "completed"), "t6": "failed"}
    # resume: the failed trial is redone as a per-trial commit; nothing else moves
    store.commit("t6", make_tables("t6"))
    assert store.completed_ids() == [*IDS, "t6"]
    again = store.compact()
    assert (again.trials, again.batches) == (1, 1)
    assert _tables(root)["predictions"]["trial_id"].to_list() == [*IDS, "t6"]

    # integrity: a truncated batch file makes each of its trials damaged; a redo reads anew
    batch = next(p for p in sorted((root / "predictions").glob("_batch-*")))
    batch.write_bytes(batch.read_bytes()[:100])
    damaged = store.status()["damaged"]
    assert 1 <= len(damaged) <= 3 and all(d["file"] == str(batch) for d in damaged.values())
    assert all(t not in store.completed_ids() for t in damaged)
    redo = sorted(damaged)[0]
    store.commit(redo, make_tables(redo))
    assert redo in store.completed_ids() and redo not in store.status()["damaged"]


def test_a_compaction_cut_short_reads_the_same_and_is_finished_by_the_next(make_tables, tmp_path):
    root = tmp_path / "res"
    _store(make_tables, root)
    before = _tables(root)
    saved = tmp_path / "saved"
    shutil.copytree(root, saved)
    store = ResultStore(root)
    store.compact()
    # killed after the batch was committed, before any per-trial file was deleted
    for table in TABLE_NAMES:
        for path in (saved / table).glob("*.parquet"):
            shutil.copy(path, root / table / path.name)
    # and another one killed before its trials batch file was written
    stray = root / "predictions" / "_batch-29990101T000000-deadbeef.parquet"
    shutil.copy(next((root / "predictions").glob("_batch-*")), stray)
    after = _tables(root)
    for table in TABLE_NAMES:
        assert after[table].equals(before[table]), table
    assert store.status()["completed"] == len(IDS) and not store.status()["damaged"]
    store.compact()
    assert not stray.exists()
    for table in DATA_TABLES:
        assert [n for n in _files(root, table) if not n.startswith("_batch-")] == [], table
    for table in TABLE_NAMES:
        assert _tables(root)[table].equals(before[table]), table


def test_compaction_is_refused_while_a_run_holds_the_lock_and_the_cli_reports(
    make_tables, tmp_path
):
    root = tmp_path / "res"
    store = _store(make_tables, root)
    with store.lock(), pytest.raises(ResultsError, match="in use by another run"):
        ResultStore(root).compact()
    res = CliRunner().invoke(app, ["compact", str(root), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["trials"] == len(IDS)
    status = CliRunner().invoke(app, ["status", str(root), "--json"])
    assert json.loads(status.stdout.strip().splitlines()[-1])["completed"] == len(IDS)
    with pytest.raises(ResultsError, match="cannot name a results file"):
        store.commit("_batch-x", make_tables("t1"))
