"""lme4 formula parsing: expansions as lme4 documents them; errors point at the bad part."""

from __future__ import annotations

import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.formula import FormulaError, RandomTerm, parse_formula


def _terms(formula: str) -> list[tuple[bool, tuple[str, ...], str]]:
    return [(t.intercept, t.slopes, t.group_name) for t in parse_formula(formula).random]


def test_random_slope_forms_follow_lme4() -> None:
    # lme4: (x | g) == (1 + x | g); (0 + x | g) and (-1 + x | g) drop the intercept
    assert _terms("y ~ x + (x | g)") == [(True, ("x",), "g")]
    assert _terms("y ~ x + (1 + x | g)") == [(True, ("x",), "g")]
    assert _terms("y ~ x + (0 + x | g)") == [(False, ("x",), "g")]
    assert _terms("y ~ x + (-1 + x | g)") == [(False, ("x",), "g")]
    assert _terms("y ~ x + (1 | g)") == [(True, (), "g")]


def test_nested_double_bar_and_interaction_groupings() -> None:
    # lme4: (1 | a/b) == (1 | a) + (1 | a:b); a/b/c adds a:b:c
    assert _terms("y ~ 1 + (1 | a/b)") == [(True, (), "a"), (True, (), "a:b")]
    assert _terms("y ~ 1 + (1 | a/b/c)") == [
        (True, (), "a"),
        (True, (), "a:b"),
        (True, (), "a:b:c"),
    ]
    # lme4: (1 + x || g) == (1 | g) + (0 + x | g)
    assert _terms("y ~ x + (1 + x || g)") == [(True, (), "g"), (False, ("x",), "g")]
    assert _terms("y ~ 1 + (1 | split:model)") == [(True, (), "split:model")]
    parsed = parse_formula("y ~ 1 + (1 | split:model) + (1 | site)")
    assert parsed.random[0].group == ("split", "model")
    assert parsed.grouping_columns == ["split", "model", "site"]


def test_crossed_terms_and_fixed_part_pass_through() -> None:
    parsed = parse_formula("score ~ C(model) + np.log(x) + a:b + (1 | a) + (1 | b)")
    assert parsed.response == "score"
    assert parsed.fixed == "C(model) + np.log(x) + a:b"
    assert [t.group_name for t in parsed.random] == ["a", "b"]
    assert parsed.fixed_formula == "score ~ C(model) + np.log(x) + a:b"


def test_intercept_removal_in_fixed_part_is_kept() -> None:
    assert parse_formula("y ~ x - 1 + (1 | g)").fixed == "x - 1"
    assert parse_formula("y ~ -1 + x + (1 | g)").fixed == "x - 1"
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_fixed_terms_with_parentheses_are_not_random() -> None:
    parsed = parse_formula("y ~ I(x ** 2) + (a + b):c + (1 | g)")
    assert parsed.fixed == "I(x ** 2) + (a + b):c"
    assert len(parsed.random) == 1


def test_random_term_records_its_source() -> None:
    term = parse_formula("y ~ x + (1 + x | subject)").random[0]
    assert term == RandomTerm(True, ("x",), ("subject",), "(1 + x | subject)")
    assert term.n_coef == 2
    assert term.slope_formula() == "0 + x"


@pytest.mark.parametrize(
    ("formula", "message", "caret_column"),
    [
        ("y ~ x + (1 | g", "unclosed '('", 8),
        ("y ~ x) + (1 | g)", "unmatched ')'", 5),
        ("y ~ x | g", "'|' outside a parenthesised random term", 6),
        ("y ~ x", "no random-effect term", 3),
        ("y ~ x + (1 | g + h)", "'g + h' is not a column name", 13),
        ("y ~ x + (1 | log(g))", "'log(g)' is not a column name", 13),
        ("y ~ x + ( | g)", "empty random-effect term", 9),
        ("y ~ x + (1 | )", "empty grouping factor", 12),
        ("y ~ x + (0 | g)", "neither intercept nor slope", 8),
        ("~ x + (1 | g)", "missing response", 0),
        ("y ~ x ~ z + (1 | g)", "exactly one '~'", 6),
        ("y ~ x - (1 | g)", "cannot be subtracted", 8),
        ("y ~ x + (1 | g) + (1 | g)", "repeats", 18),
        ("y ~ x + (x + x | g)", "appears twice", 13),
        ("y ~ x + (1 - x | g)", "cannot remove 'x'", 13),
    ],
)
def test_errors_point_at_the_bad_part(formula: str, message: str, caret_column: int) -> None:
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    text = str(info.value)
    assert message in text
    lines = text.splitlines()
    # the second line repeats the formula, the third has carets under the culprit
    assert lines[1].strip() == formula
    caret_line = lines[2]
    assert caret_line.index("^") - 4 == caret_column
    # every error says how to fix it (a last line that is not the caret line)
    assert len(lines) >= 4 and lines[3]


def test_formula_error_is_an_analysis_error_and_a_value_error() -> None:
    with pytest.raises(AnalysisError):
        parse_formula("y ~ x")
    with pytest.raises(ValueError):
        parse_formula("y ~ x")
    with pytest.raises(FormulaError, match="expected a string"):
        parse_formula(3)  # type: ignore[arg-type]
