"""Helpers of the suite tests: the corpus of good and bad suites and their expectations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOOD = sorted((HERE / "good").glob("*.yaml"))
BAD = sorted((HERE / "bad").glob("*.yaml"))
SHIPPED = sorted((HERE.parents[1] / "suites").glob("*.yaml"))


@dataclass(frozen=True)
class Expected:
    """What a bad suite's header comment promises: locations with key paths, and message texts."""

    locations: frozenset[tuple[int, int, str]]
    contains: tuple[str, ...]


def expected(path: Path) -> Expected:
    """Parse ``# expect: LINE:COL KEYPATH`` (``-`` for none) and ``# contains: TEXT`` lines."""
    text = path.read_text(encoding="utf-8")
    locs = frozenset(
        (int(line), int(col), key)
        for line, col, key in re.findall(r"^# expect: (\d+):(\d+) (\S+)$", text, re.M)
    )
    contains = tuple(re.findall(r"^# contains: (.+)$", text, re.M))
    return Expected(locs, contains)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Names, sizes and mtimes of every file under ``folder`` (to prove nothing was written)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }
