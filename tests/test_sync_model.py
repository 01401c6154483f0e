"""The incremental sync against a full re-read: random creates, alters, drops,
grants, revokes, renames, rollbacks, savepoints and role switches across
long-lived sessions; after every step each session's engine must hold exactly
what a brand-new session of the same role gets (a full re-read)."""

import random

import psycopg
import pytest

LIST = ("SELECT name, type, scope, storage, secret_string, origin FROM duckdb.secrets() "
        "WHERE origin IS DISTINCT FROM 'duckdb' ORDER BY name")


def _listing(conn):
    return conn.execute(LIST).fetchall()


class World:
    def __init__(self, db, rng):
        self.db, self.rng = db, rng
        self.reader = db.role("model")
        db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{self.reader}"')
        self.servers = []       # names that exist (as far as committed)
        self.count = 0

    def new_name(self):
        self.count += 1
        return f"m{self.count}"

    def op(self, conn):
        """One random change, run on conn; returns its description."""
        rng, r = self.rng, self.reader
        kinds = ["create", "create"] if len(self.servers) < 3 else [
            "create", "alter_server", "rotate", "rotate", "map_reader", "unmap_reader", "drop", "grant",
            "revoke", "rename"]
        kind = rng.choice(kinds)
        if kind == "create":
            name = self.new_name()
            conn.execute(f"CREATE SERVER {name} TYPE 's3' FOREIGN DATA WRAPPER duckdb "
                         f"OPTIONS (region 'r{rng.randrange(9)}', scope 's3://{name}')")
            conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS (key_id 'K{rng.randrange(99)}', "
                         "secret 'model-secret')")
            if rng.random() < 0.5:
                conn.execute(f'GRANT USAGE ON FOREIGN SERVER {name} TO "{r}"')
            self.servers.append(name)
            return f"create {name}"
        name = rng.choice(self.servers)
        if kind == "alter_server":
            conn.execute(f"ALTER SERVER {name} OPTIONS (SET region 'r{rng.randrange(9)}')")
        elif kind == "rotate":
            who = [u for (u,) in conn.execute("SELECT usename FROM pg_user_mappings WHERE srvname = %s", (name,))]
            if not who:
                return f"rotate {name}: no mapping"
            target = rng.choice(who)
            target = "PUBLIC" if target == "public" else f'"{target}"'
            conn.execute(f"ALTER USER MAPPING FOR {target} SERVER {name} OPTIONS (SET key_id 'K{rng.randrange(99)}')")
        elif kind == "map_reader":
            conn.execute(f'DROP USER MAPPING IF EXISTS FOR "{r}" SERVER {name}')
            conn.execute(f'CREATE USER MAPPING FOR "{r}" SERVER {name} OPTIONS (key_id \'R{rng.randrange(99)}\', '
                         "secret 'model-secret-r')")
        elif kind == "unmap_reader":
            conn.execute(f'DROP USER MAPPING IF EXISTS FOR "{r}" SERVER {name}')
        elif kind == "drop":
            conn.execute(f"DROP SERVER {name} CASCADE")
            self.servers.remove(name)
        elif kind == "grant":
            conn.execute(f'GRANT USAGE ON FOREIGN SERVER {name} TO "{r}"')
        elif kind == "revoke":
            conn.execute(f'REVOKE USAGE ON FOREIGN SERVER {name} FROM "{r}"')
        elif kind == "rename":
            new = self.new_name()
            conn.execute(f"ALTER SERVER {name} RENAME TO {new}")
            self.servers[self.servers.index(name)] = new
            name = f"{name} -> {new}"
        return f"{kind} {name}"


def _autocommit(conn):
    conn.autocommit = True
    return conn


