"""Parse lme4-style mixed-model formulas into a fixed part and random-effect terms.

``mixed()`` accepts the formula language of R's lme4 (Bates, Mächler, Bolker & Walker 2015):
``response ~ fixed terms + (random terms | grouping)``. The fixed part is handed to patsy unchanged
(statsmodels' formula engine), so ``C(site)``, ``x:z``, ``np.log(x)`` and ``- 1`` work as usual. The
random parts supported are:

=============================  ===============================================================
``(1 | g)``                    random intercept per level of ``g``
``(x | g)``, ``(1 + x | g)``   correlated random intercept and slope of ``x``
``(0 + x | g)``                random slope only (``- 1 + x`` also removes the intercept)
``(1 + x || g)``               intercept and slope uncorrelated: ``(1 | g) + (0 + x | g)``
``(1 | a/b)``                  nested: ``(1 | a) + (1 | a:b)`` (``a/b/c`` too)
``(1 | a) + (1 | b)``          crossed factors
``(1 | split:model)``          a grouping factor made of the combinations of two columns
=============================  ===============================================================

Every malformed formula raises :class:`FormulaError` quoting the formula with a caret under the bad
part, the rule it breaks and an example of what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._frames import AnalysisError

__all__ = ["FormulaError", "ParsedFormula", "RandomTerm", "parse_formula"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class FormulaError(AnalysisError):
    """A mixed-model formula that cannot be parsed or fitted as written."""


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(intercept + slopes | group)`` after expansion.

    ``group`` holds the column names whose level combinations form the grouping factor (one name,
    or several for an interaction such as ``split:model``); ``slopes`` holds the patsy terms whose
    coefficients vary by group; ``source`` is the text of the term in the user's formula.
    """

    intercept: bool
    slopes: tuple[str, ...]
    group: tuple[str, ...]
    source: str

    @property
    def group_name(self) -> str:
        """The grouping factor's display name, e.g. ``"Subject"`` or ``"batch:cask"``."""
        return ":".join(self.group)

    @property
    def n_coef(self) -> int:
        """Number of random coefficients per level (before factor expansion of slopes)."""
        return int(self.intercept) + len(self.slopes)

    def slope_formula(self) -> str:
        """A patsy right-hand side for the slope columns (no intercept)."""
        return "0 + " + " + ".join(self.slopes) if self.slopes else "0"


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, patsy fixed part and expanded random terms."""

    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]

    @property
    def fixed_formula(self) -> str:
        """The patsy formula ``response ~ fixed`` for the fixed effects."""
        return f"{self.response} ~ {self.fixed}"

    @property
    def grouping_columns(self) -> list[str]:
        """Every data column used in a grouping factor, in order of first use."""
        seen: dict[str, None] = {}
        for term in self.random:
            for col in term.group:
                seen.setdefault(col, None)
        return list(seen)


def _fail(text: str, start: int, end: int, problem: str, fix: str) -> FormulaError:
    """Build a FormulaError that shows ``text`` with a caret under ``text[start:end]``."""
    width = max(end - start, 1)
    pointer = " " * start + "^" * width
    return FormulaError(
        f"formula: {problem} at character {start + 1}:\n    {text}\n    {pointer}\n{fix}"
    )


def _split_top(text: str, offset: int, full: str, seps: str) -> list[tuple[str, str, int]]:
    """Split ``text`` on the characters of ``seps`` outside parentheses.

    Returns ``(operator, piece, absolute start)`` triples; the first operator is ``"+"``. Raises
    FormulaError on unbalanced parentheses, pointing at the offending character.
    """
    pieces: list[tuple[str, str, int]] = []
    depth, start, op = 0, 0, "+"
    opened: list[int] = []
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
            opened.append(i)
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _fail(
                    full,
                    offset + i,
                    offset + i + 1,
                    "unmatched ')'",
                    "Remove it or add the opening '('.",
                )
            opened.pop()
        elif ch in seps and depth == 0:
            pieces.append((op, text[start:i], offset + start))
            op, start = ch, i + 1
    if depth > 0:
        pos = offset + opened[-1]
        raise _fail(full, pos, pos + 1, "unclosed '('", "Add the closing ')'.")
    pieces.append((op, text[start:], offset + start))
    return pieces


def _strip(piece: str, start: int) -> tuple[str, int]:
    """Strip whitespace from ``piece`` and shift its absolute start accordingly."""
    lead = len(piece) - len(piece.lstrip())
    return piece.strip(), start + lead


def _top_bar(inner: str) -> tuple[int, int] | None:
    """Position and width of the first ``|`` or ``||`` outside parentheses in ``inner``."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            width = 2 if inner[i : i + 2] == "||" else 1
            return i, width
    return None


