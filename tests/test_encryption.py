"""Encryption at rest (duckdb.encryption_key_file): user-mapping values are
stored encrypted, bound to their server, role and option; a fresh S3 access
key (a real one, which the local S3 server checks) is each test's canary, and
is searched for, byte for byte, in the data directory (heap and WAL), in
pg_dump output, in a base backup and in the server log."""

import json
import os
import shutil
import subprocess
import tempfile

import psycopg
import pytest

import localenv
from conftest import READ, assert_clean_error, file_setting, lake_and_reader, s3_server_sql

SET = "SELECT duckdb.set_user_mapping(%s, %s, %s::jsonb)"
KEY1, KEY2, KEY3 = "1f" * 32, "2e" * 32, "3d" * 32
SEALED = "dsenc1:"


def fresh_key(s3):
    """A new access key (of a new user of the local S3 server): (id, secret)."""
    import uuid
    iam = s3.client("iam")
    user = f"enc-{uuid.uuid4().hex[:12]}"
    iam.create_user(UserName=user)
    arn = next(p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"] if p["PolicyName"] == "s3-all")
    iam.attach_user_policy(UserName=user, PolicyArn=arn)
    k = iam.create_access_key(UserName=user)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


class KeyFile:
    """A key file outside the data directory, the server's OS user's own."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="duckdb_secrets_keys.")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "keys")

    def write(self, *keys, mode=0o600, path=None):
        path = path or self.path
        with open(path, "w") as f:
            f.write("".join(k + "\n" for k in keys))
        os.chmod(path, mode)
        localenv._chown_postgres(path)
        return path

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def keyfile(db):
    kf = KeyFile()
    kf.write(KEY1)
    with file_setting(db.conn, "duckdb.encryption_key_file", kf.path):
        yield kf
    kf.remove()


@pytest.fixture
def lake(db, s3):
    """Server lake (a superuser's) and a reader with USAGE and duckdb.query."""
    return lake_and_reader(db, s3)


def umoptions(db, server, user="public"):
    return dict(o.split("=", 1) for o in db.conn.execute(
        "SELECT umoptions FROM pg_user_mappings WHERE srvname = %s AND usename = %s", (server, user)).fetchone()[0])


def grep_tree(root, needle):
    """Files under root that contain needle's bytes."""
    hits, pat = [], needle.encode()
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            try:
                with open(p, "rb") as fh:
                    if pat in fh.read():
                        hits.append(os.path.relpath(p, root))
            except OSError:
                pass
    return hits


def test_set_user_mapping_leaves_no_clear_value_anywhere(db, s3, lake, keyfile, cluster, log_since):
    key_id, secret = fresh_key(s3)
    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    stored = umoptions(db, "lake")
    assert stored["secret"].startswith(SEALED) and stored["key_id"] == key_id
    reader = db.connect(lake)
    assert reader.execute(READ).fetchone() == (10,)
    db.conn.execute("CHECKPOINT")

    # The data directory, heap and WAL.
    assert grep_tree(cluster.data, secret) == []
    # pg_dump, plain text.
    dump = subprocess.run([f"{localenv.PG_BIN}/pg_dump", cluster.dsn(db.dbname)], capture_output=True,
                          text=True, check=True).stdout
    assert "CREATE USER MAPPING FOR public SERVER lake" in dump and SEALED in dump
    assert secret not in dump
    # A base backup.
    backup = localenv.scratch_dir("duckdb_secrets_bb.")
    try:
        os.chmod(backup, 0o777)
        subprocess.run(localenv._as_postgres([f"{localenv.PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p",
                                              str(cluster.port), "-U", "postgres", "-D",
                                              os.path.join(backup, "b"), "-c", "fast"]),
                       check=True, capture_output=True)
        assert os.path.exists(os.path.join(backup, "b", "PG_VERSION"))
        assert grep_tree(os.path.join(backup, "b"), secret) == []
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    # The server log.
    assert secret not in log_since()


def test_plain_ddl_values_are_encrypted_before_commit(db, s3, lake, keyfile):
    key_id, secret = fresh_key(s3)
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER lake OPTIONS (key_id '{key_id}', secret '{secret}')")
    assert umoptions(db, "lake")["secret"].startswith(SEALED)
    assert db.connect(lake).execute(READ).fetchone() == (10,)
    # ALTER ... SET of a new value: encrypted too; the others stay as they are.
    before = umoptions(db, "lake")
    db.conn.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER lake OPTIONS (SET secret '{secret}')")
    after = umoptions(db, "lake")
    assert after["secret"].startswith(SEALED) and after["secret"] != before["secret"]
    assert db.connect(lake).execute(READ).fetchone() == (10,)


def test_helpers_store_encrypted(db, s3, keyfile):
    key_id, secret = fresh_key(s3)
    name = db.conn.execute("SELECT duckdb.create_simple_secret(type := 'S3', key_id := %s, secret := %s, "
                           "region := %s, endpoint := %s, url_style := 'path', use_ssl := 'false', "
                           "scope := 's3://bucket')", (key_id, secret, s3.region, s3.endpoint)).fetchone()[0]
    assert umoptions(db, name, "postgres")["secret"].startswith(SEALED)
    assert db.conn.execute(READ).fetchone() == (10,)


def test_rotation_across_two_keys(db, s3, lake, keyfile):
    key_id, secret = fresh_key(s3)
    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    old = umoptions(db, "lake")["secret"]
    # A new current key; the old one still decrypts.
    keyfile.write(KEY2, KEY1)
    assert db.connect(lake).execute(READ).fetchone() == (10,)
    assert db.conn.execute("SELECT duckdb.reencrypt_secrets()").fetchone() == (1,)
    new = umoptions(db, "lake")["secret"]
    assert new.split(":")[1] != old.split(":")[1]
    assert db.conn.execute("SELECT duckdb.reencrypt_secrets()").fetchone() == (0,)      # nothing left to move
    # The old key gone: everything still reads.
    keyfile.write(KEY2)
    assert db.connect(lake).execute(READ).fetchone() == (10,)


def test_reencrypt_encrypts_values_stored_before_the_key(db, s3, lake):
    key_id, secret = fresh_key(s3)
    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    assert umoptions(db, "lake")["secret"] == secret           # no key file: as before
    kf = KeyFile()
    try:
        kf.write(KEY1)
        with file_setting(db.conn, "duckdb.encryption_key_file", kf.path):
            assert db.connect(lake).execute(READ).fetchone() == (10,)     # plaintext keeps working
            assert db.conn.execute("SELECT duckdb.reencrypt_secrets()").fetchone() == (1,)
            assert umoptions(db, "lake")["secret"].startswith(SEALED)
            assert db.connect(lake).execute(READ).fetchone() == (10,)
            db.conn.execute("CHECKPOINT")
    finally:
        kf.remove()


def test_reencrypt_is_for_superusers_and_needs_the_setting(db):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT duckdb.reencrypt_secrets()")
    assert e.value.sqlstate == "55000" and "duckdb.encryption_key_file" in e.value.diag.message_primary
    other = db.connect(db.role("nosuper"))
    with pytest.raises(psycopg.Error) as e:
        other.execute("SELECT duckdb.reencrypt_secrets()")
    assert e.value.sqlstate == "42501"


def test_a_copied_ciphertext_does_not_decrypt(db, s3, lake, keyfile):
    key_id, secret = fresh_key(s3)
    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    sealed = umoptions(db, "lake")["secret"]
    db.conn.execute(s3_server_sql("other", s3, scope="s3://bucket/data"))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER other TO "{lake}"')
    # Given in DDL for another server: refused.
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER other OPTIONS (key_id '{key_id}', secret '{sealed}')")
    assert e.value.sqlstate == "HV024" and "does not belong" in e.value.diag.message_primary
    # For another role of the same server, or another option: refused too.
    with pytest.raises(psycopg.Error):
        db.conn.execute(f"CREATE USER MAPPING FOR \"{lake}\" SERVER lake "
                        f"OPTIONS (key_id '{key_id}', secret '{sealed}')")
    with pytest.raises(psycopg.Error):
        db.conn.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER lake OPTIONS (ADD session_token '{sealed}')")
    # Written into the catalog behind the extension's back: the engine skips it, says why, loads the rest.
    db.conn.execute("CREATE USER MAPPING FOR PUBLIC SERVER other OPTIONS (key_id 'x', secret 'y')")
    db.conn.execute("UPDATE pg_user_mapping SET umoptions = %s WHERE umserver = "
                    "(SELECT oid FROM pg_foreign_server WHERE srvname = 'other')",
                    ([f"key_id={key_id}", f"secret={sealed}"],))
    db.conn.execute("SELECT duckdb._bump()")
    reader = db.connect(lake)
    notices = []
    reader.add_notice_handler(lambda d: notices.append(d.message_primary))
    rows = {r[0]: r for r in reader.execute("SELECT name, storage, secret_string FROM duckdb.secrets()")}
    assert rows["other"][1] == "skipped" and "does not belong" in rows["other"][2]
    assert rows["lake"][1] == "memory"
    assert any('server "other"' in n and "does not belong" in n for n in notices)
    assert reader.execute(READ).fetchone() == (10,)


@pytest.mark.parametrize("problem", ["missing", "unreadable", "open_to_others", "wrong_key", "not_a_key",
                                     "in_data_directory", "unset"])
def test_without_a_usable_key_the_engine_skips_with_a_warning(db, s3, lake, keyfile, cluster, problem):
    key_id, secret = fresh_key(s3)
    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    db.conn.execute(s3_server_sql("plain", s3, scope="s3://bucket/plain"))     # no sensitive values: unaffected
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER plain TO "{lake}"')
    inside = os.path.join(cluster.data, "duckdb_keys_test")
    setting = None
    if problem == "missing":
        os.unlink(keyfile.path)
    elif problem == "unreadable":
        keyfile.write(KEY1, mode=0o000)
    elif problem == "open_to_others":
        keyfile.write(KEY1, mode=0o644)
    elif problem == "wrong_key":
        keyfile.write(KEY3)
    elif problem == "not_a_key":
        keyfile.write("not-hex")
    elif problem == "in_data_directory":
        setting = keyfile.write(KEY1, path=inside)
    try:
        with file_setting(db.conn, "duckdb.encryption_key_file", setting) if setting or problem == "unset" \
                else _nothing():
            reader = db.connect(lake)
            notices = []
            reader.add_notice_handler(lambda d: notices.append(d.message_primary))
            rows = {r[0]: r for r in reader.execute("SELECT name, storage, secret_string FROM duckdb.secrets()")}
            assert rows["lake"][1] == "skipped", rows
            assert "cannot decrypt" in rows["lake"][2]
            assert rows["plain"][1] == "memory"
            assert [n for n in notices if 'server "lake"' in n and "cannot decrypt" in n]
            # The query runs (without that secret: the bucket refuses it); no crash, no value.
            with pytest.raises(psycopg.Error) as e:
                reader.execute(READ)
            assert_clean_error(e.value, secret)
            # Storing a new value with the key file broken is refused, never done in clear.
            if problem not in ("unset", "wrong_key"):
                with pytest.raises(psycopg.Error) as e:
                    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"secret": "CANARY-enc-broken"})))
                assert e.value.sqlstate == "F0000"
                assert "cannot encrypt" in e.value.diag.message_primary
                assert_clean_error(e.value, "CANARY-enc-broken")
    finally:
        if os.path.exists(inside):
            os.unlink(inside)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_renaming_the_server_keeps_its_values(db, s3, lake, keyfile):
    key_id, secret = fresh_key(s3)
    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    db.conn.execute(SET, ("lake", lake, json.dumps({"key_id": key_id, "secret": secret})))
    db.conn.execute("ALTER SERVER lake RENAME TO lake2")
    assert db.connect(lake).execute(READ).fetchone() == (10,)
    assert db.conn.execute(READ).fetchone() == (10,)
    # What the reader holds comes from its own mapping, re-bound to the new name.
    rows = {r[0]: r[1] for r in db.connect(lake).execute("SELECT name, storage FROM duckdb.secrets()")}
    assert rows == {"lake2": "memory"}


