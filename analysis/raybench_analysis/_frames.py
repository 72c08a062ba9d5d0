"""Shared helpers: turn user input into polars frames / numpy arrays, with clear errors.

Every function of the analysis package accepts polars (eager or lazy), pandas, pyarrow tables or
plain dicts of columns, and returns polars. Bad input raises :class:`AnalysisError`, a
``ValueError`` whose message says what was found, where (argument, column, row), what is allowed
and how to fix it. The analysis package never imports raybench; the ``raybench`` CLI's error
boundary catches :class:`AnalysisError` itself and prints it as a friendly message (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "AnalysisError",
    "as_array",
    "as_names",
    "require_columns",
    "same_length",
    "to_polars",
]


class AnalysisError(ValueError):
    """Bad input to an analysis function (wrong type, missing column, invalid value).

    ``exit_code`` is the process exit status a command line should end with (bad input: 2).
    """

    exit_code: int = 2


def to_polars(data: Any, *, name: str = "data") -> pl.DataFrame:
    """Return ``data`` as an eager polars DataFrame.

    Accepts a polars DataFrame or LazyFrame (collected into one chunk per column), a pandas
    DataFrame, a pyarrow Table or a mapping of column name to sequence. Anything else raises
    :class:`AnalysisError`.
    """
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):  # one chunk: a scan of 10,000 files gives 10,000 chunks,
        return data.collect().rechunk()  # and every later filter or join walks them (issue 11)
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pl.from_pandas(data)
    if module == "pyarrow":
        out = pl.from_arrow(data)
        if isinstance(out, pl.DataFrame):
            return out
    if isinstance(data, dict):
        try:
            return pl.DataFrame(data)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise AnalysisError(
                f"{name}: cannot build a table from this dict ({exc}); give equal-length columns"
            ) from exc
    raise AnalysisError(
        f"{name}: expected a polars/pandas DataFrame, a pyarrow Table or a dict of columns, "
        f"got {type(data).__name__}; convert it with pl.DataFrame(...) first"
    )


def require_columns(
    frame: pl.DataFrame | pl.LazyFrame, columns: Iterable[str], *, name: str = "data", why: str = ""
) -> None:
    """Raise :class:`AnalysisError` naming every column of ``columns`` absent from ``frame``."""
    present = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    missing = [c for c in columns if c not in present]
    if missing:
        purpose = f" (needed {why})" if why else ""
        raise AnalysisError(
            f"{name}: missing column(s) {missing}{purpose}; available columns: {present}. "
            "Rename your columns or pass the right names."
        )


def as_array(values: Any, *, name: str, allow_nan: bool = False) -> np.ndarray:
    """Return a 1-D float64 numpy array from a list, numpy array, polars or pandas Series.

    Raises :class:`AnalysisError` for non-numeric, multi-dimensional or (unless ``allow_nan``)
    non-finite input, naming the first bad position.
    """
    if isinstance(values, pl.Series) or type(values).__module__.split(".")[0] == "pandas":
        values = values.to_numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name}: expected numbers, could not convert ({exc})") from exc
    if arr.ndim != 1:
        raise AnalysisError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if not allow_nan and not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise AnalysisError(
            f"{name}: value at position {bad} is {arr[bad]!r}; only finite numbers are allowed. "
            "Drop or impute missing values first."
        )
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """Raise :class:`AnalysisError` unless all arrays have the same length; return it."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise AnalysisError(f"arrays must have the same length, got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise AnalysisError(f"{', '.join(lengths)}: empty input; give at least one observation")
    return n


def as_names(value: str | Sequence[str] | None, *, name: str) -> list[str]:
    """Normalise a column-name argument (``None``, one name or a sequence) to a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    names = list(value)
    if not all(isinstance(v, str) for v in names):
        raise AnalysisError(f"{name}={value!r}: expected column names (strings)")
    return names
