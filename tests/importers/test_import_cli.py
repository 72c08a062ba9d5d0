"""``raybench import`` through typer's CliRunner, and ``analyze``/``status`` on what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from raybench.cli.main import app

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"
CSV = (
    "subj,dx,p_ad,method,fold\ns1,AD,0.9,cnn,0\ns2,CN,0.2,cnn,0\ns3,AD,0.7,cnn,1\ns4,CN,0.4,cnn,1\n"
)


def test_table_with_columns_and_labels_as_json(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text(CSV)
    args = ["import", "table", str(tmp_path / "p.csv"), "--results", str(tmp_path / "out"),
            "--columns", "subject_id=subj,y_true=dx,score=p_ad,model=method,outer_fold=fold",
            "--labels", "CN=0,AD=1", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["trials"], report["committed"], report["models"]) == (2, 2, ["cnn"])
    again = json.loads(runner.invoke(app, args).stdout)
    assert (again["committed"], again["unchanged"]) == (0, 2)


def test_yaml_mapping_file(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text(CSV)
    (tmp_path / "map.yaml").write_text(
        "columns: {subject_id: subj, y_true: dx, score: p_ad, outer_fold: fold}\n"
        "labels: {CN: 0, AD: 1}\n"
    )
    result = runner.invoke(
        app,
        ["import", "table", str(tmp_path / "p.csv"), "--results", str(tmp_path / "out"),
         "--mapping", str(tmp_path / "map.yaml"), "--name", "cnn"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "imported 2 trial(s)" in result.stdout and "analysis hierarchy: subject_id" in result.stdout
    )


def test_bad_mapping_exits_2_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text(CSV)
    result = runner.invoke(
        app,
        ["import", "table", str(tmp_path / "p.csv"), "--results", str(tmp_path / "out"),
         "--columns", "subject_id=subject,y_true=dx", "--name", "m"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert (
        "column 'subject': mapping subject_id=subject: no such column (did you mean 'subj'?)"
        in (result.stderr)
    )


def test_an_option_of_another_format_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["import", "nnunet", str(FIXTURES / "nnunet"), "--results", str(tmp_path / "o"),
         "--columns", "y_true=a"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--columns applies to the table format(s), not nnunet" in result.stderr


def test_analyze_and_status_read_an_imported_directory(tmp_path: Path) -> None:
    out = tmp_path / "nn"
    result = runner.invoke(
        app,
        ["import", "nnunet", str(FIXTURES / "nnunet" / "Dataset042_Toy"), "--results", str(out),
         "--participants", str(FIXTURES / "nnunet" / "participants.tsv")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "analysis hierarchy: site, subject_id" in result.stdout
    analyzed = runner.invoke(app, ["analyze", str(out), "--n-boot", "50"])
    assert analyzed.exit_code == 0, analyzed.output
    assert "hierarchy site>subject_id" in analyzed.stdout
    assert "Dataset042_Toy/edema" in analyzed.stdout
    status = runner.invoke(app, ["status", str(out), "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["completed"] == 8
