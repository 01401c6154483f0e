"""An ordinary DuckDB client process, outside PostgreSQL (python duckdb 1.5.5
with the postgres, httpfs and ducklake extension wheels, loaded offline).

    python duckdb_client.py '<json list of SQL statements>'

Runs the statements in one in-memory DuckDB and prints one JSON line: the
rows of each statement, or {"error": ...} for the first that failed.
"""

import importlib.util
import json
import os
import sys

import duckdb

# Set before DuckDB's aws code can run (it reads it when it resolves credentials).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def extension(pkg, name):
    spec = importlib.util.find_spec(pkg)
    base = list(spec.submodule_search_locations)[0]
    return os.path.join(base, "extensions", f"v{duckdb.__version__}", f"{name}.duckdb_extension")


def main():
    statements = json.loads(sys.argv[1])
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                 "threads": 1, "memory_limit": "256MB"})
    con.execute("SET enable_progress_bar = false")
    con.execute(f"LOAD '{extension('duckdb_extension_postgres_scanner', 'postgres_scanner')}'")
    con.execute(f"LOAD '{extension('duckdb_extension_httpfs', 'httpfs')}'")
    con.execute(f"LOAD '{extension('duckdb_extension_ducklake', 'ducklake')}'")
    out = []
    for sql in statements:
        try:
            out.append([list(r) for r in con.execute(sql).fetchall()])
        except duckdb.Error as e:
            out.append({"error": str(e)})
            break
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
