"""Problems found in a suite, and the translation of pydantic's errors into them.

A :class:`Problem` says where (key path, and file:line:col once the loader has located it), what
was found, what is allowed and, for a misspelt key or value, what was probably meant.
:func:`problems_from_validation_error` turns a pydantic ``ValidationError`` into problems keyed by
the path of the user's data (union branch tags removed, the branches that could not apply dropped).
"""

from __future__ import annotations

import difflib
import re
import reprlib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, ValidationError

from raybench.errors import SuiteError

PathT = tuple[str | int, ...]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Sequence[str | int]) -> str:
    """Render a key path as written in messages and docs: ``models[1].params.dropout``."""
    out = ""
    for el in path:
        if isinstance(el, int):
            out += f"[{el}]"
        elif _IDENT.match(el):
            out += f".{el}" if out else el
        else:
            out += f"[{el!r}]"
    return out or "<top level>"


def show(value: Any) -> str:
    """A short YAML-like rendering of a found value: ``'adam'``, ``3``, ``true``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping " + reprlib.repr(value)
    if isinstance(value, list | tuple):
        return "a list " + reprlib.repr(list(value))
    return reprlib.repr(value)


def suggest(found: Any, allowed: Sequence[str]) -> str | None:
    """The closest allowed string to ``found`` (difflib ratio >= 0.6, case-insensitive), if any."""
    if not isinstance(found, str) or not allowed:
        return None
    best, best_score = None, 0.6
    for candidate in allowed:  # ties go to the first in the allowed order
        score = difflib.SequenceMatcher(None, found.lower(), candidate.lower()).ratio()
        if score > best_score or (best is None and score >= best_score):
            best, best_score = candidate, score
    return best


def choices(values: Sequence[Any]) -> str:
    """``'a', 'b' or 'c'`` for a list of allowed values."""
    shown = [show(v) for v in values]
    if not shown:
        return ""
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


@dataclass
class Problem:
    """One thing wrong with a suite.

    ``path`` is the key path in the suite (``("models", 1, "arch")``); ``anchor`` says whether the
    location is that of the key (unknown keys) or of its value. ``found``/``allowed``/``suggestion``
    are already rendered for humans; ``file``/``line``/``col`` (1-based) are set by the loader.
    """

    path: PathT
    message: str
    found: str | None = None
    allowed: str | None = None
    suggestion: str | None = None
    anchor: Literal["key", "value"] = "value"
    file: str | None = None
    line: int | None = None
    col: int | None = None

    @property
    def key_path(self) -> str:
        return format_path(self.path)

    @property
    def location(self) -> str:
        """``file:line:col`` (or less, when the problem is about the whole file)."""
        parts = [self.file or "<suite>"]
        if self.line is not None:
            parts += [str(self.line), str(self.col or 1)]
        return ":".join(parts)

    def describe(self) -> str:
        """The problem without its file location."""
        text = f"{self.key_path}: {self.message}" if self.path else self.message
        if self.found is not None:
            text += f"; found {self.found}"
        if self.allowed is not None:
            text += f"; allowed: {self.allowed}"
        if self.suggestion is not None:
            text += f"; did you mean {self.suggestion!r}?"
        return text

    def __str__(self) -> str:
        return f"{self.location}: {self.describe()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``raybench validate --json``)."""
        out = asdict(self)
        out["path"] = list(self.path)
        out["key_path"] = self.key_path
        del out["anchor"]
        return out


