"""duckdb_secrets: DuckDB secrets managed by PostgreSQL (logic behind the SQL functions).

The version is written once, in duckdb_secrets.control. `make install` writes
_version.py next to this file; from a source tree it is read from there. Which
versions of the SQL objects the package serves is api.SQL_VERSIONS.
"""

try:
    from ._version import __version__
except ImportError:
    from ._tree import version as _version

    __version__ = _version()
