"""16 sessions for 60 s creating, altering and dropping servers and mappings,
rolling some changes back, and reading S3 through duckdb.query, checked
against a model throughout.

Invariants:
- a read uses exactly the secret committed before it began (or the reader's
  own uncommitted change inside its transaction): a good key reads, a bad key
  gets 403, no secret cannot reach S3 — for the reader's own servers and, under
  the server's lock, for other sessions' servers;
- a change that was rolled back is never used by anyone;
- no deadlock, no backend crash, no unexpected error;
- at the end the catalog equals the model; the server log holds no secret
  (the autouse fixture of conftest checks every test for that).

DUCKDB_SECRETS_STRESS_SECONDS shortens or lengthens the run (default 60).
"""

import os
import random
import threading
import time

import psycopg
import pytest

from conftest import s3_mapping_sql, s3_server_sql

pytestmark = pytest.mark.concurrency

SESSIONS = 16
SLOTS = 4                 # servers per session, created and dropped over and over
STABLE = 4                # servers that only ever change in rolled-back transactions
SECONDS = float(os.environ.get("DUCKDB_SECRETS_STRESS_SECONDS", "60"))
BAD = "CANARY-concurrency-bad-secret"


def path(prefix):
    return f"s3://bucket/conc/{prefix}/numbers.parquet"


def read_sql(prefix):
    return f"SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('{path(prefix)}') $$) AS t(n bigint)"


class Slot:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.state = None          # None (no server), "good" or "bad": what is committed


def outcome(conn, prefix):
    try:
        rows = conn.execute(read_sql(prefix)).fetchall()
        return "good" if rows == [(10,)] else f"rows {rows}"
    except psycopg.Error as e:
        msg = e.diag.message_primary or ""
        if "403" in msg:
            return "bad"
        if e.sqlstate in ("58030", "HV000") and ("Could not establish connection" in msg or "HTTP" in msg
                                                 or "Connection" in msg or "connect" in msg):
            return None
        if e.sqlstate in ("42501", "42704") and "is not available to role" in msg:
            return None         # no secret: one the role does not get covers it (explain.py says which)
        return f"error {e.sqlstate}: {msg[:200]}"


