"""The policy's table (plpython/duckdb_secrets/allowlist.py): every function,
view, setting and extension DuckDB lists with every shipped extension loaded is
classified, and a name DuckDB knows that the table does not is refused to roles
that are not superusers (default deny)."""

import psycopg
import pytest

from duckdb_secrets import allowlist, shipped, statements
from duckdb_secrets.errors import PgError


def _names(conn, sql, width=1):
    cols = ", ".join(f"c{i} text" for i in range(width))
    return conn.execute(f"SELECT * FROM duckdb.query($q${sql}$q$) AS t({cols})").fetchall()


def test_every_name_duckdb_lists_is_classified(db):
    """A DuckDB upgrade (or a new shipped extension) adds names: this fails until
    each is reviewed into allowlist.py."""
    c = db.conn
    for name in shipped.LOAD_ORDER:
        c.execute("SELECT duckdb.load_extension(%s)", (name,))
    missing = []
    for (name,) in _names(c, "SELECT DISTINCT function_name FROM duckdb_functions() WHERE internal"):
        if name not in allowlist.FUNCTIONS:
            missing.append(f"function {name}")
    for (name,) in _names(c, "SELECT DISTINCT view_name FROM duckdb_views() WHERE internal"):
        if name not in allowlist.VIEWS:
            missing.append(f"view {name}")
    for (name,) in _names(c, "SELECT name FROM duckdb_settings()"):
        if name not in allowlist.SETTINGS:
            missing.append(f"setting {name}")
    for (name,) in _names(c, "SELECT extension_name FROM duckdb_extensions()"):
        if name not in allowlist.EXTENSIONS:
            missing.append(f"extension {name}")
    assert not missing, "not classified in plpython/duckdb_secrets/allowlist.py: " + ", ".join(missing)
    # and every extension a role's engine may hold is one the table lets every role have
    assert {n for n in shipped.role_extensions()} <= {n for n, r in allowlist.EXTENSIONS.items() if r == "all"}


def test_every_rule_is_one_the_check_knows():
    known = {"all", "superuser", "refused"}
    conditions = {"any-mention", "literal-sql", "literal-table", "literal-setting", "not-in-from", "memory-output"}
    for table in (allowlist.FUNCTIONS, allowlist.VIEWS, allowlist.SETTINGS, allowlist.EXTENSIONS):
        for name, rule in table.items():
            base, tags = allowlist.parts(rule)
            assert base in known and tags <= conditions, (name, rule)


class _Policy:
    superuser = False

    def copy_prefixes(self, extensions):
        return ("s3://",)


@pytest.mark.inprocess
def test_a_name_duckdb_knows_and_the_table_does_not_is_refused(monkeypatch):
    import duckdb
    con = duckdb.connect()
    try:
        sql = "SELECT upper('x'), ('y').lower() AS m"
        statements.check(duckdb, con, sql, _Policy())
        for name in ("upper", "lower"):
            functions = dict(allowlist.FUNCTIONS)
            del functions[name]
            monkeypatch.setattr(allowlist, "FUNCTIONS", functions)
            with pytest.raises(PgError) as e:
                statements.check(duckdb, con, sql, _Policy())
            assert e.value.sqlstate == "42501" and f'"{name}"' in e.value.message
            assert "allowlist.py" in e.value.detail
            monkeypatch.undo()
        # a view DuckDB ships, named in FROM
        views = dict(allowlist.VIEWS)
        del views["pg_tables"]
        monkeypatch.setattr(allowlist, "VIEWS", views)
        for sql in ("SELECT * FROM pg_tables", "SELECT * FROM pg_catalog.pg_tables",
                    "SELECT 1 FROM (SELECT 1) t JOIN pg_tables ON true"):
            with pytest.raises(PgError):
                statements.check(duckdb, con, sql, _Policy())
        monkeypatch.undo()
        # what is not DuckDB's own: a role's macro, a table, a column list, a type
        con.execute("CREATE MACRO my_macro(a) AS a + 1")
        con.execute("CREATE TABLE t (a INTEGER)")
        for ok in ("SELECT my_macro(1)", "INSERT INTO t (a) VALUES (1)", "SELECT a::DECIMAL(10, 2) FROM t",
                   "WITH w(x) AS (SELECT 1) SELECT x FROM w", "SELECT * FROM t AS z(b)"):
            statements.check(duckdb, con, ok, _Policy())
        # superusers are not held by the table
        sup = _Policy()
        sup.superuser = True
        statements.check(duckdb, con, "SELECT * FROM duckdb_settings()", sup)
    finally:
        con.close()


