"""Every bad suite of tests/suite/bad/ fails with exactly the locations its header promises.

Each file starts with a comment saying what is wrong, then ``# expect: LINE:COL KEYPATH`` for each
problem and ``# contains: TEXT`` for what the message must say. The CLI exits 2 and writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from suite_corpus import BAD, expected, snapshot
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.errors import SuiteError
from raybench.suite import SuiteValidationError, load_suite

runner = CliRunner()


def _where(problem) -> tuple[int, int, str]:
    return (problem.line, problem.col, problem.key_path if problem.path else "-")


def test_corpus_is_large_and_each_file_promises_something() -> None:
    assert len(BAD) >= 18
    for path in BAD:
        exp = expected(path)
        assert exp.locations, f"{path.name} has no '# expect:' line"
        assert exp.contains, f"{path.name} has no '# contains:' line"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_load_reports_exact_locations(path: Path) -> None:
    exp = expected(path)
    with pytest.raises(SuiteValidationError) as info:
        load_suite(path)
    err = info.value
    assert isinstance(err, SuiteError) and err.exit_code == 2
    assert {_where(p) for p in err.problems} == exp.locations
    message = str(err)
    for line, col, key in exp.locations:
        located = f"{path}:{line}:{col}: " + ("" if key == "-" else f"{key}: ")
        assert located in message
    for text in exp.contains:
        assert text in message
    # Problems come in file order.
    order = [(p.line, p.col) for p in err.problems]
    assert order == sorted(order)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_cli_exits_2_prints_every_problem_and_writes_nothing(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = snapshot(path.parent)
    exp = expected(path)

    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    for line, col, key in exp.locations:
        assert f"{path}:{line}:{col}: " + ("" if key == "-" else f"{key}: ") in result.output

    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert {
        (p["line"], p["col"], p["key_path"] if p["path"] else "-") for p in report["problems"]
    } == exp.locations

    assert list(tmp_path.iterdir()) == []
    assert snapshot(path.parent) == before
