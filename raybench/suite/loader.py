"""Load a suite file: safe YAML, every problem located at file:line:col with its key path.

The file is composed into YAML nodes (which keep their positions), checked for what plain YAML
loaders let through silently (duplicate keys, tab indentation, non-string keys), converted to plain
data, validated against :class:`~raybench.suite.schema.Suite` and checked across keys
(:mod:`raybench.suite.checks`). All problems are collected and raised together as one
:class:`~raybench.suite.problems.SuiteValidationError` (a :class:`~raybench.errors.SuiteError`).

YAML is read with the YAML 1.2 core rules for booleans and numbers: only ``true``/``false`` are
booleans (``off``, ``no`` and ``yes`` stay strings) and ``1e-3`` is a number.

The loader is bounded, so that a hostile or broken file is a located error rather than gigabytes of
memory or a crash: at most :data:`MAX_SUITE_BYTES` of text, :data:`MAX_DEPTH` levels of nesting
and :data:`MAX_NODES` values once aliases are expanded (a "billion laughs" alias bomb stops there).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from raybench.suite.checks import check_suite_data
from raybench.suite.problems import (
    PathT,
    Problem,
    SuiteValidationError,
    problems_from_validation_error,
    show,
)
from raybench.suite.schema import Suite

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SUITE_BYTES",
    "load_suite",
    "locate",
    "parse_suite",
    "resolve_path",
    "suite_dir",
    "suite_json_schema",
]

_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")

#: Largest suite file read (suites are a few kB; this is hundreds of models).
MAX_SUITE_BYTES = 1_000_000
#: Deepest nesting of mappings and lists (a suite needs about 6 levels).
MAX_DEPTH = 50
#: Most values (mappings, lists and scalars) a suite may hold once YAML aliases are expanded.
MAX_NODES = 100_000


class SuiteLimitError(yaml.MarkedYAMLError):
    """The suite is larger or deeper than the loader's bounds (the message names the limit)."""


class SuiteYamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core booleans, exponent floats without a dot (``1e-3``) and a bound
    on nesting depth (:data:`MAX_DEPTH`), checked while composing so that no recursion runs deep.
    """

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise SuiteLimitError(
                    problem=f"nested more than {MAX_DEPTH} levels deep (the limit)",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


SuiteYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SuiteYamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
SuiteYamlLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)

Marks = dict[PathT, tuple[yaml.Mark | None, yaml.Mark]]


class _Reader:
    """Turns a node tree into plain data, recording each path's key and value marks."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.marks: Marks = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._stack: set[int] = set()
        self._nodes = 0
        #: Paths whose value was refused (unsafe tag): the schema's complaint about them is noise.
        self.refused: set[PathT] = set()

    def problem(self, mark: yaml.Mark, message: str, path: PathT = (), **kw: Any) -> None:
        self.problems.append(
            Problem(path, message, file=self.source, line=mark.line + 1, col=mark.column + 1, **kw)
        )

    def read(self, node: Node, path: PathT = (), key_mark: yaml.Mark | None = None) -> Any:
        """Plain data of ``node``; raises :class:`SuiteLimitError` past the bounds."""
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise SuiteLimitError(
                problem=f"the suite holds more than {MAX_NODES} values once its YAML aliases "
                "(*name) are expanded (the limit); an alias bomb?",
                problem_mark=node.start_mark,
            )
        if len(path) > MAX_DEPTH:
            raise SuiteLimitError(
                problem=f"nested more than {MAX_DEPTH} levels deep once its YAML aliases are "
                "expanded (the limit)",
                problem_mark=node.start_mark,
            )
        self.marks.setdefault(path, (key_mark, node.start_mark))
        if id(node) in self._stack:
            self.problem(node.start_mark, "an alias refers to itself (recursive structure)", path)
            return None
        self._stack.add(id(node))
        try:
            if isinstance(node, MappingNode | SequenceNode) and node.tag not in _COLLECTION_TAGS:
                self.problem(
                    node.start_mark,
                    "YAML tag not allowed (safe YAML only: no Python objects or custom tags)",
                    path,
                    found=show(node.tag),
                )
                self.refused.add(path)
                return None
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self.read(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._scalar(node, path)
        finally:
            self._stack.discard(id(node))

    def _scalar(self, node: Node, path: PathT) -> Any:
        try:
            return self._constructor.construct_object(node)
        except ValueError:  # an integer of more digits than Python converts
            self.problem(
                node.start_mark, "number too long to read", path, found=f"{node.value:.20}..."
            )
            self.refused.add(path)
            return None
        except yaml.constructor.ConstructorError:
            self.problem(
                node.start_mark,
                "YAML tag not allowed (safe YAML only: no Python objects or custom tags)",
                path,
                found=show(node.tag),
            )
            self.refused.add(path)
            return None

    def _key(self, node: Node, path: PathT) -> str | None:
        key = self._scalar(node, path) if isinstance(node, ScalarNode) else node
        if isinstance(key, str):
            return key
        if isinstance(node, ScalarNode):
            found = f"{node.value} (read as {type(key).__name__} {show(key)})"
        else:
            found = f"a {node.id} used as a key"
        self.problem(
            node.start_mark, "keys must be strings; quote the key", path, found=found, anchor="key"
        )
        return None

    def _mapping(self, node: MappingNode, path: PathT) -> dict[str, Any]:
        seen: dict[str, yaml.Mark] = {}
        for knode, _ in node.value:
            if knode.tag == _MERGE:
                continue
            key = self._key(knode, path)
            if key is None:
                continue
            if key in seen:
                self.problem(
                    knode.start_mark,
                    f"duplicate key (first at line {seen[key].line + 1}); keep only one",
                    (*path, key),
                    found=show(key),
                    anchor="key",
                )
            else:
                seen[key] = knode.start_mark
        try:
            self._constructor.flatten_mapping(node)  # resolves '<<' merge keys in place
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or node.start_mark
            self.problem(mark, f"invalid merge key: {exc.problem}", path)
        winners: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:  # merged pairs first, then the mapping's own keys
            key = self._quiet_key(knode)
            if key is not None:
                winners[key] = (knode, vnode)
        return {
            key: self.read(vnode, (*path, key), knode.start_mark)
            for key, (knode, vnode) in winners.items()
        }

    def _quiet_key(self, node: Node) -> str | None:
        if not isinstance(node, ScalarNode):
            return None
        try:
            key = self._constructor.construct_object(node)
        except yaml.constructor.ConstructorError:
            return None
        return key if isinstance(key, str) else None


# --------------------------------------------------------------------------- locating problems


def _locate(problem: Problem, marks: Marks, source: str) -> Problem:
    """Set the problem's file:line:col from the marks of its path (or of its nearest ancestor)."""
    problem.file = source
    if problem.line is not None:
        return problem
    path = problem.path
    if path in marks:
        key_mark, value_mark = marks[path]
        mark = key_mark if problem.anchor == "key" and key_mark is not None else value_mark
    else:
        n = len(path) - 1
        while n > 0 and path[:n] not in marks:
            n -= 1
        key_mark, value_mark = marks.get(path[:n], (None, None))
        mark = key_mark or value_mark
    if mark is not None:
        problem.line, problem.col = mark.line + 1, mark.column + 1
    else:
        problem.line, problem.col = 1, 1
    return problem


def _tabs(text: str, source: str) -> list[Problem]:
    """Tabs in indentation: YAML indents with spaces only."""
    problems = []
    for i, line in enumerate(text.splitlines()):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            problems.append(
                Problem(
                    (),
                    "tab character in indentation; YAML indents with spaces only",
                    file=source,
                    line=i + 1,
                    col=indent.index("\t") + 1,
                )
            )
    return problems


def _finish(problems: list[Problem], source: str) -> SuiteValidationError:
    unique: dict[str, Problem] = {}
    for p in problems:
        unique.setdefault(str(p), p)
    ordered = sorted(unique.values(), key=lambda p: (p.line or 0, p.col or 0))
    return SuiteValidationError(ordered, source)


# --------------------------------------------------------------------------- public API


def parse_suite(text: str, source: str = "<string>") -> Suite:
    """Validate a suite given as YAML text; ``source`` names it in messages.

    Raises :class:`~raybench.suite.problems.SuiteValidationError` listing every problem.
    """
    problems = _too_large(len(text.encode("utf-8")), source) or _tabs(text, source)
    if problems:
        raise _finish(problems, source)
    node = _compose(text, source)
    reader = _Reader(source)
    try:
        data = reader.read(node)
    except SuiteLimitError as exc:
        raise _finish([_marked(exc, "", source)], source) from None
    problems = list(reader.problems)
    if not isinstance(data, dict):
        problems.append(
            Problem((), "a suite is a mapping of keys (name:, datasets:, ...)", found=show(data))
        )
        raise _finish([_locate(p, reader.marks, source) for p in problems], source)
    suite = None
    try:
        suite = Suite.model_validate(data, context={"skip_semantic_checks": True})
    except ValidationError as exc:
        problems += problems_from_validation_error(exc, data, Suite)
    problems += check_suite_data(data)
    problems = [p for p in problems if p in reader.problems or p.path not in reader.refused]
    if problems or suite is None:
        raise _finish([_locate(p, reader.marks, source) for p in problems], source)
    return suite


def _too_large(size: int, source: str) -> list[Problem]:
    """A problem when the suite's text is over :data:`MAX_SUITE_BYTES`."""
    if size <= MAX_SUITE_BYTES:
        return []
    return [
        Problem(
            (),
            f"the file is {size} bytes, larger than a suite may be",
            file=source,
            line=1,
            col=1,
            allowed=f"at most {MAX_SUITE_BYTES} bytes",
        )
    ]


def _marked(exc: yaml.MarkedYAMLError, prefix: str, source: str) -> Problem:
    """A problem located at the mark of a YAML error."""
    mark = exc.problem_mark or exc.context_mark
    what = str(exc.problem or "")
    if exc.context:
        where = exc.context_mark
        started = f" (started at line {where.line + 1}, column {where.column + 1})" if where else ""
        what = f"{exc.context}{started}: {what}"
    problem = Problem((), f"{prefix}{what}", file=source)
    if mark is not None:
        problem.line, problem.col = mark.line + 1, mark.column + 1
    return problem


def _compose(text: str, source: str) -> Node:
    """The YAML node tree of ``text``; every YAML error becomes a located problem."""
    loader = None
    try:
        loader = SuiteYamlLoader(text)
        node = loader.get_single_node()
    except SuiteLimitError as exc:
        raise _finish([_marked(exc, "", source)], source) from None
    except yaml.MarkedYAMLError as exc:
        raise _finish([_marked(exc, "YAML syntax error: ", source)], source) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        problem = Problem(
            (),
            f"character not allowed in YAML: #x{exc.character:04x}; remove it",
            file=source,
            line=before.count("\n") + 1,
            col=len(before) - (before.rfind("\n") + 1) + 1,
        )
        raise _finish([problem], source) from None
    except yaml.YAMLError as exc:
        raise _finish([Problem((), f"YAML error: {exc}", file=source)], source) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        empty = Problem(
            (),
            "the file is empty; a suite needs at least name, datasets, task and models",
            file=source,
            line=1,
            col=1,
        )
        raise _finish([empty], source)
    return node


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Load and validate the suite file at ``path``.

    Every problem (YAML syntax, duplicate keys, unknown keys, wrong types or values, cross-key
    inconsistencies) is collected and raised at once as a
    :class:`~raybench.suite.problems.SuiteValidationError` whose message lists each with its
    ``file:line:col``, key path, what was found, what is allowed and a "did you mean".
    Relative paths inside the suite are relative to its directory: see :func:`resolve_path`.
    """
    source = os.fspath(path)
    p = Path(source)
    try:
        if p.is_file() and p.stat().st_size > MAX_SUITE_BYTES:  # not read into memory at all
            raise _finish(_too_large(p.stat().st_size, source), source)
        raw = p.read_bytes()
    except FileNotFoundError:
        problem = Problem((), "no such file; check the path of the suite", file=source)
        raise _finish([problem], source) from None
    except IsADirectoryError:
        problem = Problem((), "is a directory; give the path of a suite .yaml file", file=source)
        raise _finish([problem], source) from None
    except OSError as exc:
        problem = Problem((), f"cannot read the file: {exc.strerror}", file=source)
        raise _finish([problem], source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        problem = Problem(
            (),
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the suite as UTF-8",
            file=source,
            line=line,
            col=col,
        )
        raise _finish([problem], source) from None
    return parse_suite(text, source)


def locate(suite_path: str | os.PathLike[str], path: PathT) -> tuple[int, int] | None:
    """1-based (line, column) of the value at key ``path`` in a (valid) suite file, if present.

    Lets later stages point at the suite when they reject something in it, e.g. a dataset whose
    files are missing: ``locate("suite.yaml", ("datasets", 1))``.
    """
    reader = _Reader(os.fspath(suite_path))
    try:
        node = yaml.compose(Path(suite_path).read_text(encoding="utf-8"), Loader=SuiteYamlLoader)
        if node is None:
            return None
        reader.read(node)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # SuiteLimitError is a YAMLError
        return None
    if path not in reader.marks:
        return None
    mark = reader.marks[path][1]
    return mark.line + 1, mark.column + 1


def suite_dir(suite_path: str | os.PathLike[str]) -> Path:
    """The absolute directory of a suite file: the base of its relative paths."""
    return Path(os.fspath(suite_path)).expanduser().resolve().parent


def resolve_path(suite_path: str | os.PathLike[str], p: str) -> str:
    """Resolve a path written in a suite: relative paths are relative to the suite's directory.

    ``~`` is expanded; absolute paths are kept; URIs (``s3://bucket/x``, ``gs://...``) are returned
    unchanged so that pyarrow filesystems can open them. Returns a string (absolute local path or
    URI).

    >>> resolve_path("/tmp/suites/a.yaml", "data/x.tsv")
    '/tmp/suites/data/x.tsv'
    >>> resolve_path("/tmp/suites/a.yaml", "s3://bucket/run")
    's3://bucket/run'
    """
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", p):
        return p
    q = Path(p).expanduser()
    if not q.is_absolute():
        q = suite_dir(suite_path) / q
    return os.path.normpath(q)


def suite_json_schema() -> dict[str, Any]:
    """The JSON Schema of a suite (draft 2020-12, with descriptions), for editors and tools.

    Point an editor at it (e.g. ``# yaml-language-server: $schema=suite.schema.json`` with the
    output of ``raybench schema > suite.schema.json``) for completion and inline errors.
    """
    schema = Suite.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "raybench suite",
    }
