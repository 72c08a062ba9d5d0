"""run_plan with a damaged results file and with a full disk (issue 12, items 5 and 7).

A damaged trial is redone by the next run; a commit that hits ENOSPC in a worker stops the run with
a StorageError, records no failed row (it is not the model's failure), releases the lock, and the
resumed run completes the trial.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import fakes
import pyarrow.fs as pafs
import pytest

from raybench.errors import StorageError
from raybench.runner import RunOptions, run_plan
from raybench.store import ResultStore

pytestmark = pytest.mark.slow

fsspec = pytest.importorskip("fsspec")


class FullDisk(pafs.FSSpecHandler):
    """A local filesystem whose ``predictions`` writes fail with ENOSPC while ``flag`` exists (the
    flag is a file, so the workers of Ray see it too). Not a ``LocalFileSystem``, so the store
    commits to it as to an object store: one put per table, no staging."""

    def __init__(self, flag: str) -> None:
        super().__init__(fsspec.filesystem("file"))
        self.flag = flag

    def __reduce__(self):  # type: ignore[override]
        return (FullDisk, (self.flag,))

    def open_output_stream(self, path, metadata):  # type: ignore[override]
        if "/predictions/" in path and Path(self.flag).exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().open_output_stream(path, metadata)


def test_enospc_in_a_worker_stops_the_run_without_recording_a_failure(ray_session, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    flag = tmp_path / "disk-full"
    flag.touch()
    root = tmp_path / "results"
    store = ResultStore(str(root), filesystem=pafs.PyFileSystem(FullDisk(str(flag))))
    plan = fakes.plan(("refit", [fakes.spec("a"), fakes.spec("b")]))
    opts = RunOptions(trial_fn=fakes.fake_trial, max_retries=0)
    with pytest.raises(StorageError, match="disk \\(or quota\\) is full"):
        run_plan(plan, {"toy": fakes.cohort()}, store, opts)
    assert not (root / ".lock").exists()  # released
    assert store.committed_ids() == []  # no failed row: resume redoes the trials
    assert not list(root.glob("*/.tmp/*"))  # nothing half-written
    flag.unlink()  # space freed
    summary = run_plan(plan, {"toy": fakes.cohort()}, store, opts)
    assert sorted(summary.completed) == ["a", "b"] and summary.ok


def test_a_damaged_trial_is_run_again(ray_session, store):
    plan = fakes.plan(("refit", [fakes.spec("a"), fakes.spec("b")]))
    opts = RunOptions(trial_fn=fakes.fake_trial)
    first = run_plan(plan, {"toy": fakes.cohort()}, store, opts)
    assert sorted(first.completed) == ["a", "b"]
    damaged = Path(store.uri) / "splits" / "b.parquet"
    damaged.write_bytes(damaged.read_bytes()[:40])  # truncated
    assert store.status(planned=["a", "b"])["damaged"]["b"]["file"] == str(damaged)
    again = run_plan(plan, {"toy": fakes.cohort()}, store, opts)
    assert again.skipped == ("a",) and again.completed == ("b",)
    assert store.committed_ids() == ["a", "b"] and store.status()["damaged"] == {}