def _parse_grouping(text: str, start: int, full: str) -> list[tuple[str, ...]]:
    """Parse ``g``, ``a:b`` or ``a/b/c`` into grouping factors (tuples of column names)."""
    spec, at = _strip(text, start)
    if not spec:
        raise _fail(
            full,
            start,
            start + max(len(text), 1),
            "empty grouping factor after '|'",
            "Name a column, e.g. (1 | subject_id).",
        )
    levels: list[tuple[str, ...]] = []
    pos = at
    for part in spec.split("/"):
        name_part, name_at = _strip(part, pos)
        names = [n.strip() for n in name_part.split(":")]
        for n in names:
            if not _NAME.match(n):
                raise _fail(
                    full,
                    name_at,
                    name_at + max(len(name_part), 1),
                    f"grouping factor {name_part!r} is not a column name, 'a:b' or 'a/b'",
                    "Grouping factors are plain column names joined by ':' (interaction) or "
                    "'/' (nesting), e.g. (1 | site/subject_id) or (1 | split:model); "
                    "transform the column in the data instead.",
                )
        levels.append(tuple(names))
        pos += len(part) + 1
    # a/b/c -> a, a:b, a:b:c
    expanded: list[tuple[str, ...]] = []
    acc: tuple[str, ...] = ()
    for level in levels:
        acc = acc + level
        expanded.append(acc)
    return expanded


def _parse_effects(text: str, start: int, full: str) -> tuple[bool, list[str]]:
    """Parse the left of the bar into (intercept?, slope terms)."""
    intercept = True
    slopes: list[str] = []
    if not text.strip():
        raise _fail(
            full,
            start,
            start + 1,
            "empty random-effect term before '|'",
            "Write what varies by group, e.g. (1 | g) or (1 + x | g).",
        )
    for op, piece, at in _split_top(text, start, full, "+-"):
        item, item_at = _strip(piece, at)
        if not item:
            if op == "+" and at == start:  # leading sign such as "-1 + x"
                continue
            raise _fail(
                full, at, at + 1, "empty term in random part", "Remove the dangling '+' or '-'."
            )
        if item in ("0", "1"):
            if op == "-" and item == "0":
                raise _fail(
                    full,
                    item_at,
                    item_at + 1,
                    "'-0' is not meaningful",
                    "Use 0 + x or -1 + x to drop the intercept.",
                )
            intercept = intercept and op == "+" and item == "1"
            continue
        if op == "-":
            raise _fail(
                full,
                item_at,
                item_at + len(item),
                f"cannot remove {item!r} from a random term",
                "List only the terms that vary by group.",
            )
        if item in slopes:
            raise _fail(
                full,
                item_at,
                item_at + len(item),
                f"{item!r} appears twice in one random term",
                "List each slope once.",
            )
        slopes.append(item)
    return intercept, slopes


