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
