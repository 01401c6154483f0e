"""Reading Parquet from a real S3 server (moto, signatures checked) through
duckdb.query(), with secrets defined both ways, and keeping them in line."""

import psycopg
import pytest

from conftest import assert_clean_error, s3_mapping_sql, s3_server_sql

PARQUET = "s3://bucket/data/numbers.parquet"
READ = (f"SELECT * FROM duckdb.query($$ SELECT count(*), sum(n) FROM read_parquet('{PARQUET}') $$) "
        "AS t(c bigint, s numeric)")


def failed_read(conn, *secrets):
    """READ fails with a clean error that carries none of secrets."""
    with pytest.raises(psycopg.Error) as e:
        conn.execute(READ)
    assert_clean_error(e.value, *secrets)
    return e.value


def simple_secret(conn, s3, key_id=None, secret=None):
    return conn.execute(
        "SELECT duckdb.create_simple_secret(type := 'S3', key_id := %s, secret := %s, region := %s, "
        "endpoint := %s, url_style := 'path', use_ssl := 'false')",
        (key_id or s3.key_id, secret or s3.secret, s3.region, s3.endpoint)).fetchone()[0]


def test_read_with_create_simple_secret(db, s3):
    assert simple_secret(db.conn, s3) == "simple_s3_secret"
    assert db.conn.execute(READ).fetchone() == (10, 45)
    rows = db.conn.execute(
        f"SELECT * FROM duckdb.query($$ SELECT n, label FROM read_parquet('{PARQUET}') ORDER BY n LIMIT 2 $$) "
        "AS t(n bigint, label text)").fetchall()
    assert rows == [(0, "row 0"), (1, "row 1")]


def test_read_with_server_and_user_mapping(db, s3):
    db.conn.execute(s3_server_sql("my_s3", s3, scope="s3://bucket"))
    db.conn.execute(s3_mapping_sql("my_s3", s3, "CURRENT_USER"))
    assert db.conn.execute(READ).fetchone() == (10, 45)
    assert db.conn.execute("SELECT name FROM duckdb.which_secret(%s, 's3')", (PARQUET,)).fetchone() == ("my_s3",)


def test_wrong_secret_gives_access_error_without_the_secret(db, s3, log_since):
    wrong = "wrong-secret-CANARY-7f3a9c"
    simple_secret(db.conn, s3, secret=wrong)
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(READ)
    assert e.value.sqlstate == "58030"           # io_error, from DuckDB's HTTP error
    assert "403" in e.value.diag.message_primary
    assert_clean_error(e.value, wrong, s3.secret)
    assert wrong not in log_since()


def test_unknown_key_id_is_refused(db, s3):
    simple_secret(db.conn, s3, key_id="AKIAUNKNOWNKEY000000")
    failed_read(db.conn, s3.secret)


def test_mapping_altered_in_another_session_is_used_without_reconnecting(db, s3):
    simple_secret(db.conn, s3)
    other = db.connect()
    assert db.conn.execute(READ).fetchone() == (10, 45)

    other.execute("ALTER USER MAPPING FOR postgres SERVER simple_s3_secret "
                  "OPTIONS (SET secret 'rotated-away-CANARY')")
    failed_read(db.conn, "rotated-away-CANARY")

    other.execute(f"ALTER USER MAPPING FOR postgres SERVER simple_s3_secret OPTIONS (SET secret '{s3.secret}')")
    assert db.conn.execute(READ).fetchone() == (10, 45)


def test_uncommitted_change_in_another_session_is_not_used(db, s3):
    simple_secret(db.conn, s3)
    assert db.conn.execute(READ).fetchone() == (10, 45)
    other = db.connect()
    other.execute("BEGIN")
    other.execute("ALTER USER MAPPING FOR postgres SERVER simple_s3_secret OPTIONS (SET secret 'uncommitted')")
    assert db.conn.execute(READ).fetchone() == (10, 45)
    other.execute("ROLLBACK")
    assert db.conn.execute(READ).fetchone() == (10, 45)


def test_rolled_back_simple_secret_leaves_nothing_in_the_engine(db, s3):
    db.conn.execute("BEGIN")
    simple_secret(db.conn, s3)
    assert [r[0] for r in db.conn.execute("SELECT name FROM duckdb.secrets()")] == ["simple_s3_secret"]
    assert db.conn.execute(READ).fetchone() == (10, 45)
    db.conn.execute("ROLLBACK")
    assert db.conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    assert db.conn.execute("SELECT count(*) FROM pg_foreign_server").fetchone() == (0,)
    failed_read(db.conn)


