"""What bench/run.py and bench/baseline.py share: the result shapes of the
throughput rows (DuckDB's own fetchall and duckdb.query run the same SQL), and
how a process's memory is read."""

import os

SHAPES = {
    "rows": "SELECT range::BIGINT AS a, (range * 2)::BIGINT AS b, 'row ' || range AS c FROM range({n})",
    "mixed": ("SELECT TIMESTAMP '2024-01-01' + to_microseconds(range * 7919) AS ts, "
              "(range * 1.25)::DECIMAL(18, 2) AS d, "
              "CASE WHEN range % 10 = 0 THEN NULL ELSE 'say \"hi\" \\ ' || range || chr(10) || 'end' END AS t, "
              "CASE WHEN range % 7 = 0 THEN NULL ELSE range END AS n FROM range({n})"),
}

# 9. a parameterized point lookup in a Parquet file of POINT_ROWS rows (row groups
# of 122,880 rows, sorted by id: DuckDB reads one of them)
POINT_ROWS = 3_000_000
POINT_ID = 1_234_567
POINT_FILE = "SELECT range AS id, 'value ' || range AS v, range * 0.5 AS x FROM range({n})"
POINT_QUERY = "SELECT id, v, x FROM read_parquet('{path}') WHERE id = $1"


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


def children(pid):
    """The processes whose parent is pid (an engine's worker and egress proxy)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == int(pid):
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def family_memory(pid):
    """proc_memory of pid and its children, summed: a backend and its engine."""
    total = {"rss": 0, "pss": 0, "uss": 0}
    for p in [pid, *children(pid)]:
        try:
            used = proc_memory(p)
        except OSError:
            continue
        for k in total:
            total[k] += used[k]
    return total
