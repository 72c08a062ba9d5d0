"""Property tests: whatever the input, the loader gives a Suite or located problems, no crash.

A crash (IndexError, KeyError, ...) would reach the user as a traceback instead of a message; these
tests feed random documents and random mutations of a valid suite to the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raybench.suite import Suite, SuiteValidationError, parse_suite
from raybench.suite.loader import SuiteYamlLoader

DESIGN = yaml.load(
    (Path(__file__).parent / "good" / "design.yaml").read_text(), Loader=SuiteYamlLoader
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(-2, 2, allow_nan=False),
    st.sampled_from(["", "auc", "resnet10", "x:y", "label", "site", "synthetic", "gamma", "1e-3"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "type", "k", "std", "arch"]), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


PATHS = [p for p in _paths(DESIGN) if p]


def _replace(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {k: _replace(v, rest, value) if k == head else v for k, v in data.items()}
    if isinstance(data, list):
        return [_replace(v, rest, value) if i == head else v for i, v in enumerate(data)]
    return data  # an earlier mutation replaced the parent: nothing left to mutate


def _check(text: str) -> None:
    try:
        suite = parse_suite(text, "fuzz.yaml")
    except SuiteValidationError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file == "fuzz.yaml" and p.line is not None and p.line >= 1 and p.col >= 1
            assert p.describe()
    else:
        assert isinstance(suite, Suite)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_mutated_design_suite_gives_a_suite_or_located_problems(mutations: list) -> None:
    data = DESIGN
    for path, value in mutations:
        data = _replace(data, path, value)
    _check(yaml.safe_dump(data, sort_keys=False))


@settings(max_examples=40, deadline=None)
@given(values)
def test_random_documents_give_located_problems(doc: Any) -> None:
    _check(yaml.safe_dump(doc))


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab:{}[]-,\n\t #&*!'\"", max_size=40))
def test_random_text_gives_located_problems(text: str) -> None:
    _check(text)