def test_a_role_may_not_set_another_roles_mapping_with_a_key(db, s3, lake, keyfile):
    other = db.role("other")
    c = db.connect(lake)
    with pytest.raises(psycopg.Error) as e:
        c.execute(SET, ("lake", other, json.dumps({"secret": "CANARY-enc-other"})))
    assert e.value.sqlstate == "42501"
    assert_clean_error(e.value, "CANARY-enc-other")


def test_dump_restore_with_and_without_the_key(db, s3, lake, keyfile, cluster):
    key_id, secret = fresh_key(s3)
    db.conn.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    tmp = localenv.scratch_dir("duckdb_secrets_dump.")
    dump = os.path.join(tmp, "d.dump")
    target = "enc_restored"
    try:
        subprocess.run([f"{localenv.PG_BIN}/pg_dump", "-Fc", "-f", dump, cluster.dsn(db.dbname)], check=True)
        with open(dump, "rb") as f:
            assert secret.encode() not in f.read()
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {target}")
            admin.execute(f"CREATE DATABASE {target}")
        subprocess.run([f"{localenv.PG_BIN}/pg_restore", "-d", cluster.dsn(target), dump],
                       check=True, capture_output=True)
        with psycopg.connect(cluster.dsn(target), autocommit=True) as c:
            assert c.execute(READ).fetchone() == (10,)
        # The same dump where the key file is not configured: restored, with the clear warning.
        with file_setting(db.conn, "duckdb.encryption_key_file", None):
            with psycopg.connect(cluster.dsn(target), autocommit=True) as c:
                notices = []
                c.add_notice_handler(lambda d: notices.append(d.message_primary))
                rows = {r[0]: r[1] for r in c.execute("SELECT name, storage FROM duckdb.secrets()")}
                assert rows["lake"] == "skipped"
                assert [n for n in notices if "duckdb.encryption_key_file is not set" in n]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")


