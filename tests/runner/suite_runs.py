"""Running a small suite given as YAML text end to end, as ``raybench run`` does."""

from __future__ import annotations

from pathlib import Path


def run_suite_text(text: str, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Write ``text`` as a suite (``tmp_path/s.yaml``), prepare its data under ``tmp_path/data``
    and run it into ``tmp_path/r`` as ``raybench run`` does, every trial succeeding.

    Returns ``(suite_path, results, data)``.
    """
    from raybench.cli.prepare import prepare
    from raybench.plan.spec import plan_json
    from raybench.runner import RunOptions, run_plan
    from raybench.store import ResultStore

    suite_path, results, data = tmp_path / "s.yaml", tmp_path / "r", tmp_path / "data"
    suite_path.write_text(text)
    prep = prepare(suite_path, data, materialize=True)
    files = {"suite.yaml": text.encode(), "plan.json": plan_json(prep.plan)}
    options = RunOptions(cache_dir=data / "cache", files=files)
    summary = run_plan(prep.plan, prep.cohorts, ResultStore(str(results)), options)
    assert summary.ok, summary.failed
    return suite_path, results, data
