"""Upgrades: CREATE EXTENSION ... VERSION '0.1.0', secrets made there, then
ALTER EXTENSION ... UPDATE. Every secret is kept and works, the objects equal
a fresh install's, and a backend that loaded the code under the old version
refuses to go on (it asks to reconnect). The same regression tests on an
updated database run in `make test` (make installcheck-upgrade)."""

import psycopg
import pytest

from conftest import READ, assert_clean_error, s3_mapping_sql, s3_server_sql
from duckdb_secrets import _tree

VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'duckdb_secrets'"
OBJECTS = """
SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), coalesce(p.proacl::text, ''), p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'duckdb'::regnamespace
UNION ALL
SELECT c.oid::regclass::text, concat_ws(' ', c.relkind, (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid,
         a.atttypmod) || ' ' || a.attnotnull, ', ' ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         (SELECT string_agg(pg_get_triggerdef(t.oid), '; ') FROM pg_trigger t WHERE t.tgrelid = c.oid)),
       coalesce(c.relacl::text, ''), false
  FROM pg_class c WHERE c.relnamespace = 'duckdb'::regnamespace AND c.relkind IN ('r', 'v')
ORDER BY 1
"""
# A digest, so that a failing comparison never prints mapping options.
CATALOG = """
SELECT count(*), md5(string_agg(concat_ws('|', s.srvname, s.srvtype, s.srvoptions::text, s.srvacl::text,
                                          um.usename, um.umoptions::text), ',' ORDER BY s.srvname, um.usename))
  FROM pg_foreign_server s LEFT JOIN pg_user_mappings um ON um.srvid = s.oid
"""


def _db(cluster, name, version=None):
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    c = psycopg.connect(cluster.dsn(name), autocommit=True)
    c.execute("CREATE EXTENSION duckdb_secrets " + (f"VERSION '{version}' " if version else "") + "CASCADE")
    return c


def test_update_from_0_1_0_keeps_every_secret(cluster, s3):
    old = _db(cluster, "upgrade_from_010", "0.1.0")
    fresh = _db(cluster, "upgrade_fresh")
    try:
        assert old.execute(VERSION).fetchone() == ("0.1.0",)
        roles = []
        for i in range(3):
            r = f"upg_role_{i}"
            old.execute(f"DROP ROLE IF EXISTS {r}")
            old.execute(f"CREATE ROLE {r} LOGIN")
            roles.append(r)
        old.execute(s3_server_sql("shared", s3, scope="s3://bucket"))
        old.execute(s3_mapping_sql("shared", s3))
        old.execute(s3_server_sql("per_role", s3, scope="s3://bucket/data"))
        for r in roles:
            old.execute(f"GRANT USAGE ON FOREIGN SERVER shared TO {r}")
            old.execute(f"GRANT USAGE ON FOREIGN SERVER per_role TO {r}")
            old.execute(f"GRANT EXECUTE ON FUNCTION duckdb.query(text) TO {r}")
            old.execute(s3_mapping_sql("per_role", s3, r))
        old.execute("SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'AKIAUPGRADE', secret := 'CANARY-upg', "
                    "scope := 's3://other')")
        before = old.execute(CATALOG).fetchone()
        assert before[0] == 1 + len(roles) + 1           # PUBLIC's, each role's, the helper's

        # A backend that has used the extension under 0.1.0 ...
        stale = psycopg.connect(cluster.dsn("upgrade_from_010", roles[0]), autocommit=True)
        assert stale.execute(READ).fetchone() == (10,)
        assert len(stale.execute("SELECT * FROM duckdb.secrets()").description) == 7      # 0.1.0's columns

        old.execute("ALTER EXTENSION duckdb_secrets UPDATE")
        assert old.execute(VERSION).fetchone() == (_tree.versions()[0],)

        # ... refuses the new objects with a clear message, and keeps refusing until it reconnects.
        for _ in range(2):
            with pytest.raises(psycopg.Error) as e:
                stale.execute(READ)
            assert e.value.sqlstate == "55000"
            assert "updated while this session was using it" in e.value.diag.message_primary
            assert e.value.diag.message_hint == "Reconnect to use the new version."
            assert_clean_error(e.value, s3.secret)
        stale.close()

        # Nothing lost: the catalog is unchanged, each role has its secrets, reads work.
        assert old.execute(CATALOG).fetchone() == before
        for r in roles:
            with psycopg.connect(cluster.dsn("upgrade_from_010", r), autocommit=True) as c:
                got = dict(c.execute("SELECT name, origin FROM duckdb.secrets()").fetchall())
                assert got == {"shared": "server", "per_role": "server"}
                assert c.execute(READ).fetchone() == (10,)
        with psycopg.connect(cluster.dsn("upgrade_from_010"), autocommit=True) as c:
            assert {n for (n,) in c.execute("SELECT name FROM duckdb.secrets()")} == {
                "shared", "per_role", "simple_s3_secret"}

        # The updated objects are exactly a fresh install's (definitions, rights, security definer).
        for r in roles:
            old.execute(f"REVOKE EXECUTE ON FUNCTION duckdb.query(text) FROM {r}")   # granted by this test
        assert old.execute(OBJECTS).fetchall() == fresh.execute(OBJECTS).fetchall()
    finally:
        old.close()
        fresh.close()
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            for d in ("upgrade_from_010", "upgrade_fresh"):
                admin.execute(f"DROP DATABASE IF EXISTS {d} WITH (FORCE)")
            for i in range(3):
                admin.execute(f"DROP ROLE IF EXISTS upg_role_{i}")


def test_an_unknown_sql_version_is_refused_clearly(db):
    """SQL objects of a version the installed package does not serve: a clear error."""
    src = db.conn.execute("SELECT prosrc FROM pg_proc WHERE oid = 'duckdb._boot()'::regprocedure").fetchone()[0]
    with psycopg.connect(db.cluster.dsn(db.dbname), autocommit=True) as c:
        c.execute("BEGIN")
        c.execute("CREATE OR REPLACE FUNCTION duckdb._boot() RETURNS text[] LANGUAGE plpython3u "
                  "SET search_path = pg_catalog, pg_temp AS $py$"
                  + src.replace(repr(_tree.versions()[0]), "'9.9.9'") + "$py$")
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT * FROM duckdb.secrets()")
        assert e.value.sqlstate == "55000"
        assert "do not match" in e.value.diag.message_primary
        assert "9.9.9" in e.value.diag.message_detail
        c.execute("ROLLBACK")