class SuiteValidationError(SuiteError):
    """A suite with one or more problems; ``problems`` holds them all, in file order."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in suite {source or ''}".rstrip()
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


# --------------------------------------------------------------------------- schema navigation


def _strip(ann: Any) -> Any:
    """Remove Annotated and Optional wrappers."""
    while True:
        if typing.get_origin(ann) is typing.Annotated:
            ann = typing.get_args(ann)[0]
            continue
        if _is_union(ann):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
                continue
        return ann


def _is_union(ann: Any) -> bool:
    return typing.get_origin(ann) in (Union, types.UnionType)


def _pick(ann: Any, value: Any) -> Any:
    """Among a union's members, the model that applies to ``value`` (by ``source`` tag if any)."""
    ann = _strip(ann)
    if not _is_union(ann):
        return ann
    members = [_strip(a) for a in typing.get_args(ann)]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if isinstance(value, dict):
        for m in models:
            src = m.model_fields.get("source")
            if src is not None and value.get("source") in typing.get_args(src.annotation):
                return m
    if models:
        return models[0]
    return ann


def model_at(root: type[BaseModel], path: PathT, data: Any) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` of ``data`` (None if not one)."""
    ann = annotation_at(root, path, data)
    ann = _pick(ann, _value_at(data, path))
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def annotation_at(root: type[BaseModel], path: PathT, data: Any) -> Any:
    """The schema annotation of the value at ``path`` of ``data`` (None if the path is unknown)."""
    ann: Any = root
    value = data
    for el in path:
        ann = _pick(ann, value)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(str(el))
            if field is None:
                return None
            ann = field.annotation
        elif typing.get_origin(ann) in (list, tuple):
            ann = typing.get_args(ann)[0]
        elif typing.get_origin(ann) is dict:
            ann = typing.get_args(ann)[1]
        else:
            return None
        value = _child(value, el)
    return ann


def _child(value: Any, el: str | int) -> Any:
    if isinstance(value, dict):
        return value.get(el)
    if isinstance(value, list) and isinstance(el, int) and 0 <= el < len(value):
        return value[el]
    return None


# --------------------------------------------------------------------------- pydantic errors

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "finite_number": "a finite number",
}

_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


@dataclass
class _Err:
    path: PathT
    union_at: PathT | None
    tag: str | None
    raw: dict[str, Any]


def _locate(
    loc: tuple[Any, ...], data: Any, missing: bool
) -> tuple[PathT, PathT | None, str | None]:
    """Split a pydantic ``loc`` into the data path and the first union tag met on the way."""
    path: list[str | int] = []
    union_at: PathT | None = None
    tag: str | None = None
    cur = data
    for i, el in enumerate(loc):
        if _has(cur, el):
            path.append(el)
            cur = cur[el]
        elif missing and i == len(loc) - 1:
            path.append(el)
        else:
            if union_at is None:
                union_at, tag = tuple(path), str(el)
    return tuple(path), union_at, tag


def _has(value: Any, el: Any) -> bool:
    if isinstance(value, dict):
        return el in value
    return isinstance(value, list) and isinstance(el, int) and 0 <= el < len(value)


def _value_at(data: Any, path: PathT) -> Any:
    for el in path:
        data = _child(data, el)
    return data


def _select_branches(errs: list[_Err], data: Any) -> tuple[list[_Err], bool]:
    """Keep the errors of union branches that fit the value; say if a list branch was dropped."""
    value = _value_at(data, errs[0].union_at or ())
    is_list = lambda e: (e.tag or "").startswith(("list[", "tuple["))  # noqa: E731
    if isinstance(value, list):
        kept = [e for e in errs if is_list(e)]
        return (kept or errs), False
    kept = [e for e in errs if not is_list(e) and e.tag != "none"]
    return (kept or errs), len(kept) < len(errs) and any(is_list(e) for e in errs)


def problems_from_validation_error(
    exc: ValidationError, data: Any, root: type[BaseModel]
) -> list[Problem]:
    """Translate every error of ``exc`` (raised validating ``data`` against ``root``)."""
    errs = []
    for raw in exc.errors(include_url=False):
        path, union_at, tag = _locate(tuple(raw["loc"]), data, raw["type"] == "missing")
        errs.append(_Err(path, union_at, tag, raw))

    # Union branches: keep the branches that fit the value at the union's location.
    searchable: set[PathT] = set()
    plain = [e for e in errs if e.union_at is None]
    groups: dict[PathT, list[_Err]] = {}
    for e in errs:
        if e.union_at is not None:
            groups.setdefault(e.union_at, []).append(e)
    for at, group in groups.items():
        kept, dropped_list = _select_branches(group, data)
        if dropped_list:
            searchable.add(at)
        plain.extend(kept)

    # Merge what remains per path (several literal branches become one list of choices).
    by_path: dict[PathT, list[_Err]] = {}
    for e in plain:
        by_path.setdefault(e.path, []).append(e)
    problems = []
    for path, group in by_path.items():
        # A value that reached deeper errors (list items, sub-keys) is not itself wrong.
        if any(p[: len(path)] == path and len(p) > len(path) for p in by_path):
            group = [e for e in group if e.raw["type"] in ("extra_forbidden", "missing")] or []
        if group:
            problems.append(_problem(path, group, data, root, path in searchable))
    return problems


def _bounds_at(root: type[BaseModel], path: PathT, data: Any) -> list[str]:
    """All numeric bounds of the field at ``path`` (``['> 0', '< 1']``), from the schema."""
    key_path = tuple(el for el in path if not isinstance(el, int))
    if not key_path:
        return []
    parent = path[: max(i for i, el in enumerate(path) if el == key_path[-1])]
    model = model_at(root, parent, data)
    field = model.model_fields.get(str(key_path[-1])) if model else None
    if field is None:
        return []
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):  # Searchable[Annotated[float, Field(gt=0)]]
        for inner in (arg, *typing.get_args(arg)):
            if typing.get_origin(inner) is typing.Annotated:
                for m in typing.get_args(inner)[1:]:
                    metadata.extend(getattr(m, "metadata", [m]))
    out = []
    for name, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        for m in metadata:
            if getattr(m, name, None) is not None and f"{sym} {getattr(m, name)}" not in out:
                out.append(f"{sym} {getattr(m, name)}")
    return out


@dataclass(frozen=True)
class _Context:
    """One group of pydantic errors at ``path``, with what a handler needs to describe them."""

    path: PathT
    group: list[_Err]
    data: Any
    root: type[BaseModel]
    or_list: str  # " (or a list of such values: a search space)" where a list was allowed

    @property
    def raw(self) -> dict[str, Any]:
        return self.group[0].raw

    @property
    def value(self) -> Any:
        return self.raw.get("input")

    @property
    def ctx(self) -> dict[str, Any]:
        return self.raw.get("ctx") or {}


def _problem(
    path: PathT, group: list[_Err], data: Any, root: type[BaseModel], searchable: bool
) -> Problem:
    """One problem for a group of pydantic errors at ``path`` (the handler of its kind)."""
    or_list = " (or a list of such values: a search space)" if searchable else ""
    c = _Context(path, group, data, root, or_list)
    kind = c.raw["type"]
    if all(e.raw["type"] == "literal_error" for e in group):
        return _literal(c)
    if kind in _HANDLERS:
        return _HANDLERS[kind](c)
    if kind in _BOUNDS:
        return _out_of_range(c)
    if kind in _TYPE_WORDS or all(e.raw["type"] in _TYPE_WORDS for e in group):
        return _wrong_type(c)
    if kind == "value_error":
        return Problem(path, str(c.raw["msg"]).removeprefix("Value error, "), found=show(c.value))
    return Problem(path, str(c.raw["msg"]).rstrip("."), found=show(c.value))


def _unknown_key(c: _Context) -> Problem:
    model = model_at(c.root, c.path[:-1], c.data)
    allowed = list(model.model_fields) if model else []
    return Problem(
        c.path,
        "unknown key",
        found=show(c.path[-1]),
        allowed=", ".join(allowed) or None,
        suggestion=suggest(c.path[-1], allowed),
        anchor="key",
    )


def _missing(c: _Context) -> Problem:
    if isinstance(c.path[-1], int):
        return Problem(c.path, f"missing value: expected {c.path[-1] + 1} or more values")
    return Problem(c.path, "missing required key")


def _literal(c: _Context) -> Problem:
    allowed: list[str] = []
    for e in c.group:
        for v in re.findall(r"'([^']*)'", e.raw["ctx"]["expected"]):
            if v not in allowed:
                allowed.append(v)
    return Problem(
        c.path,
        "invalid value",
        found=show(c.value),
        allowed=choices(allowed) + c.or_list,
        suggestion=suggest(c.value, allowed),
    )


def _invalid_tag(c: _Context) -> Problem:
    disc = c.ctx.get("discriminator", "").strip("'")
    allowed = re.findall(r"'([^']*)'", c.ctx.get("expected_tags", ""))
    return Problem(
        (*c.path, disc),
        f"invalid {disc}",
        found=show(c.ctx.get("tag")),
        allowed=choices(allowed),
        suggestion=suggest(c.ctx.get("tag"), allowed),
    )


def _missing_tag(c: _Context) -> Problem:
    disc = c.ctx.get("discriminator", "").strip("'")
    tags: list[str] = []
    union = _strip(annotation_at(c.root, c.path, c.data))
    if _is_union(union):
        for m in typing.get_args(union):
            m = _strip(m)
            if isinstance(m, type) and issubclass(m, BaseModel) and disc in m.model_fields:
                tags.extend(typing.get_args(m.model_fields[disc].annotation))
    if isinstance(c.value, dict):
        return Problem((*c.path, disc), "missing required key", allowed=choices(tags) or None)
    return Problem(c.path, "wrong type", found=show(c.value), allowed="a mapping (key: value)")


def _not_finite(c: _Context) -> Problem:
    bounds = _bounds_at(c.root, c.path, c.data) or ["a finite number"]
    return Problem(
        c.path,
        "not a finite number (.inf, .nan, or a literal too large for a float such as 1.0e400)",
        found=show(c.value),
        allowed=" and ".join(bounds) + c.or_list,
    )


def _out_of_range(c: _Context) -> Problem:
    kind = c.raw["type"]
    bounds = _bounds_at(c.root, c.path, c.data) or [f"{_BOUNDS[kind]} {next(iter(c.ctx.values()))}"]
    return Problem(c.path, "out of range", found=show(c.value), allowed=" and ".join(bounds))


def _item_count(c: _Context) -> Problem:
    n = c.ctx.get("min_length", c.ctx.get("max_length"))
    what = "at least" if c.raw["type"] == "too_short" else "at most"
    return Problem(
        c.path,
        "wrong number of items",
        found=f"{c.ctx.get('actual_length')} item(s)",
        allowed=f"{what} {n} item(s)",
    )


def _pattern(c: _Context) -> Problem:
    pattern = c.ctx.get("pattern", "")
    allowed = f"text matching {pattern}"
    if pattern.startswith("^[A-Za-z0-9][A-Za-z0-9_.-]*"):
        allowed = "letters, digits, '_', '.' and '-', starting with a letter or a digit"
    return Problem(c.path, "invalid text", found=show(c.value), allowed=allowed)


def _wrong_type(c: _Context) -> Problem:
    words: list[str] = []
    for e in c.group:
        w = _TYPE_WORDS.get(e.raw["type"], e.raw["msg"])
        if w not in words:
            words.append(w)
    return Problem(
        c.path, "wrong type", found=show(c.value), allowed=" or ".join(words) + c.or_list
    )


_HANDLERS: dict[str, Callable[[_Context], Problem]] = {
    "extra_forbidden": _unknown_key,
    "missing": _missing,
    "union_tag_invalid": _invalid_tag,
    "union_tag_not_found": _missing_tag,
    "finite_number": _not_finite,
    "too_short": _item_count,
    "too_long": _item_count,
    "string_pattern_mismatch": _pattern,
}
