"""duckdb_secrets: DuckDB secrets managed by PostgreSQL (logic behind the SQL functions)."""

__version__ = "0.1.0"
