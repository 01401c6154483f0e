"""What bench/run.py and bench/baseline.py share: the result shapes of the
throughput rows (DuckDB's own fetchall and duckdb.query run the same SQL), and
how a process's memory is read."""

SHAPES = {
    "rows": "SELECT range::BIGINT AS a, (range * 2)::BIGINT AS b, 'row ' || range AS c FROM range({n})",
    "mixed": ("SELECT TIMESTAMP '2024-01-01' + to_microseconds(range * 7919) AS ts, "
              "(range * 1.25)::DECIMAL(18, 2) AS d, "
              "CASE WHEN range % 10 = 0 THEN NULL ELSE 'say \"hi\" \\ ' || range || chr(10) || 'end' END AS t, "
              "CASE WHEN range % 7 = 0 THEN NULL ELSE range END AS n FROM range({n})"),
}


def proc_memory(pid="self"):
    """RSS, PSS and USS (private pages) of a process, in bytes (/proc/<pid>/smaps_rollup)."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}
