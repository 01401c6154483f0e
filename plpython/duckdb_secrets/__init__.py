"""duckdb_secrets: DuckDB secrets managed by PostgreSQL (logic behind the SQL functions)."""

__version__ = "0.4.0"

# Versions of the SQL objects this package serves: the current one, and older
# ones until ALTER EXTENSION duckdb_secrets UPDATE has run.
SQL_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.4.0")