def test_a_refused_helper_call_leaves_no_value_in_the_log(db, log_since):
    """Literal arguments of a refused helper call: the error is logged, the statement is not."""
    for sql in ("SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'k', secret := 'CANARY-enc-helper1', "
                "use_ssl := 'maybe')",
                "SELECT duckdb.create_simple_secret(type := 'nope', key_id := 'k', secret := 'CANARY-enc-helper2')",
                "SELECT duckdb.create_azure_secret('AccountName=a;AccountKey=CANARY-enc-helper3', NULL)",
                "SELECT duckdb.set_user_mapping('no_such_server', 'PUBLIC', "
                "'{\"secret\": \"CANARY-enc-helper4\"}')"):
        with pytest.raises(psycopg.Error) as e:
            db.conn.execute(sql)
            pytest.fail(f"accepted: {sql[:40]}")
        assert_clean_error(e.value, "CANARY")
    log = log_since()
    assert "CANARY-enc-helper" not in log
    assert "ERROR:" in log
    # The session's setting is as before.
    assert db.conn.execute("SHOW log_min_error_statement").fetchone() == ("error",)


@pytest.mark.pgaudit
def test_with_pgaudit_logging_everything_the_safe_paths_leave_no_value(s3, tmp_path_factory):
    """pgaudit (pgaudit.log = 'all', its default log_parameter off) on a cluster of its
    own, with a key file: values given by set_user_mapping and create_simple_secret
    reach no log line; a plain DDL carrying one gets the once-per-session NOTICE."""
    kf = KeyFile()
    kf.write(KEY1)
    base = localenv.scratch_dir("duckdb_secrets_pgaudit.")
    cluster = localenv.PgCluster(os.path.join(base, "pg"), settings={
        "shared_preload_libraries": "pg_stat_statements,pgaudit", "pgaudit.log": "all",
        "duckdb.encryption_key_file": kf.path})
    cluster.start()
    try:
        key_id, secret = fresh_key(s3)
        with psycopg.connect(cluster.dsn(), autocommit=True) as c:
            c.execute("CREATE EXTENSION pgaudit")
            c.execute("CREATE EXTENSION duckdb_secrets CASCADE")
            c.execute(s3_server_sql("lake", s3, scope="s3://bucket"))
        with psycopg.connect(cluster.dsn(), autocommit=True) as c:
            notices = []
            c.add_notice_handler(lambda d: notices.append(d.message_primary))
            c.execute(SET, ("lake", "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
            assert c.execute(READ).fetchone() == (10,)
            c.execute(SET, ("lake", "PUBLIC", json.dumps({"secret": secret})))      # an ALTER too
            c.execute("SELECT duckdb.create_simple_secret(type := 'S3', key_id := %s, secret := %s, "
                      "scope := 's3://elsewhere')", (key_id, secret))
            # The safe paths got no warning; the first plain DDL does.
            assert not [n for n in notices if "this statement's text" in n]
            c.execute(s3_server_sql("plain", s3, scope="s3://bucket/x"))
            assert [n for n in notices if "this statement's text" in n]
            c.execute("CHECKPOINT")
        log = cluster.read_log()
        assert "AUDIT: SESSION" in log                   # pgaudit did log the statements ...
        assert secret not in log                         # ... without the value
        assert grep_tree(cluster.data, secret) == []
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
        kf.remove()


def test_options_that_may_carry_credentials_are_encrypted_in_a_mapping(db, keyfile):
    db.conn.execute("CREATE SERVER h TYPE 'http' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 'https://127.0.0.1:9/')")
    db.conn.execute(SET, ("h", "CURRENT_USER", json.dumps({"extra_http_headers": "Authorization=Bearer CANARY-enc-h"})))
    assert umoptions(db, "h", "postgres")["extra_http_headers"].startswith(SEALED)
    shown = db.conn.execute("SELECT secret_string FROM duckdb.secrets() WHERE name = 'h'").fetchone()[0]
    assert "Authorization=redacted" in shown and "CANARY-enc-h" not in shown


def test_a_superuser_is_told_who_else_can_read_the_key_file(db, keyfile):
    """Issue 31 item 5: members of the file roles read the key file with COPY; a
    superuser's duckdb.secrets() and duckdb.engine() name them in one WARNING."""
    reader = db.role("filereader")
    db.conn.execute(f'GRANT pg_read_server_files TO "{reader}"')
    try:
        for sql in ("SELECT * FROM duckdb.secrets()", "SELECT * FROM duckdb.engine()"):
            warnings = []
            conn = db.connect()
            conn.add_notice_handler(lambda d, said=warnings: said.append(d.message_primary)
                                    if d.severity == "WARNING" else None)
            conn.execute(sql).fetchall()
            said = [w for w in warnings if "can read duckdb.encryption_key_file" in w]
            assert len(said) == 1 and reader in said[0], warnings
        # a role that is not a superuser is not told (nor shown who holds what)
        other = db.role("plain")
        warnings = []
        conn = db.connect(other)
        conn.add_notice_handler(lambda d: warnings.append(d.message_primary))
        conn.execute("SELECT * FROM duckdb.secrets()").fetchall()
        assert not [w for w in warnings if "encryption_key_file" in w]
    finally:
        db.conn.execute(f'DROP ROLE "{reader}"')