def test_settings_a_role_may_read(db):
    """current_setting()/SHOW: the table's SETTINGS decide (paths and credentials: superusers)."""
    role = db.role("reader")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    conn = db.connect(role)
    assert conn.execute("SELECT * FROM duckdb.query($$ SELECT current_setting('threads') $$) AS t(v text)").fetchone()
    for setting in ("s3_secret_access_key", "temp_directory", "search_path", "no_such_setting"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM duckdb.query($$ SELECT current_setting('{setting}') $$) AS t(v text)")


@pytest.mark.inprocess
def test_every_route_to_a_function_is_judged_by_the_table(tmp_path):
    """Issue 31 item 2: a replacement scan (FROM 'x.duckdb' is read_duckdb, a
    superuser's), method-call syntax, qualified names, and macros or views made
    earlier (their bodies are checked when they are made)."""
    import duckdb
    db_file = str(tmp_path / "x.duckdb")
    made = duckdb.connect(db_file)
    made.execute("CREATE TABLE t AS SELECT 42 AS a")
    made.close()
    con = duckdb.connect()
    try:
        for sql in (f"SELECT * FROM '{db_file}'",
                    f"SELECT * FROM range(1) r, '{db_file}'",
                    f"SELECT * FROM range(1) r JOIN '{db_file}' ON true",
                    f"SELECT * FROM '{db_file}' WHERE a = $1",              # cannot be planned ahead
                    "SELECT * FROM 's3://bucket/never/there.duckdb'",
                    "SELECT ('x').duckdb_secrets()",                         # method call
                    "SELECT * FROM system.main.duckdb_settings()",           # qualified
                    "CREATE MACRO m() AS TABLE SELECT * FROM duckdb_settings()",
                    # red team (policy): a PIVOT whose columns come from the data has no text of its own
                    "PIVOT pg_settings ON name USING first(setting)",
                    "SELECT * FROM (PIVOT (SELECT 1 a) ON a USING first(current_setting('temp_directory')))",
                    "PIVOT (SELECT 1 k, count(*) c FROM enable_logging('HTTP')) ON k USING first(c)",
                    # red team (policy): database files by every route
                    'SELECT * FROM "s3://bucket/x.duckdb"', 'FROM "s3://bucket/*.duckdb" AS z',
                    "SUMMARIZE 's3://bucket/x.duckdb'", "DESCRIBE 's3://bucket/x.duckdb'",
                    "PIVOT 's3://bucket/x.duckdb' ON a USING sum(a)",
                    "UNPIVOT 's3://bucket/x.duckdb' ON a INTO NAME n VALUE v",
                    "DELETE FROM t USING 's3://bucket/x.duckdb' d",
                    "MERGE INTO t USING 's3://bucket/x.duckdb' s ON t.a = s.a "
                    "WHEN NOT MATCHED THEN INSERT VALUES (s.a)",
                    "CREATE VIEW v2 AS FROM 's3://bucket/x.duckdb'",
                    "CREATE MACRO m2() AS TABLE FROM 's3://bucket/x.duckdb'",
                    """SELECT * FROM query_table('"s3://bucket/x.duckdb"')""",
                    """SELECT * FROM query('FROM "s3://bucket/x.duckdb"')""",
                    "PREPARE p AS FROM \"s3://bucket/x.duckdb\"",
                    f"CREATE TABLE \"/nt\" AS SELECT 1 AS a; SELECT * FROM '/nt', '{db_file}'",
                    "CREATE VIEW v AS SELECT * FROM duckdb_settings()"):
            with pytest.raises(PgError) as e:
                statements.check(duckdb, con, sql, _Policy())
            assert e.value.sqlstate == "42501", sql
        con.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER)")
        for ok in ("SELECT * FROM 's3://bucket/x.parquet' WHERE 1 = $1", "SELECT * FROM 'data.csv.gz'",
                   "SELECT ('x').upper()", "SELECT * FROM system.main.range(1)",
                   # red team (policy): usability kept
                   "SELECT current_setting('TimeZone'), current_setting('calendar')", "SHOW TimeZone",
                   "SHOW TABLES", "SHOW ALL TABLES", "SHOW t", "FROM query_table('s3://bucket/x.parquet')",
                   "PIVOT t ON a USING count(*)", "FROM main.t", 'FROM "t"'):
            statements.check(duckdb, con, ok, _Policy())
        sup = _Policy()
        sup.superuser = True
        statements.check(duckdb, con, f"SELECT * FROM '{db_file}'", sup)
    finally:
        con.close()


