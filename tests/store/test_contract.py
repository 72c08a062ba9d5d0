"""The store's writer and the analysis reader take their schemas from one declaration.

The declaration is :data:`raybench_analysis.contract.CONTRACT`; docs/results.md's column tables are
generated from it; ``raybench status``, the store and ``raybench_analysis.load`` share its scanner
and its leakage check.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pyarrow as pa
from raybench_analysis import check_leakage, contract, io, load

import raybench.store.reader
import raybench.store.status
from raybench.store import ResultStore
from raybench.store.schemas import SCHEMAS, TABLES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "results.md"


def test_writer_and_reader_schemas_are_the_declaration() -> None:
    assert TABLES == contract.TABLE_NAMES == io.TABLES
    for name, spec in contract.CONTRACT.items():
        writer, reader = SCHEMAS[name], io.SCHEMAS[name]
        assert writer.names == spec.names == list(reader)
        assert [f.nullable for f in writer] == [c.nullable for c in spec.columns]
        # the writer's arrow types read back in polars as exactly the reader's dtypes
        assert dict(pl.from_arrow(writer.empty_table()).schema) == reader  # type: ignore[union-attr]
        assert contract.schema_problem(name, writer) is None


def test_a_column_added_to_the_declaration_reaches_writer_and_reader() -> None:
    """Change the one declaration in a fresh process: both schemas follow, nothing else to edit."""
    script = textwrap.dedent(
        """
        from raybench_analysis import contract
        spec = contract.CONTRACT["epochs"]
        extra = contract.Column("grad_norm", "float64", "a new column")
        contract.CONTRACT["epochs"] = contract.TableSpec(spec.name, spec.grain,
                                                         (*spec.columns, extra))
        import importlib
        from raybench.store import schemas
        from raybench_analysis import io
        writer, reader = importlib.reload(schemas).SCHEMAS, importlib.reload(io).SCHEMAS
        print(writer["epochs"].field("grad_norm").type, reader["epochs"]["grad_norm"])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["double", "Float64"]


def test_store_files_load_with_the_readers_schema(make_tables, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "res")
    store.commit("t1", make_tables("t1"))
    res = load(tmp_path / "res")
    for name in TABLES:
        frame = getattr(res, name).collect()
        assert dict(frame.schema) == io.SCHEMAS[name] and frame.height > 0


def test_docs_list_every_column_of_every_table() -> None:
    text = DOCS.read_text()
    assert contract.render_docs(text) == text, (
        'docs/results.md is out of date: run python -c "import raybench_analysis.contract '
        "as c; c.write_docs('docs/results.md')\""
    )
    for spec in contract.CONTRACT.values():
        for column in spec.columns:
            assert f"| {column.name} | " in text


def test_one_scanner_and_one_leakage_check() -> None:
    assert raybench.store.reader.inventory is contract.inventory
    assert raybench.store.status.check_leakage is contract.check_leakage is check_leakage
    for module in (raybench.store.reader, raybench.store.status, io):
        source = Path(module.__file__).read_text()
        assert "group_by(" not in source and "pa.field(" not in source


def test_leakage_check_on_a_store(make_tables, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "res")
    tables = make_tables("t1")
    splits = tables["splits"].to_pylist()
    splits[1]["subject_id"] = splits[0]["subject_id"]  # one subject in train and val
    tables["splits"] = pa.Table.from_pylist(splits, schema=SCHEMAS["splits"])
    store.commit("t1", tables)
    leaks = store.status(planned=["t1"])["leakage"]
    assert leaks == [{"trial_id": "t1", "subject_id": "sa", "roles": "train,val", "n_samples": 2}]