@pytest.mark.parametrize("seed", [1, *(pytest.param(s, marks=pytest.mark.model) for s in (2, 3))])
def test_incremental_sync_matches_a_full_re_read(db, seed):
    rng = random.Random(seed)
    w = World(db, rng)
    admin = _autocommit(db.connect())              # a superuser that changes things and syncs meanwhile
    reader = db.connect(w.reader)                  # a role that only reads
    switcher = db.connect()                        # a superuser that switches to the reader and back
    admin.execute("SET client_min_messages = warning")
    for _ in range(3):
        w.op(admin)
    steps = []
    for _ in range(40):
        how = rng.choice(["plain", "plain", "txn_commit", "txn_rollback", "savepoint"])
        if how == "plain":
            steps.append(w.op(admin))
        else:
            admin.autocommit = False
            steps.append(f"{how}: " + w.op(admin))
            _listing(admin)                        # the admin's engine sees its own uncommitted change
            if how == "savepoint":
                admin.execute("SAVEPOINT s")
                steps.append("  then " + w.op(admin))
                _listing(admin)
                admin.execute("ROLLBACK TO SAVEPOINT s")
                _listing(admin)
                admin.commit()
            elif how == "txn_rollback":
                admin.rollback()
            else:
                admin.commit()
            admin.autocommit = True
        w.servers = _existing(admin)
        if rng.random() < 0.3:
            switcher.execute(f'SET ROLE "{w.reader}"')
        elif rng.random() < 0.3:
            switcher.execute("RESET ROLE")
        context = f"seed {seed}, after: " + "; ".join(steps[-3:])
        for conn in (admin, reader, switcher):
            role = conn.execute("SELECT current_user").fetchone()[0]
            with psycopg.connect(db.cluster.dsn(db.dbname, role), autocommit=True) as fresh:
                want = _listing(fresh)
            assert _listing(conn) == want, f"{role}: {context}"


def _existing(conn):
    return [n for (n,) in conn.execute(
        "SELECT srvname FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw "
        "WHERE w.fdwname = 'duckdb' AND srvname LIKE 'm%' ORDER BY srvname")]


# --- found by a red team (incremental sync) ------------------------------------------

def _names(conn, storage="memory"):
    return {n for (n,) in conn.execute("SELECT name FROM duckdb.secrets() WHERE storage = %s "
                                       "AND origin = 'server'", (storage,))}


def test_a_change_that_rebuilds_the_engine_keeps_every_other_secret(db):
    """An owner or endpoint change gives the engine a new profile: the new engine
    gets every secret, not only the changed one."""
    c = db.conn
    other = db.role("admin2", superuser=True)
    for name in ("e1", "e2", "e3"):
        c.execute(f"CREATE SERVER {name} TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://{name}')")
        c.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS (key_id 'K{name}', secret 'S-{name}-0')")
    reader = db.role("rebuild")
    c.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{reader}"')
    c.execute(f'GRANT USAGE ON FOREIGN SERVER e1, e2, e3 TO "{reader}"')
    r = db.connect(reader)
    assert _names(r) == {"e1", "e2", "e3"}
    c.execute("ALTER SERVER e3 OPTIONS (ADD endpoint '127.0.0.2:9')")      # new reach: a new engine
    assert _names(r) == {"e1", "e2", "e3"}
    c.execute(f'ALTER SERVER e3 OWNER TO "{other}"')
    assert _names(r) == {"e1", "e2", "e3"}
    assert _names(db.conn) == {"e1", "e2", "e3"}


def test_noinherit_takes_a_groups_server_away_mid_session(db):
    c = db.conn
    group, reader = db.role("grp", login=False), db.role("member")
    c.execute("CREATE SERVER via_group TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://via')")
    c.execute("CREATE USER MAPPING FOR PUBLIC SERVER via_group OPTIONS (key_id 'KG', secret 'S-group-0')")
    c.execute(f'GRANT USAGE ON FOREIGN SERVER via_group TO "{group}"')
    c.execute(f'GRANT "{group}" TO "{reader}"')
    c.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{reader}"')
    r = db.connect(reader)
    assert "via_group" in _names(r)
    c.execute(f'ALTER ROLE "{reader}" NOINHERIT')
    assert "via_group" not in _names(r)
    c.execute(f'ALTER ROLE "{reader}" INHERIT')
    assert "via_group" in _names(r)


def test_reassign_owned_is_seen_mid_session(db):
    """REASSIGN OWNED fires no event trigger: a superuser's engine still stops
    taking a server that a non-administrator now owns."""
    c = db.conn
    admin2, lesser = db.role("admin2", superuser=True), db.role("lesser")
    c.execute("CREATE SERVER moved TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://moved')")
    c.execute(f'ALTER SERVER moved OWNER TO "{admin2}"')
    watcher = db.connect()
    assert "moved" in _names(watcher)
    c.execute(f'REASSIGN OWNED BY "{admin2}" TO "{lesser}"')
    assert "moved" in _names(watcher, "skipped")
