"""load_suite on good suites, YAML edge cases, file errors, checks in Python construction."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from raybench_analysis.vocabulary import ARCHITECTURES
from suite_corpus import GOOD, SHIPPED

from raybench.suite import (
    Suite,
    SuiteValidationError,
    load_suite,
    parse_suite,
    resolve_path,
    suite_dir,
)

BASE = """\
name: t
datasets: [{name: synth, source: synthetic}]
task: {type: classification, label: diagnosis}
models: [{name: net, arch: resnet10}]
"""


@pytest.mark.parametrize("path", GOOD + SHIPPED, ids=[p.name for p in GOOD + SHIPPED])
def test_good_suites_load(path: Path) -> None:
    suite = load_suite(path)
    assert isinstance(suite, Suite)
    # The loader agrees with plain YAML + pydantic on what the file means, except where YAML 1.1
    # differs (`off` read as false, `1e-3` read as a string).
    if path.name not in ("anchors_plugins.yaml", "regression_manifest.yaml"):
        assert suite == Suite.model_validate(yaml.safe_load(path.read_text()))


def test_design_example_means_what_it_says() -> None:
    suite = load_suite(Path(__file__).parent / "good" / "design.yaml")
    assert [d.name for d in suite.datasets] == ["synth", "oasis"]
    assert suite.datasets[0].params.shape == (32, 32, 32)
    assert suite.training.lr == [1.0e-3, 3.0e-4]
    assert suite.validation.outer.stratify == ["label"]
    assert suite.validation.inner is not None and suite.validation.inner.fraction == 0.2
    assert suite.evaluation.perturbations[0].std == [0.05, 0.1]
    assert suite.resources.gpu == 0.25


def test_yaml_12_scalars_anchors_and_merge_keys() -> None:
    suite = load_suite(Path(__file__).parent / "good" / "anchors_plugins.yaml")
    assert suite.description == "off"  # a string, not False
    assert suite.datasets[1].name == "site-b"
    assert suite.datasets[1].params.sites == 2 and suite.datasets[1].params.seed == 1
    assert suite.models[0].arch == "mynet"
    reg = load_suite(Path(__file__).parent / "good" / "regression_manifest.yaml")
    assert reg.training.lr == [1e-3, 1e-4] and reg.training.weight_decay == 1e-5


def test_missing_file_is_located(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SuiteValidationError) as info:
        load_suite(missing)
    assert str(info.value).endswith(f"{missing}: no such file; check the path of the suite")
    assert info.value.problems[0].line is None


def test_directory_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(SuiteValidationError, match="is a directory"):
        load_suite(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(BASE.encode() + "description: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SuiteValidationError) as info:
        load_suite(bad)
    (problem,) = info.value.problems
    assert (problem.line, problem.col) == (5, 17)
    assert "not UTF-8" in problem.message


def test_unprintable_character_is_located() -> None:
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(BASE + 'description: "a\x01"\n', "s.yaml")
    assert str(info.value.problems[0]).startswith("s.yaml:5:16: character not allowed")


def test_recursive_alias_and_two_documents() -> None:
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(BASE + "description: &d [*d]\n", "s.yaml")
    assert any("refers to itself" in p.message for p in info.value.problems)
    with pytest.raises(SuiteValidationError, match=r"s.yaml:5:1: YAML syntax error"):
        parse_suite(BASE + "---\nname: u\n", "s.yaml")


def test_duplicate_key_inside_a_list_item_and_merge_override_is_not_a_duplicate() -> None:
    text = BASE.replace("{name: net, arch: resnet10}", "{name: net, arch: resnet10, name: x}")
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(text, "s.yaml")
    (problem,) = info.value.problems
    assert (problem.line, problem.col, problem.key_path) == (4, 38, "models[0].name")
    merged = BASE + "training: {<<: {epochs: 3, lr: 0.1}, epochs: 4}\n"
    assert parse_suite(merged).training.epochs == 4


def test_strict_types_booleans_are_not_numbers() -> None:
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(BASE + "training: {lr: true, epochs: 2.0}\n", "s.yaml")
    got = {(p.key_path, p.found) for p in info.value.problems}
    assert got == {("training.lr", "true"), ("training.epochs", "2.0")}


def test_search_list_items_are_located_individually() -> None:
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(BASE + "training: {lr: [0.1, -1, 0.1]}\n", "s.yaml")
    got = {(p.line, p.col, p.key_path) for p in info.value.problems}
    assert got == {(5, 22, "training.lr[1]"), (5, 26, "training.lr[2]")}


def test_python_construction_runs_the_cross_key_checks() -> None:
    data = yaml.safe_load(BASE)
    data["models"][0]["arch"] = "resnet1"
    with pytest.raises(ValidationError, match=r"models\[0\]\.arch: unknown architecture"):
        Suite.model_validate(data)
    data["models"][0]["arch"] = ARCHITECTURES[0]
    assert Suite.model_validate(data).models[0].arch == "densenet121"


def test_problems_are_structured() -> None:
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(BASE.replace("resnet10", "resnet1"), "s.yaml")
    (problem,) = info.value.problems
    d = problem.to_dict()
    assert d["path"] == ["models", 0, "arch"] and d["key_path"] == "models[0].arch"
    assert (d["file"], d["line"], d["col"]) == ("s.yaml", 4, 28)
    assert d["found"] == "'resnet1'" and d["suggestion"] == "resnet10"


def test_resolve_path(tmp_path: Path) -> None:
    suite = tmp_path / "suites" / "a.yaml"
    assert resolve_path(suite, "data/x.tsv") == str(tmp_path / "suites" / "data" / "x.tsv")
    assert resolve_path(suite, "../data/x.tsv") == str(tmp_path / "data" / "x.tsv")
    assert resolve_path(suite, "/abs/x.tsv") == "/abs/x.tsv"
    assert resolve_path(suite, "~/x.tsv") == str(Path.home() / "x.tsv")
    assert resolve_path(suite, "s3://bucket/run") == "s3://bucket/run"
    assert suite_dir("rel.yaml") == Path.cwd()


def test_out_of_range_messages_give_the_whole_range() -> None:
    text = BASE + "analysis: {alpha: 5}\ntraining: {lr: [0.1, -1]}\n"
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(text, "s.yaml")
    allowed = {p.key_path: p.allowed for p in info.value.problems}
    assert allowed == {"analysis.alpha": "> 0 and < 1", "training.lr[1]": "> 0 and <= 10.0"}


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from raybench.suite.loader import MAX_SUITE_BYTES

    path = tmp_path / "big.yaml"
    path.write_text(BASE + "description: '" + "x" * MAX_SUITE_BYTES + "'\n")
    with pytest.raises(SuiteValidationError) as info:
        load_suite(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.col) == (1, 1)
    assert f"at most {MAX_SUITE_BYTES} bytes" in str(problem)
    with pytest.raises(SuiteValidationError, match="larger than a suite may be"):
        parse_suite(path.read_text(), "big.yaml")


def test_depth_and_expansion_limits_hold_for_mappings_and_aliases() -> None:
    from raybench.suite.loader import MAX_DEPTH

    deep_map = "description: " + "{a: " * (MAX_DEPTH + 5) + "1" + "}" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(SuiteValidationError, match=f"more than {MAX_DEPTH} levels deep"):
        parse_suite(BASE + deep_map, "s.yaml")
    # just under the limit: the schema's complaint, not the loader's
    ok = "description: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n"
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(BASE + ok, "s.yaml")
    assert "levels deep" not in str(info.value) and "wrong type" in str(info.value)


def test_an_integer_too_long_to_convert_is_a_located_problem() -> None:
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(BASE + "seeds: [" + "9" * 5000 + "]\n", "s.yaml")
    (problem,) = info.value.problems
    assert (problem.line, problem.key_path) == (5, "seeds[0]")
    assert "number too long" in str(problem)


def test_non_finite_numbers_in_network_arguments_are_refused() -> None:
    text = BASE.replace("arch: resnet10}", "arch: resnet10, params: {widen_factor: .inf}}")
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(text, "s.yaml")
    assert [p.key_path for p in info.value.problems] == ["models[0].params.widen_factor"]
    assert "not a finite number" in str(info.value)


def test_network_arguments_set_by_raybench_or_refused_are_named() -> None:
    text = BASE.replace(
        "arch: resnet10}", "arch: resnet10, params: {num_classes: 3, pretrained: true}}"
    )
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(text, "s.yaml")
    message = str(info.value)
    assert "num_classes is set by raybench" in message
    assert "pretrained weights are downloaded" in message


def test_searched_network_arguments_are_checked_by_their_key() -> None:
    ok = BASE.replace("arch: resnet10}", "arch: resnet10, params: {dropout: [0.0, 0.2]}}")
    assert parse_suite(ok, "s.yaml").models[0].params == {"dropout": [0.0, 0.2]}
    bad = BASE.replace("arch: resnet10}", "arch: resnet10, params: {dropuot: [0.0, 0.2]}}")
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(bad, "s.yaml")
    assert info.value.problems[0].suggestion == "dropout"
