"""Upgrades: a database made at the previous version (0.6.0, the version of
today's databases) with secrets, then ALTER EXTENSION ... UPDATE. Every secret
is kept and works, the objects equal a fresh install's, a backend that loaded
the code under the old version refuses to go on (it asks to reconnect), and a
session in a database not yet updated gets the clear 55000 error. The same
regression tests on an updated database run in `make test` (make
installcheck-upgrade)."""

import os
import re
import subprocess

import psycopg
import pytest

from conftest import READ, assert_clean_error, s3_mapping_sql, s3_server_sql, sql_objects
from duckdb_secrets import _tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "Makefile")) as _f:
    PREVIOUS = re.search(r"^UPGRADE_FROM = (\S+)$", _f.read(), re.M).group(1)
VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'duckdb_secrets'"
BODIES = ("SELECT p.oid::regprocedure::text, md5(p.prosrc) FROM pg_proc p "
          "WHERE p.pronamespace = 'duckdb'::regnamespace ORDER BY 1")
# A digest, so that a failing comparison never prints mapping options.
CATALOG = """
SELECT count(*), md5(string_agg(concat_ws('|', s.srvname, s.srvtype, s.srvoptions::text, s.srvacl::text,
                                          um.usename, um.umoptions::text), ',' ORDER BY s.srvname, um.usename))
  FROM pg_foreign_server s LEFT JOIN pg_user_mappings um ON um.srvid = s.oid
"""


@pytest.fixture(scope="module")
def previous_script():
    """The previous version's install script (not shipped), installed for these tests only."""
    subprocess.run(["make", "-s", "-C", ROOT, "install-upgrade-fixture"], check=True, stdout=subprocess.DEVNULL)
    yield
    subprocess.run(["make", "-s", "-C", ROOT, "uninstall-upgrade-fixture"], check=True)


def _as_previous(conn):
    """This session's package stands in for the previous version's (tests/fixtures/)."""
    with open(os.path.join(ROOT, "tests", "fixtures", f"as-{PREVIOUS}.sql")) as f:
        conn.execute(f.read())


def _db(cluster, name, version=None):
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    c = psycopg.connect(cluster.dsn(name), autocommit=True)
    if version:
        c.execute("CREATE EXTENSION plpython3u")
        _as_previous(c)
    c.execute("CREATE EXTENSION duckdb_secrets " + (f"VERSION '{version}' " if version else "") + "CASCADE")
    return c


def test_update_from_the_previous_version_keeps_every_secret(cluster, s3, previous_script):
    old = _db(cluster, "upgrade_from_prev", PREVIOUS)
    fresh = _db(cluster, "upgrade_fresh")
    try:
        assert old.execute(VERSION).fetchone() == (PREVIOUS,)
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

        # A session in the database not yet updated: the clear error, nothing else.
        with psycopg.connect(cluster.dsn("upgrade_from_prev", roles[1]), autocommit=True) as waiting:
            with pytest.raises(psycopg.Error) as e:
                waiting.execute(READ)
            assert e.value.sqlstate == "55000"
            assert e.value.diag.message_hint == "Run ALTER EXTENSION duckdb_secrets UPDATE, or reinstall the extension."
            assert_clean_error(e.value, s3.secret)

        # A backend that has used the extension under the previous version
        # (a superuser's: standing in for the old package takes plpython3u) ...
        stale = psycopg.connect(cluster.dsn("upgrade_from_prev"), autocommit=True)
        _as_previous(stale)
        assert stale.execute(READ).fetchone() == (10,)

        old.execute("ALTER EXTENSION duckdb_secrets UPDATE")
        assert old.execute(VERSION).fetchone() == (_tree.version(),)

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
            with psycopg.connect(cluster.dsn("upgrade_from_prev", r), autocommit=True) as c:
                got = dict(c.execute("SELECT name, origin FROM duckdb.secrets()").fetchall())
                assert got == {"shared": "server", "per_role": "server"}
                assert c.execute(READ).fetchone() == (10,)
        with psycopg.connect(cluster.dsn("upgrade_from_prev"), autocommit=True) as c:
            assert {n for (n,) in c.execute("SELECT name FROM duckdb.secrets()")} == {
                "shared", "per_role", "simple_s3_secret"}

        # The updated objects are exactly a fresh install's (definitions, rights, security definer).
        for r in roles:
            old.execute(f"REVOKE EXECUTE ON FUNCTION duckdb.query(text) FROM {r}")   # granted by this test
        assert sql_objects(old) == sql_objects(fresh)
        assert old.execute(BODIES).fetchall() == fresh.execute(BODIES).fetchall()
    finally:
        old.close()
        fresh.close()
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            for d in ("upgrade_from_prev", "upgrade_fresh"):
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
                  + src.replace(repr(_tree.version()), "'9.9.9'") + "$py$")
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT * FROM duckdb.secrets()")
        assert e.value.sqlstate == "55000"
        assert "do not match" in e.value.diag.message_primary
        assert "9.9.9" in e.value.diag.message_detail
        c.execute("ROLLBACK")