def _parse_random(piece: str, start: int, full: str) -> list[RandomTerm]:
    """Parse one parenthesised ``(effects | grouping)`` piece into expanded terms."""
    inner = piece[1:-1]
    inner_at = start + 1
    bar = _top_bar(inner)
    assert bar is not None  # guaranteed by the caller
    pos, width = bar
    intercept, slopes = _parse_effects(inner[:pos], inner_at, full)
    if not intercept and not slopes:
        raise _fail(
            full,
            start,
            start + len(piece),
            "random term with neither intercept nor slope",
            "Write (1 | g), (x | g) or (0 + x | g).",
        )
    groups = _parse_grouping(inner[pos + width :], inner_at + pos + width, full)
    terms: list[RandomTerm] = []
    for group in groups:
        if width == 2:  # '||': every coefficient its own uncorrelated term
            if intercept:
                terms.append(RandomTerm(True, (), group, piece))
            terms.extend(RandomTerm(False, (s,), group, piece) for s in slopes)
        else:
            terms.append(RandomTerm(intercept, tuple(slopes), group, piece))
    return terms


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4-style formula into response, patsy fixed part and random terms.

    Parameters
    ----------
    text : str
        A formula such as ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula
        ``response`` (str), ``fixed`` (patsy right-hand side; ``"1"`` if only random terms were
        given) and ``random`` (tuple of :class:`RandomTerm`, with ``a/b`` and ``||`` expanded).

    Notes
    -----
    Random terms are recognised as parenthesised pieces at the top level of the right-hand side
    that contain a bar; everything else is fixed. ``(e | a/b)`` expands to ``(e | a) + (e | a:b)``
    and ``(1 + x || g)`` to ``(1 | g) + (0 + x | g)``, as in lme4.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects models
    using lme4. *Journal of Statistical Software*, 67(1), 1–48. doi:10.18637/jss.v067.i01

    Examples
    --------
    >>> f = parse_formula("y ~ x + (1 | site/subject)")
    >>> f.fixed, [t.group_name for t in f.random]
    ('x', ['site', 'site:subject'])
    """
    if not isinstance(text, str):
        raise FormulaError(f"formula: expected a string such as 'y ~ x + (1 | g)', got {text!r}")
    if text.count("~") != 1:
        where = text.find("~", text.find("~") + 1) if text.count("~") > 1 else 0
        raise _fail(
            text,
            max(where, 0),
            max(where, 0) + 1,
            "a formula needs exactly one '~'",
            "Write response ~ predictors + (1 | group).",
        )
    tilde = text.index("~")
    response = text[:tilde].strip()
    if not response:
        raise _fail(
            text, 0, max(tilde, 1), "missing response before '~'", "Write e.g. score ~ 1 + (1 | g)."
        )
    rhs = text[tilde + 1 :]
    rhs_at = tilde + 1
    fixed_parts: list[str] = []
    random: list[RandomTerm] = []
    for op, raw, at in _split_top(rhs, rhs_at, text, "+-"):
        piece, piece_at = _strip(raw, at)
        if not piece:
            if op == "+" and at == rhs_at and not raw.strip() and len(rhs.strip()) > 0:
                continue  # leading '-1' etc.
            raise _fail(
                text, at, at + 1, "empty term", "Remove the dangling '+' or '-', or add a term."
            )
        is_random = (
            piece.startswith("(") and piece.endswith(")") and _top_bar(piece[1:-1]) is not None
        )
        # a parenthesised piece must close at its end to be a whole random term
        if is_random:
            depth = 0
            for i, ch in enumerate(piece):
                depth += ch == "("
                depth -= ch == ")"
                if depth == 0 and i < len(piece) - 1:
                    is_random = False
                    break
        if is_random:
            if op == "-":
                raise _fail(
                    text,
                    piece_at,
                    piece_at + len(piece),
                    "a random term cannot be subtracted",
                    "Add random terms with '+'.",
                )
            random.extend(_parse_random(piece, piece_at, text))
            continue
        if "|" in piece:
            bar_at = piece_at + piece.index("|")
            raise _fail(
                text,
                bar_at,
                bar_at + 1,
                "'|' outside a parenthesised random term",
                "Random terms are written in parentheses, e.g. y ~ x + (1 | g).",
            )
        fixed_parts.append(piece if op == "+" else f"- {piece}")
    if not random:
        raise _fail(
            text,
            rhs_at,
            len(text),
            "no random-effect term",
            "A mixed model needs at least one (… | group) term; for a fixed-effects-only model "
            "use statsmodels.formula.api.ols.",
        )
    seen: dict[tuple[tuple[str, ...], bool, tuple[str, ...]], str] = {}
    for term in random:
        key = (term.group, term.intercept, term.slopes)
        if key in seen:
            where = text.rfind(term.source)
            raise _fail(
                text,
                max(where, 0),
                max(where, 0) + len(term.source),
                f"random term for {term.group_name!r} repeats {seen[key]!r}",
                "Each grouping factor/coefficient combination may appear once.",
            )
        seen[key] = term.source
    added = [p for p in fixed_parts if not p.startswith("- ")]
    removed = [p for p in fixed_parts if p.startswith("- ")]
    fixed = " ".join([" + ".join(added) if added else "1", *removed])
    return ParsedFormula(text=text, response=response, fixed=fixed, random=tuple(random))