def test_sixteen_sessions_for_a_minute(db, s3, log_since):
    admin = db.conn
    for i in range(SESSIONS):
        for j in range(SLOTS):
            s3.put_parquet(f"conc/w{i}s{j}/numbers.parquet", "SELECT range AS n FROM range(10)")
    for m in range(STABLE):
        s3.put_parquet(f"conc/stable{m}/numbers.parquet", "SELECT range AS n FROM range(10)")
        admin.execute(s3_server_sql(f"stable{m}", s3, scope=f"s3://bucket/conc/stable{m}/"))
        admin.execute(s3_mapping_sql(f"stable{m}", s3))
        admin.execute(f"GRANT USAGE ON FOREIGN SERVER stable{m} TO PUBLIC")
    worker_role = db.role("conc")
    admin.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{worker_role}"')
    admin.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{worker_role}"')

    slots = {f"w{i}s{j}": Slot(f"w{i}s{j}") for i in range(SESSIONS) for j in range(SLOTS)}
    stats = {"reads": 0, "own_reads": 0, "cross_reads": 0, "stable_reads": 0, "unlocked_reads": 0,
             "creates": 0, "drops": 0, "alters": 0, "rollbacks": 0, "reads_in_tx": 0}
    failures = []
    stats_lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def count(k):
        with stats_lock:
            stats[k] += 1

    def check(what, got, want):
        count("reads")
        if got != want:
            failures.append(f"{what}: got {got!r}, expected {want!r}")

    def mapping_sql(name, state):
        secret = s3.secret if state == "good" else BAD
        return f"CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS (key_id '{s3.key_id}', secret '{secret}')"

    def worker(i):
        rnd = random.Random(1000 + i)
        user = "postgres" if i % 2 == 0 else worker_role
        conn = db.connect(user)
        mine = [slots[f"w{i}s{j}"] for j in range(SLOTS)]
        others = [s for s in slots.values() if s not in mine]
        try:
            while time.monotonic() < deadline and len(failures) < 5:
                op = rnd.random()
                slot = rnd.choice(mine)
                if op < 0.25:                                   # read one of mine: exactly the committed state
                    count("own_reads")
                    check(f"w{i} own {slot.name}", outcome(conn, slot.name), slot.state)
                elif op < 0.38:                                 # read another session's, under its lock
                    other = rnd.choice(others)
                    with other.lock:
                        count("cross_reads")
                        # A superuser's engine takes servers of superusers only (docs/security.md):
                        # the odd workers' servers belong to a non-superuser administrator.
                        foreign = user == "postgres" and int(other.name[1:].split("s")[0]) % 2 == 1
                        check(f"w{i} cross {other.name}", outcome(conn, other.name),
                              None if foreign else other.state)
                elif op < 0.45:                                 # read another's while it may be changing
                    other = rnd.choice(others)
                    count("unlocked_reads")
                    got = outcome(conn, other.name)
                    if got not in ("good", "bad", None):
                        check(f"w{i} unlocked {other.name}", got, "good, bad or no secret")
                elif op < 0.55:                                 # stable servers always read
                    m = rnd.randrange(STABLE)
                    count("stable_reads")
                    check(f"w{i} stable{m}", outcome(conn, f"stable{m}"), "good")
                elif op < 0.72:                                 # create or drop one of mine
                    with slot.lock:
                        if slot.state is None:
                            state = rnd.choice(["good", "bad"])
                            conn.execute("BEGIN")
                            conn.execute(s3_server_sql(slot.name, s3, scope=f"s3://bucket/conc/{slot.name}/"))
                            conn.execute(mapping_sql(slot.name, state))
                            conn.execute(f"GRANT USAGE ON FOREIGN SERVER {slot.name} TO PUBLIC")
                            conn.execute("COMMIT")
                            slot.state = state
                            count("creates")
                        else:
                            conn.execute(f"DROP SERVER {slot.name} CASCADE")
                            slot.state = None
                            count("drops")
                elif op < 0.85:                                 # replace my mapping, committed
                    with slot.lock:
                        if slot.state is not None:
                            state = "bad" if slot.state == "good" else "good"
                            secret = s3.secret if state == "good" else BAD
                            conn.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER {slot.name} "
                                         f"OPTIONS (SET secret '{secret}')")
                            slot.state = state
                            count("alters")
                elif op < 0.95:                                 # a change read inside its transaction, then rolled back
                    with slot.lock:
                        if slot.state is not None:
                            state = "bad" if slot.state == "good" else "good"
                            secret = s3.secret if state == "good" else BAD
                            conn.execute("BEGIN")
                            conn.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER {slot.name} "
                                         f"OPTIONS (SET secret '{secret}')")
                            count("reads_in_tx")
                            check(f"w{i} in-tx {slot.name}", outcome_in_tx(conn, slot.name), state)
                            conn.execute("ROLLBACK")
                            count("rollbacks")
                            count("own_reads")
                            check(f"w{i} after rollback {slot.name}", outcome(conn, slot.name), slot.state)
                else:                                           # a stable server, broken and rolled back
                    m = rnd.randrange(STABLE)
                    conn.execute("BEGIN")
                    conn.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER stable{m} OPTIONS (SET secret '{BAD}')") \
                        if user == "postgres" else conn.execute("SELECT 1")
                    conn.execute("ROLLBACK")
                    count("rollbacks")
        except Exception as e:  # noqa: BLE001 - any unexpected error is a failure of the run
            failures.append(f"w{i}: {type(e).__name__}: {str(e)[:300]}")

    def outcome_in_tx(conn, prefix):
        # Inside a transaction a failed duckdb.query aborts it: use a savepoint.
        conn.execute("SAVEPOINT r")
        got = outcome(conn, prefix)
        conn.execute("ROLLBACK TO SAVEPOINT r")
        return got

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 300)
    assert not any(t.is_alive() for t in threads), "a session hung (deadlock?)"
    print(f"\nconcurrency: {SESSIONS} sessions, {SECONDS:.0f} s: {stats}")
    assert not failures, failures[:5]
    assert stats["reads"] > 200 and stats["creates"] > 10 and stats["rollbacks"] > 10, stats

    # The final catalog equals the model (compared as digests: no option values printed).
    rows = admin.execute("""
        SELECT s.srvname, md5(um.umoptions::text) FROM pg_foreign_server s
          LEFT JOIN pg_user_mappings um ON um.srvid = s.oid AND um.usename = 'public'
         WHERE s.srvname ~ '^w[0-9]+s[0-9]+$' ORDER BY 1""").fetchall()
    import hashlib
    want = {}
    for name, slot in slots.items():
        if slot.state is not None:
            secret = s3.secret if slot.state == "good" else BAD
            opts = "{" + f"key_id={s3.key_id},secret={secret}" + "}"
            want[name] = hashlib.md5(opts.encode()).hexdigest()
    assert dict(rows) == want
    for m in range(STABLE):
        assert outcome(admin, f"stable{m}") == "good"
    log = log_since()
    assert "terminated by signal" not in log
    assert "deadlock detected" not in log
