"""make bench: measure duckdb_secrets against baselines taken in the same run.

Starts a throwaway PostgreSQL and a local S3 server (moto, signatures checked),
runs each measurement several times (median), and writes bench/results.md and
bench/results.png. Every goal is a ratio against a baseline from this run.
"""

import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
localenv = importlib.import_module("localenv")
sys.path.insert(0, HERE)
_common = importlib.import_module("common")
SHAPES, proc_memory, family_memory = _common.SHAPES, _common.proc_memory, _common.family_memory
POINT_ROWS, POINT_ID, POINT_QUERY = _common.POINT_ROWS, _common.POINT_ID, _common.POINT_QUERY

DEPS = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True,
                      check=True).stdout.strip() + "/duckdb_secrets/deps"
REPS = int(os.environ.get("BENCH_REPS", "5"))
SYNC_SIZES = [1, 10, 100, 1000, 10000]
ROWS = 1_000_000
PARQUET = "s3://bucket/bench/numbers.parquet"
S3_READ = (f"SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('{PARQUET}') $$) AS t(n bigint)")
SELECT_1 = "SELECT * FROM duckdb.query('SELECT 1') AS t(x integer)"


def median(values):
    return statistics.median(values)


def baseline(*args):
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "baseline.py"), DEPS, *map(str, args)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_bytes(pid, field):
    """A memory figure of /proc/<pid>/status (VmRSS, VmHWM, ...) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_of(pid):
    return _status_bytes(pid, "VmHWM")


def rss_of(pid):
    """RSS of a backend and its children (the engine's worker and egress proxy)."""
    return sum(_status_bytes(p, "VmRSS") or 0 for p in [pid, *_common.children(pid)])


# Why the goals marked "no" are not met (profiles taken on this machine when the
# engine moved into its own process; see the closing notes of that work).
NOTES = """Goals not always met, and why (profiled when the engine moved into a process of its own; two
`make bench` runs for that change gave 2a 1.17× and 1.23×, 5a 0.54× and 0.72×, 6 0.92× and 1.10×:
on this 2-core machine the baselines themselves vary that much from run to run):

- The query-surface change (bound parameters, attach_as, all types, errors that say why): this run
  gave 5a 0.53× (ours 1.95M rows/s as before the change; DuckDB's own fetchall 3.7M rows/s against
  2.5M in the previous run) and 6 0.91×. An earlier run gave 3b 4.53×: the table of catalogs to
  attach was built by sorting all 10,000 exported secrets at each sync; now only those with
  `attach_as` (3b 2.19× here).
- 2b (warm `SELECT 1` ≤ 3× a trivial PL/Python SRF): the SRF costs 25-95 µs here, so 3× would be
  under 0.3 ms, below what one DuckDB statement costs in-process (`execute` 47-80 µs; the
  formatting projection and Arrow stream DuckDB runs for a single query, ~350 µs). A warm call is
  about 0.6-0.8 ms of the fingerprint query (the change detection: generation, role, memberships,
  server owners, settings) and 0.6-0.7 ms in the engine's process (its DuckDB work plus one round
  trip of ~60 µs; a result of one run comes with the query's answer).
- 2a (1,000 secrets vs 0 ≤ 1.1×): the fingerprint query sums over `pg_foreign_server`; with 1,000
  servers it takes ~0.2 ms more.
- 3 (fresh engine, few secrets): a fresh engine is a new process (Python start, `import duckdb`,
  `LOAD httpfs`: ~80 ms) where the baseline's DuckDB is already imported; per-secret figures for
  small counts carry that start.
- 4b-4d (memory ≤ 1.2×): the engine's process adds about what DuckDB + httpfs add to a bare Python
  (its own interpreter included); the backend adds the package itself (~12.6 MiB USS: catalogue,
  validation, masking, sync).
- 5a (≥ 0.7× DuckDB's fetchall): PostgreSQL's splitting and parsing of the text (one cast per
  field) is the slower side; the worker formats the next run while PostgreSQL parses the current one.
- 6 (rotation ≥ 0.95×): as before the move, within this machine's run-to-run spread.
- 10 (parameterized point lookup ≤ 1.2×; 2.22× to 2.50× in three runs: 6.9-8.4 ms vs 3.1-3.4 ms): DuckDB's lookup itself
  is ~3-3.5 ms (it opens the Parquet footer and reads one row group). The engine's process adds
  ~1.1-1.5 ms (with parameters DuckDB's Python client runs the statement when it builds the relation,
  then the formatting projection and the Arrow stream; wrapping the query in the formatting SELECT
  instead saved ~0.3 ms, not worth splicing the caller's SQL into ours), and the backend the warm
  call's fixed cost of 2b (fingerprint query, PL/pgSQL, the fetch SELECT): ~2 ms in all that do not
  shrink with the lookup. Against a lookup of 30 ms (a row group on S3) the same overhead is ~1.1×.
- 11 (values from a source; no goal, the cost measured): the first query of a new connection with 100
  source-backed secrets costs ~180 ms more than with stored values: importing botocore (~90 ms, once
  per backend), making the Secrets Manager client (~40 ms, then kept per source) and 5
  `BatchGetSecretValue` requests of 20 ids to the local moto. A `ttl` expiry makes the next query a
  full sync of the 100 secrets with those 5 requests (in a thread the backend waits for, bounded as a
  whole): ~25 ms once per `ttl` against ~1.4 ms for a warm query; a real Secrets Manager adds its round
  trips (tens of ms per request)."""


def cancel_delay(c, killer, pid, sql, after):
    """Seconds from pg_cancel_backend (sent `after` seconds into sql) to the error."""
    done = {}

    def run():
        try:
            c.execute(sql).fetchall()
        except psycopg.errors.QueryCanceled:
            done["at"] = time.perf_counter()
    t = threading.Thread(target=run)
    t.start()
    time.sleep(after)
    sent = time.perf_counter()
    killer.execute("SELECT pg_cancel_backend(%s)", (pid,))
    t.join(60)
    return done.get("at", float("inf")) - sent


class Bench:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="duckdb_secrets_bench.")
        os.chmod(self.base, 0o755)
        self.cluster = localenv.PgCluster(os.path.join(self.base, "pg"), settings={"max_connections": "80"})
        self.s3 = localenv.S3Server(os.path.join(self.base, "s3"))
        self.rows = []        # (metric, ours, baseline, ratio, goal, met)
        self.curves = {}

    def connect(self, db="bench"):
        return psycopg.connect(self.cluster.dsn(db), autocommit=True)

    def record(self, metric, ours, base, unit, goal=None, higher_is_better=False):
        ratio = ours / base if base else float("nan")
        met = None
        if goal is not None:
            met = ratio >= goal if higher_is_better else ratio <= goal
        goal_text = "" if goal is None else (f"≥ {goal}×" if higher_is_better else f"≤ {goal}×")
        self.rows.append((metric, f"{ours:.4g} {unit}", f"{base:.4g} {unit}", f"{ratio:.2f}×", goal_text,
                          "" if met is None else ("yes" if met else "**no**")))
        print(f"{metric}: ours {ours:.4g} {unit}, baseline {base:.4g} {unit}, ratio {ratio:.2f}", flush=True)

    # --- set-up ---------------------------------------------------------------

    def start(self):
        self.cluster.start()
        self.s3.start()
        self.s3.put_parquet("bench/numbers.parquet", "SELECT range AS n FROM range(1000)")
        with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
        with self.connect() as c:
            c.execute("CREATE EXTENSION duckdb_secrets CASCADE")
            c.execute("CREATE FUNCTION bench_trivial_srf() RETURNS SETOF integer LANGUAGE plpython3u "
                      "AS 'return [1]'")

    def set_secrets(self, conn, n, valid=False):
        """Exactly n S3 servers with PUBLIC mappings (bulk: the event trigger is
        switched off and the generation bumped once, as a restore would)."""
        key, secret = (self.s3.key_id, self.s3.secret) if valid else ("k", "s")
        conn.execute("ALTER EVENT TRIGGER duckdb_secrets_ddl DISABLE")
        names = [r[0] for r in conn.execute("SELECT quote_ident(srvname) FROM pg_foreign_server")]
        for i in range(0, len(names), 500):             # in batches: each DROP locks every object
            conn.execute(f"DROP SERVER {', '.join(names[i:i + 500])} CASCADE")
        conn.execute("""
            DO $$ BEGIN FOR i IN 1..%s LOOP
              EXECUTE format('CREATE SERVER b%%s TYPE ''s3'' FOREIGN DATA WRAPPER duckdb '
                             'OPTIONS (region ''us-east-1'', '
                             'endpoint %%L, url_style ''path'', use_ssl ''false'', scope %%L)', i, %s,
                             CASE WHEN i = 1 THEN 's3://bucket' ELSE 's3://b' || i END);
              EXECUTE format('CREATE USER MAPPING FOR PUBLIC SERVER b%%s OPTIONS (key_id %%L, secret %%L)', i, %s, %s);
            END LOOP; END $$""" % (n, psycopg.sql.Literal(self.s3.endpoint).as_string(conn),
                                   psycopg.sql.Literal(key).as_string(conn),
                                   psycopg.sql.Literal(secret).as_string(conn)))
        conn.execute("SELECT duckdb._bump()")
        conn.execute("ALTER EVENT TRIGGER duckdb_secrets_ddl ENABLE")
        # As after a restore: what the bulk change left behind is vacuumed (10,000
        # dropped servers would otherwise make every later step read dead rows).
        conn.execute("VACUUM (ANALYZE) pg_catalog.pg_foreign_server, pg_catalog.pg_user_mapping, "
                     "pg_catalog.pg_depend, pg_catalog.pg_shdepend, duckdb._changes")

    # --- 1. cold start ---------------------------------------------------------

    def cold_start(self):
        with self.connect() as c:
            self.set_secrets(c, 10, valid=True)
        ours = []
        for _ in range(REPS):
            with self.connect() as c:
                t0 = time.perf_counter()
                c.execute(SELECT_1).fetchall()
                ours.append(time.perf_counter() - t0)
        base = [baseline("cold", self.s3.endpoint, self.s3.key_id, self.s3.secret)["seconds"] for _ in range(REPS)]
        self.record("1. cold start, 10 S3 secrets (first query in a new connection)",
                    median(ours) * 1000, median(base) * 1000, "ms", 1.3)

    # --- 2. warm overhead ------------------------------------------------------

    def warm(self, c, sql, calls=300, reps=REPS):
        c.execute(sql).fetchall()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(calls):
                c.execute(sql).fetchall()
            times.append((time.perf_counter() - t0) / calls)
        return median(times)

    def warm_overhead(self):
        """1,000 secrets (this database) against none (a second one), measured
        in alternation: a run of one after the other drifted by ±15%."""
        with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as c:
            c.execute("CREATE DATABASE bench_empty")
        with psycopg.connect(self.cluster.dsn("bench_empty"), autocommit=True) as c:
            c.execute("CREATE EXTENSION duckdb_secrets CASCADE")
        with self.connect() as admin:
            self.set_secrets(admin, 1000)
        zero, thousand = [], []
        with self.connect("bench_empty") as empty, self.connect() as full:
            for c in (empty, full):
                c.execute(SELECT_1).fetchall()
            for _ in range(REPS):
                zero.append(self.warm(empty, SELECT_1, reps=1))
                thousand.append(self.warm(full, SELECT_1, reps=1))
            trivial = self.warm(full, "SELECT * FROM bench_trivial_srf()")
        zero, thousand = median(zero), median(thousand)
        self.record("2a. warm duckdb.query('SELECT 1'): 1,000 secrets vs 0", thousand * 1e6, zero * 1e6, "µs", 1.1)
        self.record("2b. warm duckdb.query('SELECT 1') vs a trivial PL/Python SRF", zero * 1e6, trivial * 1e6, "µs", 3)

    # --- 3. secret sync ----------------------------------------------------------

    def fresh_engine(self, reps):
        """Median time of the first query after recycle_ddb(): engine start + full sync."""
        with self.connect() as c:
            c.execute(SELECT_1).fetchall()
            times = []
            for _ in range(reps):
                c.execute("SELECT duckdb.recycle_ddb()")
                t0 = time.perf_counter()
                c.execute(SELECT_1).fetchall()
                times.append(time.perf_counter() - t0)
        return median(times)

    def sync(self):
        ours_per, base_per = [], []
        with self.connect() as admin:
            for n in SYNC_SIZES:
                self.set_secrets(admin, n)
                reps = REPS if n <= 1000 else 2
                total = self.fresh_engine(reps)
                ours = total / n        # engine start + sync, as DuckDB alone: connect + load + create
                base = median([baseline("secrets", n)["seconds"] for _ in range(reps)]) / n
                ours_per.append(ours)
                base_per.append(base)
                self.record(f"3. fresh engine with {n:,} secrets (start + sync), per secret", ours * 1e6, base * 1e6,
                            "µs", 1.5)
                if n in (1, 10000):
                    setattr(self, f"one_of_{n}", self.change_one(admin, n))
        self.curves["sync"] = (SYNC_SIZES, ours_per, base_per)
        self.record("3b. change 1 secret of 10,000 and sync, vs 1 of 1", self.one_of_10000 * 1e3,
                    self.one_of_1 * 1e3, "ms", 3)

    def change_one(self, admin, n):
        with self.connect() as c:
            c.execute(SELECT_1).fetchall()
            times = []
            for i in range(REPS):
                admin.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER b1 OPTIONS (SET key_id 'k{i}')")
                t0 = time.perf_counter()
                c.execute(SELECT_1).fetchall()
                times.append(time.perf_counter() - t0)
        return median(times)

    # --- 9. encryption at rest ---------------------------------------------------

    def encryption(self, n=1000):
        """A fresh engine's start + sync of n secrets whose values are encrypted
        (duckdb.encryption_key_file) vs the same secrets in plaintext."""
        keys = os.path.join(self.base, "keys")
        with open(keys, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(keys, 0o600)
        localenv._chown_postgres(keys)
        with self.connect() as admin:
            self.set_secrets(admin, n)
            plain = self.fresh_engine(REPS)
            admin.execute("SET duckdb.encryption_key_file = ''")
            admin.execute(f"ALTER SYSTEM SET duckdb.encryption_key_file = '{keys}'")
            admin.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)
            rewritten = admin.execute("SELECT duckdb.reencrypt_secrets()").fetchone()[0]
            assert rewritten == n, rewritten
            sealed = self.fresh_engine(REPS)
            admin.execute("ALTER SYSTEM RESET duckdb.encryption_key_file")
            admin.execute("SELECT pg_reload_conf()")
        self.record(f"9. fresh engine with {n:,} encrypted secrets vs plaintext", sealed * 1e3, plain * 1e3, "ms", 1.2)

    # --- 11. values from a source ------------------------------------------------

    def first_query(self, reps):
        """Median time of the first query of a new connection: backend, engine, full sync."""
        times = []
        for _ in range(reps):
            with self.connect() as c:
                t0 = time.perf_counter()
                c.execute(SELECT_1).fetchall()
                times.append(time.perf_counter() - t0)
        return median(times)

    def sources(self, n=100):
        """n secrets whose PUBLIC mappings name ids of a Secrets Manager source (moto,
        on this machine) against the same n secrets with stored values: the first
        query of a new connection; and what a ttl expiry adds to the next query."""
        sm = self.s3.client("secretsmanager")
        value = json.dumps({"key_id": self.s3.key_id, "secret": self.s3.secret})
        existing = {s["Name"] for page in sm.get_paginator("list_secrets").paginate() for s in page["SecretList"]}
        for i in range(1, n + 1):
            if f"bench/{i}" not in existing:
                sm.create_secret(Name=f"bench/{i}", SecretString=value)
        with self.connect() as admin:
            self.set_secrets(admin, n, valid=True)
            stored = self.first_query(REPS)
            admin.execute("ALTER EVENT TRIGGER duckdb_secrets_ddl DISABLE")
            admin.execute(f"CREATE SERVER vault TYPE 'aws_secrets_manager' FOREIGN DATA WRAPPER duckdb OPTIONS "
                          f"(region 'us-east-1', endpoint '{self.s3.url}', allowed_ids 'bench/*', ttl '5min')")
            admin.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER vault OPTIONS (key_id '{self.s3.key_id}', "
                          f"secret '{self.s3.secret}')")
            admin.execute(f"""
                DO $$ BEGIN FOR i IN 1..{n} LOOP
                  EXECUTE format('DROP USER MAPPING FOR PUBLIC SERVER b%s', i);
                  EXECUTE format('CREATE USER MAPPING FOR PUBLIC SERVER b%s OPTIONS (source ''vault'', '
                                 'source_id ''bench/%s'')', i, i);
                END LOOP; END $$""")
            admin.execute("SELECT duckdb._bump()")
            admin.execute("ALTER EVENT TRIGGER duckdb_secrets_ddl ENABLE")
            held = admin.execute("SELECT count(*) FROM duckdb.secrets() WHERE storage = 'memory'").fetchone()[0]
            assert held >= n, held
            fetched = self.first_query(REPS)
            self.record(f"11a. first query of a new connection, {n} secrets whose values come from Secrets Manager "
                        "(local moto) vs stored in the user mappings", fetched * 1e3, stored * 1e3, "ms")
            with self.connect() as c:
                warm = self.warm(c, SELECT_1, calls=50)
                expired = []
                for _ in range(REPS):
                    c.execute("DO $$ import datetime, duckdb_secrets.aws as aws; "
                              "aws.ADVANCE += datetime.timedelta(seconds=301) $$ LANGUAGE plpython3u")
                    t0 = time.perf_counter()
                    c.execute(SELECT_1).fetchall()
                    expired.append(time.perf_counter() - t0)
            self.record(f"11b. the query after the source's ttl expired ({n} values fetched again) vs a warm query",
                        median(expired) * 1e3, warm * 1e3, "ms")

    # --- 4. memory -------------------------------------------------------------

    def memory(self):
        with self.connect() as admin:
            self.set_secrets(admin, 10, valid=True)
        with self.connect() as c:
            c.execute(S3_READ).fetchall()
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            ours = rss_of(pid)
        runs = [baseline("rss", self.s3.endpoint, self.s3.key_id, self.s3.secret, PARQUET) for _ in range(3)]
        base = median([r["bytes"] for r in runs])
        # The whole backend (PostgreSQL's own memory included) against a bare
        # Python: for scale only; the goal is on what the extension adds (4b-4d).
        self.record("4. backend + engine process RSS after first use (S3 read) vs bare python with DuckDB + "
                    "httpfs, same S3 read (whole processes; see 4b-4d)", ours / 2**20, base / 2**20, "MiB")
        # What the extension adds to a backend that has run one trivial PL/Python
        # function, against what DuckDB + httpfs (+ 10 secrets) add to a bare
        # Python; both then read the same Parquet file from S3.
        added = []
        for _ in range(3):
            with self.connect() as c:
                c.execute("SELECT * FROM bench_trivial_srf()").fetchall()
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                idle = family_memory(pid)
                c.execute(S3_READ).fetchall()
                used = family_memory(pid)
                added.append({k: used[k] - idle[k] for k in used})
        for kind in ("rss", "pss", "uss"):
            self.record(f"4{'bcd'['rss pss uss'.split().index(kind)]}. {kind.upper()} the extension adds to a backend, "
                        f"its engine process included "
                        f"(first S3 query, 10 secrets) vs what DuckDB + httpfs add to a bare Python",
                        median([a[kind] for a in added]) / 2**20, median([r["added"][kind] for r in runs]) / 2**20,
                        "MiB", 1.2)
        totals = []
        for k in (1, 8, 32):
            conns = [self.connect() for _ in range(k)]
            try:
                threads = [threading.Thread(target=lambda c=c: c.execute(S3_READ).fetchall()) for c in conns]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                pids = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns]
                totals.append(sum(rss_of(p) for p in pids) / 2**20)
            finally:
                for c in conns:
                    c.close()
            print(f"   {k} backends: {totals[-1]:.0f} MiB in all", flush=True)
        self.curves["rss"] = ([1, 8, 32], totals)
        self.rss_note = ", ".join(f"{k} backends: {t:.0f} MiB" for k, t in zip((1, 8, 32), totals, strict=True))

    # --- 5. throughput ---------------------------------------------------------

    def throughput(self):
        rows = SHAPES["rows"].format(n=ROWS)
        q = f"SELECT count(*) FROM duckdb.query($$ {rows} $$) AS t(a bigint, b bigint, c text)"
        mixed = (f"SELECT count(*) FROM duckdb.query($$ {SHAPES['mixed'].format(n=ROWS)} $$) "
                 "AS t(ts timestamp, d numeric, t text, n bigint)")
        pg = f"SELECT count(*) FROM (SELECT g, g * 2, 'row ' || g FROM generate_series(0, {ROWS - 1}) g) s"
        with self.connect() as admin:
            self.set_secrets(admin, 0)
        with self.connect() as c:
            c.execute(SELECT_1).fetchall()
            ours = median([self.timed(c, q) for _ in range(3)])
            ours_mixed = median([self.timed(c, mixed) for _ in range(3)])
            pgs = median([self.timed(c, pg) for _ in range(3)])
        duck = median([baseline("rows", ROWS)["seconds"] for _ in range(3)])
        duck_mixed = median([baseline("mixed", ROWS)["seconds"] for _ in range(3)])
        self.record("5a. rows/s of duckdb.query, 1M (bigint, bigint, text), vs DuckDB fetchall",
                    ROWS / ours, ROWS / duck, "rows/s", 0.7, higher_is_better=True)
        self.record("5b. rows/s of duckdb.query vs PostgreSQL generate_series, same shape",
                    ROWS / ours, ROWS / pgs, "rows/s")
        self.record("5c. rows/s, 1M (timestamp, decimal, text with quotes/backslashes/newlines, bigint; "
                    "NULLs), vs DuckDB fetchall", ROWS / ours_mixed, ROWS / duck_mixed, "rows/s", 0.4,
                    higher_is_better=True)
        self.curves["throughput"] = (["duckdb.query", "DuckDB fetchall", "generate_series"],
                                     [ROWS / ours, ROWS / duck, ROWS / pgs])
        self.streamed()

    def streamed(self, big=50_000_000, small=1_000_000):
        """Peak memory of the backend for a 50M-row result against a 1M-row one:
        the result streams in chunks (PostgreSQL keeps the rows in its
        tuplestore, which goes to temporary files beyond work_mem)."""
        peaks = {}
        for n in (small, big):
            with self.connect() as c:
                c.execute(SELECT_1).fetchall()
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                c.execute(f"SELECT count(*) FROM duckdb.query($$ SELECT range AS n FROM range({n}) $$) "
                          "AS t(n bigint)").fetchall()
                peaks[n] = peak_rss_of(pid)
        self.record(f"5d. backend peak RSS for a {big // 1_000_000}M-row result vs a {small // 1_000_000}M-row one",
                    peaks[big] / 2**20, peaks[small] / 2**20, "MiB", 1.2)

    def timed(self, c, sql):
        t0 = time.perf_counter()
        c.execute(sql).fetchall()
        return time.perf_counter() - t0

    # --- 9. a parameterized point lookup ------------------------------------------

    def point_lookup(self, reps=31):
        """duckdb.query(sql, params) of one row of a 3M-row Parquet file (a warm
        engine, a superuser's), against the same prepared query in DuckDB alone."""
        path = os.path.join(self.base, "points.parquet")
        baseline("points", path)
        sql = (f"SELECT * FROM duckdb.query($q${POINT_QUERY.format(path=path)}$q$, '[{POINT_ID}]') "
               "AS t(id bigint, v text, x numeric)")
        with self.connect() as c:
            assert len(c.execute(sql).fetchall()) == 1
            ours = median([self.timed(c, sql) for _ in range(reps)])
        duck = baseline("point", path, reps)["seconds"]
        self.record(f"10. parameterized point lookup in a {POINT_ROWS // 1_000_000}M-row Parquet file: "
                    "duckdb.query(sql, params) vs the prepared query in DuckDB alone",
                    ours * 1000, duck * 1000, "ms", 1.2)

    # --- 8. time to stop ------------------------------------------------------------

    def stop_time(self, reps=5):
        """Median delay from a cancel request, and from statement_timeout's expiry,
        to the error: a DuckDB query against a PostgreSQL query of the same kind."""
        duck = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM range(40000000000) t(i) WHERE i % 7 = 3 $$) "
                "AS t(n bigint)")
        pg = "SELECT count(*) FROM generate_series(1, 40000000000) g WHERE g % 7 = 3"
        with self.connect() as admin:
            self.set_secrets(admin, 1, valid=True)
        results = {}
        for name, sql in (("duckdb", duck), ("postgres", pg)):
            timeouts, cancels = [], []
            with self.connect() as c, self.connect() as killer:
                c.execute(SELECT_1).fetchall()
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                for _ in range(reps):
                    c.execute("SET statement_timeout = '300ms'")
                    t0 = time.perf_counter()
                    try:
                        c.execute(sql).fetchall()
                    except psycopg.errors.QueryCanceled:
                        pass
                    timeouts.append(time.perf_counter() - t0 - 0.3)
                    c.execute("RESET statement_timeout")
                    cancels.append(cancel_delay(c, killer, pid, sql, 0.3))
            results[name] = (median(timeouts), median(cancels))
        self.record("8a. time to stop on statement_timeout: DuckDB query vs PostgreSQL's own (goal also < 500 ms)",
                    results["duckdb"][0] * 1000, results["postgres"][0] * 1000, "ms", 2)
        self.record("8b. time to stop on a cancel request: DuckDB query vs PostgreSQL's own (goal also < 500 ms)",
                    results["duckdb"][1] * 1000, results["postgres"][1] * 1000, "ms", 2)
        # A call that never checks DuckDB's interrupt flag: the worker is killed
        # after its grace period; against a DuckDB query that does check it.
        spin = ("SELECT * FROM duckdb.query($$ SELECT levenshtein(repeat('a', 60000 + (i % 2)::int), "
                "repeat('b', 60000)) FROM range(30) r(i) $$) AS t(n bigint)")
        stops = []
        with self.connect() as c, self.connect() as killer:
            for _ in range(reps):
                c.execute(SELECT_1).fetchall()
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                stops.append(cancel_delay(c, killer, pid, spin, 0.5))
        self.record("8c. time to stop a DuckDB call that never checks for interrupts (levenshtein, 60,000 "
                    "characters; cancel) vs a DuckDB query that does (8b) (goal: < 500 ms)",
                    median(stops) * 1000, results["duckdb"][1] * 1000, "ms")

    # --- 7. the egress proxy ------------------------------------------------------

    def egress(self):
        """What the guard on a non-superuser's requests costs: the same S3 reads
        by a non-superuser (through its engine's egress proxy) and by a
        superuser (direct), warm engines; and a new engine's first query."""
        self.s3.put_parquet("bench/big.parquet", "SELECT range AS n, range * 3 AS m FROM range(2000000)")
        with self.connect() as admin:
            self.set_secrets(admin, 1, valid=True)
            admin.execute("DROP ROLE IF EXISTS bench_reader")
            admin.execute("CREATE ROLE bench_reader LOGIN")
            admin.execute("GRANT USAGE ON FOREIGN SERVER b1 TO bench_reader")
            admin.execute("GRANT EXECUTE ON FUNCTION duckdb.query(text) TO bench_reader")
        small = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('s3://bucket/bench/numbers.parquet') "
                 "$$) AS t(n bigint)")
        big = ("SELECT * FROM duckdb.query($$ SELECT sum(m) FROM read_parquet('s3://bucket/bench/big.parquet') "
               "$$) AS t(n numeric)")
        reader = psycopg.connect(self.cluster.dsn("bench", "bench_reader"), autocommit=True)
        su = self.connect()
        try:
            for c in (reader, su):
                c.execute(small).fetchall()
            ours = median([self.timed(reader, small) for _ in range(30)])
            base = median([self.timed(su, small) for _ in range(30)])
            self.record("7a. S3 read of a small Parquet file by a non-superuser (egress proxy) vs a superuser",
                        ours * 1000, base * 1000, "ms", 1.5)
            ours = median([self.timed(reader, big) for _ in range(5)])
            base = median([self.timed(su, big) for _ in range(5)])
            self.record("7b. S3 read of a 2M-row Parquet file by a non-superuser (egress proxy) vs a superuser",
                        ours * 1000, base * 1000, "ms", 1.5)
        finally:
            reader.close()
            su.close()
        cold = {}
        for user in ("bench_reader", "postgres"):
            times = []
            for _ in range(REPS):
                with psycopg.connect(self.cluster.dsn("bench", user), autocommit=True) as c:
                    times.append(self.timed(c, small))
            cold[user] = median(times)
        self.record("7c. first S3 read in a new connection, non-superuser (starts its proxy) vs superuser",
                    cold["bench_reader"] * 1000, cold["postgres"] * 1000, "ms")

    # --- 6. concurrency ----------------------------------------------------------

    def concurrency(self, seconds=15, clients=16):
        iam = self.s3.client("iam")
        keys = [self.s3.key_id and {"id": self.s3.key_id, "secret": self.s3.secret}]
        iam.create_user(UserName="bench-second")
        iam.attach_user_policy(UserName="bench-second",
                               PolicyArn=iam.list_attached_user_policies(UserName="duckdb-secrets-test")
                               ["AttachedPolicies"][0]["PolicyArn"])
        k2 = iam.create_access_key(UserName="bench-second")["AccessKey"]
        keys.append({"id": k2["AccessKeyId"], "secret": k2["SecretAccessKey"], "user": "bench-second"})
        keys[0]["user"] = "duckdb-secrets-test"
        with self.connect() as admin:
            self.set_secrets(admin, 1, valid=True)
        script = os.path.join(self.base, "read.sql")
        with open(script, "w") as f:
            f.write(S3_READ + ";\n")

        def pgbench():
            out = subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", script,
                                  "-h", "127.0.0.1", "-p", str(self.cluster.port), "-U", "postgres", "bench"],
                                 capture_output=True, text=True)
            tps = next((float(line.split("=")[1].split()[0]) for line in out.stdout.splitlines()
                        if line.startswith("tps")), 0.0)
            failed = out.stdout.count("ERROR") + out.stderr.count("ERROR")
            for line in out.stdout.splitlines():
                if "number of failed transactions" in line:
                    failed += int(line.split(":")[1].split()[0])
            if out.returncode != 0 and failed == 0:
                failed = 1
            return tps, failed, out.stderr.strip().splitlines()[-3:]

        k3 = iam.create_access_key(UserName="bench-second")["AccessKey"]["AccessKeyId"]

        def background(rotating, stop, rotations):
            """Every second: with rotating, the next key made active, the mapping
            altered, the old key retired half a second later (a read that still
            used it would fail); without, the same IAM calls on a key no secret
            uses, so both runs put the same load on the S3 server."""
            current = 0
            with self.connect() as admin:
                while not stop.is_set():
                    nxt = 1 - current
                    if rotating:
                        iam.update_access_key(UserName=keys[nxt]["user"], AccessKeyId=keys[nxt]["id"],
                                              Status="Active")
                        admin.execute(psycopg.sql.SQL("ALTER USER MAPPING FOR PUBLIC SERVER b1 OPTIONS "
                                                      "(SET key_id {}, SET secret {})").format(
                            psycopg.sql.Literal(keys[nxt]["id"]), psycopg.sql.Literal(keys[nxt]["secret"])))
                    else:
                        iam.update_access_key(UserName="bench-second", AccessKeyId=k3, Status="Active")
                    time.sleep(0.5)
                    if rotating:
                        iam.update_access_key(UserName=keys[current]["user"], AccessKeyId=keys[current]["id"],
                                              Status="Inactive")
                        current = nxt
                    else:
                        iam.update_access_key(UserName="bench-second", AccessKeyId=k3, Status="Inactive")
                    rotations[0] += 1
                    stop.wait(0.5)
                for k in keys:
                    iam.update_access_key(UserName=k["user"], AccessKeyId=k["id"], Status="Active")
                if rotating and current != 0:
                    admin.execute(psycopg.sql.SQL("ALTER USER MAPPING FOR PUBLIC SERVER b1 OPTIONS "
                                                  "(SET key_id {}, SET secret {})").format(
                        psycopg.sql.Literal(keys[0]["id"]), psycopg.sql.Literal(keys[0]["secret"])))

        def run(rotating):
            stop, rotations = threading.Event(), [0]
            t = threading.Thread(target=background, args=(rotating, stop, rotations))
            t.start()
            try:
                tps, failed, tail = pgbench()
            finally:
                stop.set()
                t.join()
            return tps, failed, tail, rotations[0]

        # Three rounds of each, interleaved: 16 clients on 2 cores are noisy (±8% a run).
        still, moving, still_failed, moving_failed, rotated, tail = [], [], 0, 0, 0, []
        for _ in range(3):
            tps, failed, _, _ = run(False)
            still.append(tps)
            still_failed += failed
            tps, failed, tail, n = run(True)
            moving.append(tps)
            moving_failed += failed
            rotated += n
        print(f"   {rotated} rotations; failed reads {still_failed} without, {moving_failed} with rotation",
              flush=True)
        self.record(f"6. 16 clients' S3 reads/s while a secret rotates every second ({rotated} rotations) "
                    f"vs none (both with the same IAM calls; 3 rounds each); failed reads: {moving_failed}",
                    statistics.mean(moving), statistics.mean(still), "reads/s", 0.95, higher_is_better=True)
        self.concurrency_errors = (still_failed, moving_failed, rotated, tail)

    # --- output ----------------------------------------------------------------

    def write(self, elapsed):
        lines = ["# Benchmark results", "",
                 f"`make bench` on this machine (2 cores), {time.strftime('%Y-%m-%d')}, {elapsed:.0f} s in all. "
                 f"Medians of {REPS} runs unless noted; every ratio is ours / a baseline measured in the same run. "
                 "Baselines: a bare `/usr/bin/python3` with the same DuckDB 1.5.5 and extension wheels "
                 "(`bench/baseline.py`), PostgreSQL itself, or the same query in another configuration.", "",
                 "| metric | ours | baseline | ratio | goal | met? |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {' | '.join(r)} |" for r in self.rows]
        lines += ["", f"Memory with concurrent backends (RSS summed): {self.rss_note}.", "", NOTES, "",
                  "![curves](results.png)", ""]
        with open(os.path.join(HERE, "results.md"), "w") as f:
            f.write("\n".join(lines))
        self.plot()

    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        n, ours, base = self.curves["sync"]
        axes[0].loglog(n, [x * 1e6 for x in ours], "o-", label="duckdb_secrets sync")
        axes[0].loglog(n, [x * 1e6 for x in base], "s--", label="DuckDB alone")
        axes[0].set(title="Secret sync, per secret", xlabel="secrets", ylabel="µs per secret")
        axes[0].legend()
        k, rss = self.curves["rss"]
        axes[1].plot(k, rss, "o-")
        axes[1].set(title="RSS of concurrent backends (sum)", xlabel="backends", ylabel="MiB")
        names, rates = self.curves["throughput"]
        axes[2].bar(names, [r / 1e6 for r in rates])
        axes[2].set(title="1M rows (bigint, bigint, text)", ylabel="million rows/s")
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, "results.png"), dpi=90)

    def stop(self):
        self.s3.stop()
        self.cluster.stop()
        log = self.cluster.read_log()
        if "terminated by signal" in log:
            keep = os.path.join(tempfile.gettempdir(), "duckdb_secrets_bench_crash.log")
            with open(keep, "w") as f:
                f.write(log)
            print(f"a backend crashed during the benchmark; server log kept in {keep}", flush=True)
        shutil.rmtree(self.base, ignore_errors=True)


def main():
    started = time.time()
    b = Bench()
    try:
        b.start()
        steps = (b.cold_start, b.warm_overhead, b.sync, b.memory, b.throughput, b.concurrency, b.egress,
                 b.stop_time, b.encryption, b.point_lookup, b.sources)
        # BENCH_ONLY=memory,cold_start: those steps only, printed, results.md left alone
        only = [n for n in os.environ.get("BENCH_ONLY", "").split(",") if n]
        for step in steps:
            if only and step.__name__ not in only:
                continue
            print(f"== {step.__name__}", flush=True)
            step()
        if only:
            return
        b.write(time.time() - started)
    finally:
        b.stop()
    if not os.environ.get("BENCH_ONLY"):
        print(open(os.path.join(HERE, "results.md")).read())


if __name__ == "__main__":
    main()
