"""The JSON Schema is complete and agrees with the loader; docs/suites.md matches the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from suite_corpus import BAD, GOOD

from raybench.suite import load_suite, suite_json_schema
from raybench.suite.docs import BEGIN, DOCS_PATH, END, main, render_reference, updated
from raybench.suite.loader import SuiteYamlLoader


def _read(path: Path) -> object:
    """The suite as data, read with the loader's YAML 1.2 rules."""
    return yaml.load(path.read_text(), Loader=SuiteYamlLoader)


def _objects(schema: dict) -> list[tuple[str, dict]]:
    return [(name, d) for name, d in schema["$defs"].items() if "properties" in d] + [
        ("Suite", schema)
    ]


def test_schema_has_a_description_for_every_key() -> None:
    schema = suite_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) == {"name", "datasets", "task", "models"}
    missing = [
        f"{name}.{key}"
        for name, obj in _objects(schema)
        for key, prop in obj["properties"].items()
        if not prop.get("description")
    ]
    assert missing == []
    assert all(obj.get("additionalProperties") is False for _, obj in _objects(schema))


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_good_suites_pass_the_json_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    load_suite(path)
    jsonschema.validate(_read(path), suite_json_schema())


# Bad suites that an editor's JSON Schema already flags (single-key problems).
SCHEMA_LEVEL = ["unknown_key", "bad_literal", "wrong_type", "out_of_range", "bad_source"]


@pytest.mark.parametrize("name", SCHEMA_LEVEL)
def test_schema_level_bad_suites_fail_the_json_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    path = next(p for p in BAD if p.stem == name)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_read(path), suite_json_schema())


def test_docs_reference_matches_the_schema() -> None:
    text = DOCS_PATH.read_text(encoding="utf-8")
    assert render_reference() in text, "run: python -m raybench.suite.docs"
    assert main(["--check", str(DOCS_PATH)]) == 0


def test_drift_is_detected(tmp_path: Path) -> None:
    page = tmp_path / "suites.md"
    stale = render_reference().replace("| `patience` |", "| `patiense` |")
    page.write_text(f"# Suites\n\n{stale}\n", encoding="utf-8")
    assert main(["--check", str(page)]) == 1
    assert main([str(page)]) == 0  # regenerates
    assert main(["--check", str(page)]) == 0
    assert page.read_text(encoding="utf-8").startswith("# Suites\n\n" + BEGIN)
    with pytest.raises(ValueError, match="markers"):
        updated("no markers here")
    assert END in page.read_text(encoding="utf-8")


def test_reference_lists_every_key_of_every_model() -> None:
    ref = render_reference()
    schema = suite_json_schema()
    for _, obj in _objects(schema):
        for key in obj["properties"]:
            assert f"| `{key}` |" in ref


def test_docs_error_example_is_what_the_loader_prints() -> None:
    import re

    from raybench.suite import SuiteValidationError, parse_suite

    text = DOCS_PATH.read_text(encoding="utf-8")
    suite_text, output = re.search(
        r"For this suite\n\n```yaml\n(.*?)```\n.*?```\nerror: (.*?)\n```", text, re.S
    ).groups()
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(suite_text, "suite.yaml")
    assert str(info.value) == output