def test_savepoint_rollback_restores_the_previous_secret(db, s3):
    simple_secret(db.conn, s3)
    db.conn.execute("BEGIN")
    db.conn.execute("SAVEPOINT a")
    db.conn.execute("ALTER USER MAPPING FOR postgres SERVER simple_s3_secret OPTIONS (SET secret 'sp-CANARY')")
    failed_read(db.conn)
    db.conn.execute("ROLLBACK TO SAVEPOINT a")
    assert db.conn.execute(READ).fetchone() == (10, 45)
    db.conn.execute("COMMIT")


def test_set_role_without_usage_loses_the_secret_and_reset_role_brings_it_back(db, s3):
    alice = db.role("alice")
    bob = db.role("bob")
    db.conn.execute(s3_server_sql("team_s3", s3))
    db.conn.execute(s3_mapping_sql("team_s3", s3))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{alice}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{alice}", "{bob}"')
    db.conn.execute(f'GRANT "{bob}" TO "{alice}"')

    conn = db.connect(alice)
    assert [r[0] for r in conn.execute("SELECT name FROM duckdb.secrets()")] == ["team_s3"]
    assert conn.execute(READ).fetchone() == (10, 45)

    conn.execute(f'SET ROLE "{bob}"')
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    failed_read(conn, s3.secret)

    conn.execute("RESET ROLE")
    assert [r[0] for r in conn.execute("SELECT name FROM duckdb.secrets()")] == ["team_s3"]
    assert conn.execute(READ).fetchone() == (10, 45)


def test_role_mapping_wins_over_public_mapping(db, s3):
    alice = db.role("alice")
    db.conn.execute(s3_server_sql("team_s3", s3))
    db.conn.execute("CREATE USER MAPPING FOR PUBLIC SERVER team_s3 "
                    "OPTIONS (key_id 'PUBLICKEY', secret 'public-CANARY')")
    db.conn.execute(s3_mapping_sql("team_s3", s3, f'"{alice}"'))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{alice}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{alice}"')
    conn = db.connect(alice)
    assert conn.execute(READ).fetchone() == (10, 45)
    shown = conn.execute("SELECT secret_string FROM duckdb.secrets()").fetchone()[0]
    assert s3.key_id in shown and "public-CANARY" not in shown and "secret=redacted" in shown


def test_grant_and_revoke_usage_mid_session(db, s3):
    alice = db.role("alice")
    db.conn.execute(s3_server_sql("team_s3", s3))
    db.conn.execute(s3_mapping_sql("team_s3", s3))
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{alice}"')
    conn = db.connect(alice)
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)

    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{alice}"')
    assert conn.execute(READ).fetchone() == (10, 45)

    db.conn.execute(f'REVOKE USAGE ON FOREIGN SERVER team_s3 FROM "{alice}"')
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    failed_read(conn, s3.secret)


def test_usage_through_a_group_role_follows_membership(db, s3):
    alice, team = db.role("alice"), db.role("team", login=False)
    db.conn.execute(s3_server_sql("team_s3", s3))
    db.conn.execute(s3_mapping_sql("team_s3", s3))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{team}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{alice}"')
    conn = db.connect(alice)
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    db.conn.execute(f'GRANT "{team}" TO "{alice}"')       # no event trigger sees this one
    assert conn.execute(READ).fetchone() == (10, 45)
    db.conn.execute(f'REVOKE "{team}" FROM "{alice}"')
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)


def test_a_server_mapped_only_for_other_roles_does_not_shadow_ones_own(db, s3):
    """Server theirs (scope s3://bucket/data) has a mapping for alice only: it is not
    the superuser's secret, so its own server for s3://bucket is used, and
    duckdb.secrets() says why theirs is not."""
    alice = db.role("alice")
    db.conn.execute(s3_server_sql("theirs", s3, scope="s3://bucket/data"))
    db.conn.execute(s3_mapping_sql("theirs", s3, f'"{alice}"'))
    db.conn.execute(s3_server_sql("mine", s3, scope="s3://bucket"))
    db.conn.execute(s3_mapping_sql("mine", s3, "CURRENT_USER"))
    assert db.conn.execute(READ).fetchone() == (10, 45)
    rows = {r[0]: r[1:] for r in db.conn.execute("SELECT name, storage, secret_string FROM duckdb.secrets()")}
    assert rows["theirs"] == ("skipped", "no user mapping for this role or PUBLIC")
    assert rows["mine"][0] == "memory"
    assert db.conn.execute("SELECT name FROM duckdb.which_secret(%s, 's3')", (PARQUET,)).fetchone() == ("mine",)


def test_a_huggingface_server_without_a_token_is_an_anonymous_secret(db):
    db.conn.execute("CREATE SERVER hf TYPE 'huggingface' FOREIGN DATA WRAPPER duckdb")
    rows = {r[0]: r[1:] for r in db.conn.execute("SELECT name, storage, scope FROM duckdb.secrets()")}
    assert rows["hf"] == ("memory", ["hf://"])