def test_a_database_file_in_from_is_refused_end_to_end(db, s3, tmp_path):
    """FROM 's3://.../x.duckdb' would read a database file with read_duckdb: its
    views and macros run SQL nobody checked."""
    import duckdb

    from conftest import READ, lake_and_reader
    path = str(tmp_path / "x.duckdb")
    made = duckdb.connect(path)
    made.execute("CREATE VIEW v AS SELECT 42 AS a")
    made.close()
    with open(path, "rb") as f:
        s3.put("attack/x.duckdb", f.read())
    reader = lake_and_reader(db, s3)
    db.conn.execute(f"CREATE USER MAPPING FOR \"{reader}\" SERVER lake "
                    f"OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")
    conn = db.connect(reader)
    assert conn.execute(READ).fetchone()[0] == 10
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        conn.execute("SELECT * FROM duckdb.query($$ SELECT * FROM 's3://bucket/attack/x.duckdb' $$) AS t(a int)")
    # refused: read_duckdb named by the plan, or a statement DuckDB could not plan ahead
    assert "permission denied" in e.value.diag.message_primary


def test_a_file_in_a_table_position_is_judged_before_duckdb_binds_it(db, counter):
    """The check runs on DuckDB's parse, before the binder: binding a file in
    FROM already reads it (here: requests at a loopback server), and binding a
    database file attaches it; the bound plan also folds constant calls
    (current_setting('x') becomes its value), so the names that matter are gone
    from it. A refused name costs no request at all."""
    role = db.role("binder")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    db.conn.execute(f"CREATE SERVER web TYPE 'http' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (scope 'http://127.0.0.1:{counter.port}/open/')")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER web TO "{role}"')
    conn = db.connect(role)
    base = f"http://127.0.0.1:{counter.port}/open"
    # red team: DuckDB picks the reader from the whole string, query string included
    for name in ("x.duckdb", "x.db", "x.xlsx", "x.parquet.duckdb", "x", "x.parquet?s3_region=.duckdb",
                 "x.parquet?s3_region=us-east-1.db"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM duckdb.query($q$ SELECT * FROM '{base}/{name}' $q$) AS t(a text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM duckdb.query($q$ PREPARE p AS SELECT * FROM \"{base}/{name}\" $q$) "
                         "AS t(a text)")
    # red team: DuckDB joins a qualified name's parts with a dot and reads that file
    for text in (f'SELECT * FROM "{base}/x"."duckdb"', f"""SELECT * FROM query_table('"{base}/x"."DUCKDB"')""",
                 f"SHOW '{base}/x.duckdb'", f'SHOW "{base}/x".db', f"SELECT * FROM (SHOW '{base}/*.duckdb')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM duckdb.query(%s) AS t(a text)", (text,))
    assert counter.hits == []
    # the same server, a CSV file: DuckDB's binder reads it
    assert conn.execute(f"SELECT * FROM duckdb.query($q$ SELECT * FROM '{base}/x.csv' $q$) "
                        "AS t(a bigint, b bigint)").fetchall() == [(1, 2)]
    assert counter.hits
