"""Result shapes of the throughput rows: DuckDB's own fetchall (baseline.py) and
duckdb.query (run.py) run the same SQL."""

SHAPES = {
    "rows": "SELECT range::BIGINT AS a, (range * 2)::BIGINT AS b, 'row ' || range AS c FROM range({n})",
    "mixed": ("SELECT TIMESTAMP '2024-01-01' + to_microseconds(range * 7919) AS ts, "
              "(range * 1.25)::DECIMAL(18, 2) AS d, "
              "CASE WHEN range % 10 = 0 THEN NULL ELSE 'say \"hi\" \\ ' || range || chr(10) || 'end' END AS t, "
              "CASE WHEN range % 7 = 0 THEN NULL ELSE range END AS n FROM range({n})"),
}
