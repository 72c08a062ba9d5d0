"""``raybench validate`` and ``raybench schema`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from suite_corpus import GOOD, snapshot
from typer.testing import CliRunner

import raybench.data
from raybench.cli.main import app
from raybench.errors import DataError
from raybench.suite import suite_json_schema

runner = CliRunner()
DESIGN = Path(__file__).parent / "good" / "design.yaml"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_valid_suite_exits_0_with_a_summary(path: Path, in_tmp: Path) -> None:
    before = snapshot(path.parent)
    result = runner.invoke(app, ["validate", str(path), "--no-data"])
    assert result.exit_code == 0, result.output
    assert f"{path}: suite " in result.stdout and " is valid: " in result.stdout
    assert list(in_tmp.iterdir()) == [] and snapshot(path.parent) == before


def test_json_summary_counts_search_points(in_tmp: Path) -> None:
    result = runner.invoke(app, ["validate", str(DESIGN), "--no-data", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["problems"] == []
    s = report["summary"]
    # lr has 2 values and resnet's dropout 2: 4 points for resnet (the largest grid).
    assert s["search_points"] == 4
    assert s["models"] == ["densenet", "resnet"] and s["seeds"] == 3
    assert s["protocols"] == ["outer", "leave_one_site_out"]
    assert report["data"]["checked"] is False


def test_data_checks_call_check_dataset_per_dataset(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path]] = []

    def check_dataset(spec: Any, suite_dir: Path, task: Any = None) -> None:
        assert task is not None and task.label == "diagnosis"
        calls.append((spec.name, suite_dir))
        if spec.source == "manifest":
            raise DataError(f"{suite_dir / spec.path}: no such manifest")

    monkeypatch.setattr(raybench.data, "check_dataset", check_dataset, raising=False)
    result = runner.invoke(app, ["validate", str(DESIGN)])
    assert result.exit_code == 2
    assert calls == [("synth", DESIGN.parent), ("oasis", DESIGN.parent)]
    # The dataset is located in the suite (line 5 of design.yaml, its flow mapping at column 5).
    manifest = DESIGN.parent / "data/oasis.tsv"
    assert f"{DESIGN}:5:5: datasets[1] ('oasis'): {manifest}: no such manifest" in result.stderr
    result = runner.invoke(app, ["validate", str(DESIGN), "--json"])
    assert json.loads(result.stdout)["data"]["errors"][0]["dataset"] == "oasis"
    assert list(in_tmp.iterdir()) == []


def test_data_checks_are_skipped_with_a_note_when_unavailable(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(raybench.data, "check_dataset", raising=False)
    result = runner.invoke(app, ["validate", str(DESIGN)])
    assert result.exit_code == 0
    assert "data checks skipped" in result.stdout


def test_missing_file_exits_2(in_tmp: Path) -> None:
    result = runner.invoke(app, ["validate", "nope.yaml"])
    assert result.exit_code == 2
    assert "nope.yaml: no such file" in result.stderr


def test_brackets_in_messages_survive_the_console(in_tmp: Path) -> None:
    bad = Path(__file__).parent / "bad" / "segmentation_stratify.yaml"
    result = runner.invoke(app, ["validate", str(bad)])
    assert "use [] or [site]" in result.stderr


def test_schema_prints_the_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == suite_json_schema()
