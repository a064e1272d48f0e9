"""Reads a kalamstore table's Delta log with readers no one here wrote, for tests/tests/delta.rs.

    read_delta.py TABLE_DIR rows [USER]   one line per reader: {"reader": ..., "rows": [...]}
    read_delta.py TABLE_DIR files         the snapshot's version, data files and live rows

Rows are the table's columns (without `_user`) as strings, '|'-joined, sorted. deltalake
honours deletion vectors only through its DataFusion path (QueryBuilder); Polars needs its DV
reader flag.
"""
import json
import os
import sys

os.environ.setdefault("POLARS_DELTA_READER_FEATURE_DV", "1")

import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
from deltalake import DeltaTable, QueryBuilder  # noqa: E402


def cell(v):
    if v is None:
        return "null"
    return str(v)


def rows_of(records, columns):
    return sorted("|".join(cell(r[c]) for c in columns) for r in records)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    table = DeltaTable(path)
    if mode == "files":
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        files = sorted(a["path"].rsplit("/", 1)[-1] for a in actions)
        live = QueryBuilder().register("t", table).execute("SELECT COUNT(*) AS n FROM t")
        live = pa.table(live.read_all()).column("n")[0].as_py()
        print(json.dumps({"version": table.version(), "files": files, "live_rows": live}))
        return
    user = sys.argv[3] if len(sys.argv) > 3 else None
    columns = [f.name for f in table.schema().fields if f.name != "_user"]
    where = f" WHERE _user = '{user}'" if user else ""
    select = ", ".join(f'"{c}"' for c in columns)
    batches = (
        QueryBuilder()
        .register("t", table)
        .execute(f"SELECT {select} FROM t{where}")
        .read_all()
    )
    print(json.dumps({"reader": "deltalake", "rows": rows_of(pa.table(batches).to_pylist(), columns)}))
    frame = pl.read_delta(path)
    if user:
        frame = frame.filter(pl.col("_user") == user)
    print(json.dumps({"reader": "polars", "rows": rows_of(frame.select(columns).to_dicts(), columns)}))


if __name__ == "__main__":
    main()
