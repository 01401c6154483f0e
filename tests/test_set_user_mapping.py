"""duckdb.set_user_mapping(server, role, options jsonb): a user mapping whose
values arrive as bind parameters, validated like CREATE/ALTER USER MAPPING,
under PostgreSQL's rules for who may change whose mapping. No value reaches
statement text, pg_stat_statements, an error or the server log."""

import json

import psycopg
import pytest

from conftest import READ, assert_clean_error, lake_and_reader, s3_server_sql

SET = "SELECT duckdb.set_user_mapping(%s, %s, %s::jsonb)"


@pytest.fixture
def owner(db, s3):
    """The server lake (a superuser's, so its endpoint opens reach); a reader with USAGE."""
    return {"conn": db.connect(), "reader": lake_and_reader(db, s3)}


def test_a_non_superuser_owner_sets_public(db, s3):
    admin = db.role("admin")
    db.conn.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{admin}"')
    c = db.connect(admin)
    c.execute(s3_server_sql("theirs", s3, scope="s3://theirs"))
    c.execute(SET, ("theirs", "PUBLIC", json.dumps({"key_id": "k", "secret": "CANARY-sum-0"})))
    assert db.conn.execute("SELECT umoptions FROM pg_user_mappings WHERE srvname = 'theirs' AND usename = 'public'"
                           ).fetchone()[0] == ["key_id=k", "secret=CANARY-sum-0"]


def test_the_owner_sets_public_and_a_reader_reads(db, s3, owner, log_since):
    db.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    db.conn.execute("SELECT pg_stat_statements_reset()")
    owner["conn"].execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": s3.key_id, "secret": s3.secret})))
    reader = db.connect(owner["reader"])
    assert reader.execute(READ).fetchone() == (10,)
    texts = [r[0] for r in db.conn.execute("SELECT query FROM pg_stat_statements")]
    assert not [t for t in texts if s3.secret in t]
    assert s3.secret not in log_since()


def test_a_reader_sets_and_rotates_its_own_mapping(db, s3, owner):
    reader = db.connect(owner["reader"])
    reader.execute(SET, ("lake", "CURRENT_USER", json.dumps({"key_id": s3.key_id, "secret": "wrong-one",
                                                             "session_token": "tok"})))
    with pytest.raises(psycopg.Error) as e:
        reader.execute(READ)
    assert_clean_error(e.value, "wrong-one")
    # Change one value, remove another (null): the rest stays.
    reader.execute(SET, ("lake", "CURRENT_USER", json.dumps({"secret": s3.secret, "session_token": None})))
    assert reader.execute(READ).fetchone() == (10,)
    opts = reader.execute("SELECT umoptions FROM pg_user_mappings WHERE srvname = 'lake' AND usename = current_user"
                          ).fetchone()[0]
    assert sorted(o.split("=")[0] for o in opts) == ["key_id", "secret"]


@pytest.mark.parametrize("target", ["PUBLIC", "other"])
def test_a_reader_may_not_change_other_mappings(db, s3, owner, target):
    other = db.role("other")
    reader = db.connect(owner["reader"])
    with pytest.raises(psycopg.Error) as e:
        reader.execute(SET, ("lake", target if target == "PUBLIC" else other,
                             json.dumps({"key_id": "k", "secret": "CANARY-sum-1"})))
    assert e.value.sqlstate == "42501"
    assert_clean_error(e.value, "CANARY-sum-1")
    assert db.conn.execute("SELECT count(*) FROM pg_user_mappings WHERE srvname = 'lake'").fetchone() == (0,)


@pytest.mark.parametrize("args,sqlstate", [
    (("lake", "PUBLIC", {"key_id": "k", "nonsense": "CANARY-sum-2"}), "HV00D"),
    (("lake", "PUBLIC", {"key_id": "k", "use_ssl": "CANARY-sum-3"}), "42710"),     # also on the server
    (("lake", "PUBLIC", {"secret": {"nested": "CANARY-sum-4"}}), "22023"),
    (("no_such_server", "PUBLIC", {"secret": "CANARY-sum-5"}), "42704"),
    (("lake", "no_such_role", {"secret": "CANARY-sum-6"}), "42704"),
    (("lake", "PUBLIC", ["CANARY-sum-7"]), "22023"),
])
def test_bad_calls_are_clean_errors_and_change_nothing(db, s3, owner, args, sqlstate):
    server, role, options = args
    with pytest.raises(psycopg.Error) as e:
        owner["conn"].execute(SET, (server, role, json.dumps(options)))
    assert e.value.sqlstate == sqlstate or (sqlstate == "HV00D" and e.value.sqlstate in ("HV00D", "HV024")), \
        (e.value.sqlstate, str(e.value))
    assert_clean_error(e.value, *[f"CANARY-sum-{i}" for i in range(2, 8)])
    assert db.conn.execute("SELECT count(*) FROM pg_user_mappings WHERE srvname = 'lake'").fetchone() == (0,)


def test_not_a_duckdb_server(db):
    db.conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    db.conn.execute("CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw")
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(SET, ("elsewhere", "PUBLIC", json.dumps({"password": "CANARY-sum-8"})))
    assert e.value.sqlstate == "42809"
    assert_clean_error(e.value, "CANARY-sum-8")


def test_the_readmes_psql_recipe_keeps_json_escapes(db, cluster, tmp_path):
    """README "Usage": the options through \\copy (CSV with a quote and a delimiter
    that never occur), then set_user_mapping: a value with \\ and " arrives intact."""
    import subprocess
    role = db.role("cp")
    db.conn.execute("CREATE SERVER copy_pg TYPE 'postgres' FOREIGN DATA WRAPPER duckdb "
                    "OPTIONS (host '127.0.0.1', dbname 'x', user 'app')")
    value = 'pa\\ss"wo\\nrd'
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"password": value}) + "\n")
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    script = ("CREATE TEMP TABLE m (options jsonb);\n"
              f"\\copy m FROM '{path}' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')\n"
              f"SELECT duckdb.set_user_mapping('copy_pg', '{role}', options) FROM m;\n")
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", cluster.host, "-p", str(cluster.port),
                          "-U", cluster.user, "-d", db.dbname], input=script, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    opts = db.conn.execute("SELECT umoptions FROM pg_user_mappings WHERE srvname = 'copy_pg'").fetchone()[0]
    assert f"password={value}" in opts
