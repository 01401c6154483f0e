"""duckdb_secrets: DuckDB secrets managed by PostgreSQL (logic behind the SQL functions).

The version is written once, in duckdb_secrets.control. `make install` writes
_version.py next to this file: the current version, and every version of the
SQL objects this package serves (the current one, and older ones until
ALTER EXTENSION duckdb_secrets UPDATE has run), taken from the install and
upgrade scripts in sql/install/. From a source tree they are read from there.
"""

try:
    from ._version import SQL_VERSIONS, __version__
except ImportError:
    from ._tree import versions as _versions

    __version__, SQL_VERSIONS = _versions()
