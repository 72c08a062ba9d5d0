"""``table`` imports: round trip through a flat predictions table, idempotency, located errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from raybench_analysis import load, summarize
from raybench_analysis.simulate import simulate_predictions, write_results_dir

from raybench.errors import LeakageError, ResultsError
from raybench.importers import SourceError, import_results

STATISTICS = ("models", "comparisons", "variance", "ranking", "sites", "calibration")


def _flat(results: Path, out: Path) -> Path:
    """Export a results directory as one flat predictions table (the trials' task dropped)."""
    res = load(results)
    flat = res.predictions.collect().drop("trial_id")
    flat.write_parquet(out)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=2, n_folds=2, seed=3)
    return write_results_dir(run, tmp_path_factory.mktemp("run"))


def test_round_trip_gives_identical_statistics(run_dir: Path, tmp_path: Path) -> None:
    flat = _flat(run_dir, tmp_path / "flat.parquet")
    report = import_results("table", flat, tmp_path / "imported")
    assert report.trials == 12 and report.committed == 12
    assert report.hierarchy == ["site", "subject_id"]
    original = summarize(run_dir, n_boot=200, seed=1)
    imported = summarize(tmp_path / "imported", n_boot=200, seed=1)
    for name in STATISTICS:
        assert_frame_equal(original[name], imported[name])  # bit for bit
    # reliability pools rows in file order: same bins, sums in another order
    assert_frame_equal(original["reliability"], imported["reliability"], rel_tol=1e-12)
    trials = load(tmp_path / "imported").trials.collect()
    assert set(trials["source_format"]) == {"table"}
    assert set(json.loads(trials["source_files"][0])) == {"flat.parquet"}


def test_same_source_twice_changes_nothing(run_dir: Path, tmp_path: Path) -> None:
    flat = _flat(run_dir, tmp_path / "flat.parquet")
    out = tmp_path / "imported"
    import_results("table", flat, out)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    again = import_results("table", flat, out)
    assert (again.committed, again.unchanged, again.removed) == (0, 12, 0)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_changed_source_is_refused_unless_replace(run_dir: Path, tmp_path: Path) -> None:
    flat = _flat(run_dir, tmp_path / "flat.parquet")
    out = tmp_path / "imported"
    import_results("table", flat, out)
    pl.read_parquet(flat).filter(pl.col("model") != "model_c").write_parquet(flat)
    with pytest.raises(ResultsError, match=r"files changed.*flat.parquet.*--replace"):
        import_results("table", flat, out)
    report = import_results("table", flat, out, replace=True)
    assert (report.trials, report.committed, report.removed) == (8, 8, 12)
    assert load(out).trials.collect()["model"].unique().sort().to_list() == ["model_a", "model_b"]


def test_a_run_directory_is_never_imported_into(run_dir: Path, tmp_path: Path) -> None:
    flat = _flat(run_dir, tmp_path / "flat.parquet")
    with pytest.raises(ResultsError, match="holds a raybench run"):
        import_results("table", flat, run_dir)


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "preds.csv"
    path.write_text(text)
    return path


GOOD = (
    "subj,dx,p_ad,method,fold\ns1,AD,0.9,cnn,0\ns2,CN,0.2,cnn,0\ns3,AD,0.7,cnn,1\ns4,CN,0.4,cnn,1\n"
)
MAPPING = {"subject_id": "subj", "y_true": "dx", "score": "p_ad", "model": "method",
           "outer_fold": "fold"}  # fmt: skip


def test_text_labels_through_a_label_map(tmp_path: Path) -> None:
    path = _csv(tmp_path, GOOD)
    opts = {"mapping": MAPPING, "labels": {"CN": 0, "AD": 1}}
    report = import_results("table", path, tmp_path / "out", options=opts)
    assert report.trials == 2
    assert report.hierarchy == ["subject_id"]  # no site column: sites cannot be resampled
    preds = load(tmp_path / "out").predictions.collect().sort("subject_id")
    assert preds["y_true"].to_list() == [1.0, 0.0, 1.0, 0.0]
    assert preds["y_pred"].to_list() == [1.0, 0.0, 1.0, 0.0]  # derived: score >= 0.5
    assert "y_pred not mapped: derived as score >= 0.5" in report.notes


@pytest.mark.parametrize(
    ("text", "options", "error"),
    [
        (GOOD.replace("0.7", "1.7"), {}, r"preds.csv: line 4, column 'p_ad': 1.7 is not within"),
        (GOOD.replace("s3,AD", "s3,MCI"), {}, r"line 4, column 'dx': unknown label 'MCI'"),
        (GOOD.replace("s2,CN", ",CN"), {}, r"line 3, column 'subj': missing subject id"),
        (GOOD, {"score": "p_AD"}, r"column 'p_AD': mapping score=p_AD: no such column "
                                  r"\(did you mean 'p_ad'\?\)"),
        (GOOD, {"scor": "p_ad"}, r"'scor' is not a predictions column \(did you mean 'score'\?\)"),
        (GOOD.replace("0.9", "high"), {}, r"line 2, column 'p_ad': 'high' is not a number"),
    ],
)  # fmt: skip
def test_located_errors(tmp_path: Path, text: str, options: dict, error: str) -> None:
    path = _csv(tmp_path, text)
    mapping = {**MAPPING, **options}
    if "scor" in options:
        mapping.pop("score")
    with pytest.raises(SourceError, match=error):
        import_results(
            "table", path, tmp_path / "out",
            options={"mapping": mapping, "labels": {"CN": 0, "AD": 1}},
        )  # fmt: skip
    assert not (tmp_path / "out").exists()  # nothing written


def test_leakage_in_the_tables_own_split_column(tmp_path: Path) -> None:
    text = "subj,dx,p_ad,role\ns1,1,0.9,test\ns2,0,0.2,test\ns1,1,0.8,train\ns3,0,0.1,train\n"
    path = _csv(tmp_path, text)
    mapping = {"subject_id": "subj", "y_true": "dx", "score": "p_ad", "split": "role"}
    with pytest.raises(LeakageError, match=r"subject 's1' is in both test and train.*line 2.*"
                                           r"line 4"):  # fmt: skip
        import_results("table", path, tmp_path / "out", name="m", options={"mapping": mapping})
    clean = _csv(tmp_path, text.replace("s1,1,0.8,train", "s4,1,0.8,train"))
    report = import_results("table", clean, tmp_path / "out", name="m",
                            options={"mapping": mapping})  # fmt: skip
    assert report.leakage.startswith("passed")
    splits = load(tmp_path / "out").splits.collect()
    assert sorted(splits["role"].to_list()) == ["test", "test", "train", "train"]
    assert load(tmp_path / "out").predictions.collect().height == 2  # train rows: splits only
