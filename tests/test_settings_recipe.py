"""The README's recipe for settings only the configuration files may set:
SET makes the name known to the session, then ALTER SYSTEM writes it."""

import psycopg


def test_alter_system_recipe_of_the_readme(db, cluster):
    name = "duckdb.aws_refresh_margin"     # harmless to change for the other tests
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as admin:
        try:
            admin.execute(f"SET {name} = ''")
            admin.execute(f"ALTER SYSTEM SET {name} = '301'")
            admin.execute("SELECT pg_reload_conf()")
            with psycopg.connect(cluster.dsn(db.dbname), autocommit=True) as fresh:
                for _ in range(50):
                    value = fresh.execute(f"SELECT current_setting('{name}', true)").fetchone()[0]
                    if value == "301":
                        break
                    fresh.execute("SELECT pg_sleep(0.05)")
                assert value == "301"
                # the engine starts with it (a setting from the configuration files counts)
                assert fresh.execute("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)").fetchall() == [(1,)]
        finally:
            admin.execute(f"SET {name} = ''")
            admin.execute(f"ALTER SYSTEM RESET {name}")
            admin.execute("SELECT pg_reload_conf()")


def test_a_setting_above_its_cap_is_said_once_not_cut_silently(db):
    c = db.connect()
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    c.execute("SET duckdb.memory_limit = '64GB'")
    c.execute("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)")
    said = [n for n in notices if "duckdb.memory_limit" in n]
    assert said == ['duckdb.memory_limit "64GB" is above duckdb.max_memory_limit: the engine uses 1GB'], notices
    c.execute("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)")
    assert len([n for n in notices if "duckdb.memory_limit" in n]) == 1
    row = c.execute("SELECT memory_limit FROM duckdb.engine()").fetchone()
    assert row[0] is not None


def test_a_sessions_value_of_a_configuration_files_setting_is_said_to_count_for_nothing(db):
    role = db.role("s")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    c = db.connect(role)
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    c.execute("SET duckdb.allowed_url_prefixes = 'http://127.0.0.1:1/'")
    c.execute("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)")
    said = [n for n in notices if "allowed_url_prefixes" in n]
    assert said == ["duckdb.allowed_url_prefixes set in this session has no effect: only the configuration "
                    "files set it"], notices
    c.execute("SELECT * FROM duckdb.query('SELECT 2') AS t(x int)")
    assert len([n for n in notices if "allowed_url_prefixes" in n]) == 1
