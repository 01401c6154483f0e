"""Secrets that never enter PostgreSQL: user mappings that name a source
(AWS Secrets Manager, SSM Parameter Store, a directory of files) instead of
holding values. Against moto (signatures and IAM checked), with every request
the backends make to the source counted by a proxy in front of it."""

import json
import os
import subprocess
import uuid

import psycopg
import pytest

import localenv
from conftest import _SECRETS_TO_WATCH, advance_clock, assert_clean_error, s3_server_sql

PARQUET = "s3://bucket/data/numbers.parquet"
READ = (f"SELECT * FROM duckdb.query($$ SELECT count(*), sum(n) FROM read_parquet('{PARQUET}') $$) "
        "AS t(c bigint, s numeric)")
SM_ACTIONS = ("GetSecretValue", "BatchGetSecretValue")


class Aws:
    """moto behind a counting proxy, and IAM users of its own whose keys the tests rotate."""

    def __init__(self, s3):
        self.s3 = s3
        self.proxy = localenv.CountingProxy(s3.port)
        self.iam = s3.client("iam")
        self.policy = next(p["Arn"] for p in self.iam.list_policies(Scope="Local")["Policies"]
                           if p["PolicyName"] == "s3-all")
        self.users = {}         # key id -> its IAM user (two keys at most per user)
        self.sm = s3.client("secretsmanager")
        self.ssm = s3.client("ssm")

    def new_key(self):
        """The keys of a new IAM user that may read the bucket."""
        user = f"sources-{uuid.uuid4().hex[:8]}"
        self.iam.create_user(UserName=user)
        self.iam.attach_user_policy(UserName=user, PolicyArn=self.policy)
        key = self.iam.create_access_key(UserName=user)["AccessKey"]
        _SECRETS_TO_WATCH.append(key["SecretAccessKey"])
        self.users[key["AccessKeyId"]] = user
        return key["AccessKeyId"], key["SecretAccessKey"]

    def delete_key(self, key_id):
        self.iam.delete_access_key(UserName=self.users[key_id], AccessKeyId=key_id)

    def keyed_secret(self, prefix="prod/analytics/"):
        """(key id, secret, the id of a new secret holding them as JSON)."""
        key_id, secret = self.new_key()
        return key_id, secret, self.secret({"key_id": key_id, "secret": secret}, prefix)

    def secret(self, value, prefix="prod/analytics/"):
        """A new Secrets Manager secret holding value (a dict: as JSON); its id."""
        sid = f"{prefix}{uuid.uuid4().hex[:8]}"
        self.sm.create_secret(Name=sid, SecretString=json.dumps(value) if isinstance(value, dict) else value)
        return sid


@pytest.fixture(scope="module")
def aws(s3):
    a = Aws(s3)
    yield a
    a.proxy.close()


def vault_sql(aws, name="vault", allowed="prod/analytics/*", extra=""):
    return (f"CREATE SERVER {name} TYPE 'aws_secrets_manager' FOREIGN DATA WRAPPER duckdb "
            f"OPTIONS (region 'us-east-1', endpoint '{aws.proxy.url}', allowed_ids '{allowed}'{extra})")


def setup(db, aws, source_type="aws_secrets_manager", extra=""):
    """Servers vault (a source, reached with moto's set-up keys) and lake (local S3),
    and a reader role with USAGE on both and the query functions."""
    db.conn.execute(vault_sql(aws, extra=extra).replace("aws_secrets_manager", source_type))
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER vault "
                    f"OPTIONS (key_id '{aws.s3.key_id}', secret '{aws.s3.secret}')")
    db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
    reader = db.role("reader")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER lake, vault TO "{reader}"; GRANT duckdb_query TO "{reader}"')
    return reader


def refer(db, role, sid, server="lake", source="vault", extra=""):
    role = role if role.upper() in ("CURRENT_USER", "PUBLIC") else f'"{role}"'
    db.conn.execute(f"CREATE USER MAPPING FOR {role} SERVER {server} "
                    f"OPTIONS (source '{source}', source_id '{sid}'{extra})")


def reading(db, aws, extra=""):
    """A reader whose mapping of lake names a new secret of vault, and its session,
    which has read through it: (session, reader, key id, secret, secret id)."""
    key_id, secret, sid = aws.keyed_secret()
    reader = setup(db, aws, extra=extra)
    refer(db, reader, sid)
    conn = db.connect(reader)
    assert conn.execute(READ).fetchone() == (10, 45)
    return conn, reader, key_id, secret, sid


def skipped(conn, server="lake"):
    rows = conn.execute("SELECT storage, secret_string FROM duckdb.secrets() WHERE server = %s OR name = %s",
                        (server, server)).fetchall()
    return [why for storage, why in rows if storage == "skipped"]


def test_read_s3_with_a_key_from_secrets_manager(db, aws):
    key_id, secret, sid = aws.keyed_secret()
    reader = setup(db, aws)
    before = aws.proxy.count()
    refer(db, reader, sid)
    assert aws.proxy.count() == before, "the DDL fetched nothing"
    conn = db.connect(reader)
    assert conn.execute(READ).fetchone() == (10, 45)
    assert aws.proxy.count(*SM_ACTIONS) - before == 1
    assert conn.execute(READ).fetchone() == (10, 45)
    assert aws.proxy.count(*SM_ACTIONS) - before == 1, "within ttl: no second request"
    # the value is in no catalog row: the mapping holds the reference only
    options = db.conn.execute("SELECT umoptions::text FROM pg_user_mapping").fetchall()
    assert not any(secret in str(o) for o in options)
    listed = conn.execute("SELECT secret_string FROM duckdb.secrets() WHERE server = 'lake'").fetchone()[0]
    assert secret not in listed and key_id in listed


def test_rotation_reaches_running_sessions_after_ttl(db, aws):
    conn, reader, old_id, old_secret, sid = reading(db, aws, extra=", ttl '5min'")
    su = db.connect()                   # the clock is moved by a superuser, in its own backend
    su.execute(f'SET ROLE "{reader}"')
    assert su.execute(READ).fetchone() == (10, 45)
    new_id, new_secret = aws.new_key()
    aws.sm.put_secret_value(SecretId=sid, SecretString=json.dumps({"key_id": new_id, "secret": new_secret}))
    aws.delete_key(old_id)
    assert db.connect(reader).execute(READ).fetchone() == (10, 45), "a new session fetches the new value"
    # the running session: its ttl passes, with no DDL
    su.execute("RESET ROLE")
    before = aws.proxy.count(*SM_ACTIONS)
    advance_clock(su, 301)
    su.execute(f'SET ROLE "{reader}"')
    assert su.execute(READ).fetchone() == (10, 45)
    assert aws.proxy.count(*SM_ACTIONS) == before + 1
    del conn


def test_a_refused_credential_makes_the_next_query_fetch_again(db, aws):
    conn, reader, old_id, old_secret, sid = reading(db, aws, extra=", ttl '1h'")
    new_id, new_secret = aws.new_key()
    aws.sm.put_secret_value(SecretId=sid, SecretString=json.dumps({"key_id": new_id, "secret": new_secret}))
    aws.delete_key(old_id)
    with pytest.raises(psycopg.Error) as e:
        conn.execute(READ)              # the engine still holds the deleted key
    assert_clean_error(e.value, old_secret, new_secret)
    assert "the next query fetches the current value" in e.value.diag.message_hint
    before = aws.proxy.count(*SM_ACTIONS)
    assert conn.execute(READ).fetchone() == (10, 45), "fetched again at once, not after the hour"
    assert aws.proxy.count(*SM_ACTIONS) == before + 1


def test_refresh_secrets_fetches_now(db, aws):
    conn, reader, key_id, secret, sid = reading(db, aws)
    before = aws.proxy.count(*SM_ACTIONS)
    assert conn.execute("SELECT duckdb.refresh_secrets()").fetchone() == (1,)
    assert aws.proxy.count(*SM_ACTIONS) == before + 1
    assert conn.execute(READ).fetchone() == (10, 45)


def test_many_ids_are_fetched_in_batches(db, aws):
    key_id, secret = aws.new_key()
    reader = setup(db, aws)
    for i in range(3):
        sid = aws.secret({"key_id": key_id, "secret": secret})
        db.conn.execute(s3_server_sql(f"lake{i}", aws.s3, scope=f"s3://bucket/p{i}/"))
        db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER lake{i} TO "{reader}"')
        refer(db, reader, sid, server=f"lake{i}")
    before = aws.proxy.count()
    conn = db.connect(reader)
    held = conn.execute("SELECT server FROM duckdb.secrets() WHERE storage = 'memory'").fetchall()
    assert {"lake0", "lake1", "lake2"} <= {r[0] for r in held}
    assert aws.proxy.hits[before:] == ["BatchGetSecretValue"]


@pytest.mark.parametrize("case", ["outside allowed_ids", "no usage", "not an administrator's"])
def test_refused_at_ddl_with_no_request(db, aws, case):
    key_id, secret = aws.new_key()
    sid = aws.secret({"key_id": key_id, "secret": secret},
                     prefix="other/" if case == "outside allowed_ids" else "prod/analytics/")
    reader = setup(db, aws)
    if case == "no usage":
        db.conn.execute(f'REVOKE USAGE ON FOREIGN SERVER vault FROM "{reader}"')
    before = aws.proxy.count()
    if case == "not an administrator's":
        owner = db.role("owner")
        db.conn.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{owner}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            db.connect(owner).execute(vault_sql(aws, name="vault2"))
        assert "not an administrator" in e.value.diag.message_primary
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.conn.execute(f'ALTER SERVER vault OWNER TO "{owner}"')
    else:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            refer(db, reader, sid)
        assert_clean_error(e.value, secret)
        if case == "no usage":
            assert "GRANT USAGE ON FOREIGN SERVER vault" in e.value.diag.message_hint
        else:
            assert "allowed_ids" in e.value.diag.message_primary
        # the role itself cannot either (its own mapping)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.connect(reader).execute(f"SELECT duckdb.set_user_mapping('lake', current_user, "
                                       f"'{{\"source\": \"vault\", \"source_id\": \"{sid}\"}}')")
    assert aws.proxy.count() == before


def test_usage_revoked_after_the_ddl_skips_at_the_next_sync(db, aws):
    conn, reader, key_id, secret, sid = reading(db, aws)
    db.conn.execute(f'REVOKE USAGE ON FOREIGN SERVER vault FROM "{reader}"')
    before = aws.proxy.count()
    why = skipped(conn)
    assert why and "no USAGE" in why[0], why
    with pytest.raises(psycopg.Error):
        conn.execute(READ)
    # allowed_ids narrowed by the administrator: the same
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER vault TO "{reader}"')
    db.conn.execute("ALTER SERVER vault OPTIONS (SET allowed_ids 'prod/other/*')")
    why = skipped(conn)
    assert why and "allowed_ids" in why[0], why
    assert aws.proxy.count() == before, "a check that fails fetches nothing"


def test_a_public_mapping_is_checked_for_each_role(db, aws):
    key_id, secret, sid = aws.keyed_secret()
    reader = setup(db, aws)
    other = db.role("other")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER lake TO "{other}"; GRANT duckdb_query TO "{other}"')
    refer(db, "PUBLIC", sid)
    assert db.connect(reader).execute(READ).fetchone() == (10, 45)
    why = skipped(db.connect(other))
    assert why and "no USAGE" in why[0]


def test_ssm_secure_string_with_source_option(db, aws):
    key_id, secret = aws.new_key()
    name = f"/prod/analytics/{uuid.uuid4().hex[:8]}"
    aws.ssm.put_parameter(Name=name, Value=secret, Type="SecureString")
    db.conn.execute(vault_sql(aws, name="params", allowed="/prod/analytics/*").replace(
        "aws_secrets_manager", "aws_ssm_parameter"))
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER params "
                    f"OPTIONS (key_id '{aws.s3.key_id}', secret '{aws.s3.secret}')")
    db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
    before = aws.proxy.count()
    db.conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (key_id '{key_id}', "
                    f"source 'params', source_id '{name}', source_option 'secret')")
    assert db.conn.execute(READ).fetchone() == (10, 45)
    assert aws.proxy.hits[before:] == ["GetParameters"]


def test_bad_values_are_skipped_naming_the_option_never_the_value(db, aws):
    key_id, secret = aws.new_key()
    reader = setup(db, aws)
    conn = db.connect(reader)
    cases = [({"key_id": key_id, "secret": secret, "endpoint": "127.0.0.1:1"}, 'option "endpoint"'),
             ({"key_id": key_id, "secret": secret, "no_such": "x"}, 'invalid option "no_such"'),
             ({"key_id": key_id, "secret": secret, "use_ssl": "maybe"}, 'option "use_ssl"'),
             (secret, "not a JSON object")]
    for value, said in cases:
        sid = aws.secret(value)
        db.conn.execute("DROP USER MAPPING IF EXISTS FOR \"%s\" SERVER lake" % reader)
        refer(db, reader, sid)
        with conn.cursor() as cur:
            why = skipped(cur)
        assert why and said in why[0], (why, said)
        assert secret not in why[0]


def test_ddl_refusals(db, aws):
    reader = setup(db, aws)
    cases = [
        ("OPTIONS (source 'vault')", "source_id"),
        ("OPTIONS (source 'nope', source_id 'prod/analytics/x')", "does not exist"),
        ("OPTIONS (source 'lake', source_id 'prod/analytics/x')", "is not a source"),
        ("OPTIONS (source 'vault', source_id 'prod/analytics/x', source_option 'endpoint')", "cannot come from"),
        ("OPTIONS (source 'vault', source_id 'prod/analytics/x', source_option 'nope')", "not a sensitive option"),
        ("OPTIONS (source 'vault', source_id 'prod/analytics/x', source_option 'password')", "is not an option"),
    ]
    for options, said in cases:
        with pytest.raises(psycopg.Error) as e:
            db.conn.execute(f'CREATE USER MAPPING FOR "{reader}" SERVER lake {options}')
        assert said in str(e.value), (options, str(e.value))
    for options, said in [("OPTIONS (region 'x')", 'requires option "allowed_ids"'),
                          ("OPTIONS (allowed_ids 'x', ttl 'soon')", "requires a duration"),
                          ("OPTIONS (allowed_ids 'x', endpoint 'ftp://x')", "must be a URL"),
                          ("OPTIONS (allowed_ids 'x', scope 's3://b')", 'invalid option "scope"')]:
        with pytest.raises(psycopg.Error) as e:
            db.conn.execute(f"CREATE SERVER v2 TYPE 'aws_ssm_parameter' FOREIGN DATA WRAPPER duckdb {options}")
        assert said in str(e.value), (options, str(e.value))
    # a role's own mapping cannot reach the source with the server's identity
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.conn.execute(f"CREATE USER MAPPING FOR \"{reader}\" SERVER vault OPTIONS (provider 'credential_chain')")


def test_unreachable_source_keeps_the_last_value_for_max_stale(db, aws, log_since):
    key_id, secret, sid = aws.keyed_secret()
    db.conn.execute(vault_sql(aws, extra=", ttl '1min', max_stale '10min'"))
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER vault "
                    f"OPTIONS (key_id '{aws.s3.key_id}', secret '{aws.s3.secret}')")
    db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
    refer(db, "CURRENT_USER", sid)
    conn = db.connect()
    assert conn.execute(READ).fetchone() == (10, 45)
    aws.proxy.down = True
    try:
        advance_clock(conn, 120)        # ttl passed: the source cannot be reached, the last value is kept
        assert conn.execute(READ).fetchone() == (10, 45)
        warnings = []
        conn.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
        advance_clock(conn, 600)        # max_stale passed: skipped, with one WARNING
        assert skipped(conn)
        assert skipped(conn)
        with pytest.raises(psycopg.errors.SqlclientUnableToEstablishSqlconnection) as e:
            conn.execute(READ)          # 08001: the source is down, not a permission problem
        assert "refresh_secrets" in e.value.diag.message_hint
        advance_clock(conn, 120)
        skipped(conn)
        said = [w for w in warnings if "lake" in w]
        assert len(said) == 1, warnings
        assert "cannot reach" in said[0]
    finally:
        aws.proxy.down = False
    advance_clock(conn, 120)
    assert conn.execute(READ).fetchone() == (10, 45), "back when the source is"


def _k8s_volume(base, files):
    """A Kubernetes-style secret volume: files in a timestamped directory,
    ..data pointing at it, and each name a link through ..data. Returns a swap
    function that rotates to new contents the way the kubelet does."""
    os.makedirs(base, exist_ok=True)

    def write(gen, contents):
        d = os.path.join(base, f"..{gen}")
        os.mkdir(d)
        for name, text in contents.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        tmp = os.path.join(base, "..data_tmp")
        os.symlink(f"..{gen}", tmp)
        os.rename(tmp, os.path.join(base, "..data"))       # atomic swap
        for name in contents:
            link = os.path.join(base, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)
        localenv._chown_postgres(base)

    write("2026_01", files)
    return write


def test_file_directory_rotated_the_kubernetes_way(db, aws, tmp_path):
    base = localenv.scratch_dir("ds_k8s_")
    key_id, secret = aws.new_key()
    rotate = _k8s_volume(base, {"s3.json": json.dumps({"key_id": key_id, "secret": secret})})
    outside = os.path.join(localenv.scratch_dir("ds_outside_"), "x.json")
    with open(outside, "w") as f:
        f.write(json.dumps({"key_id": key_id, "secret": secret}))
    localenv._chown_postgres(os.path.dirname(outside))
    os.symlink(outside, os.path.join(base, "evil.json"))
    db.conn.execute(f"CREATE SERVER files TYPE 'file_directory' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (directory '{base}', allowed_ids '*', ttl '30s')")
    db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
    db.conn.execute(s3_server_sql("lake2", aws.s3, scope="s3://bucket/other/"))
    refer(db, "CURRENT_USER", "s3.json", source="files")
    refer(db, "CURRENT_USER", "evil.json", server="lake2", source="files")
    conn = db.connect()
    assert conn.execute(READ).fetchone() == (10, 45)
    why = skipped(conn, "lake2")
    assert why and "outside the directory" in why[0]
    new_id, new_secret = aws.new_key()
    rotate("2026_02", {"s3.json": json.dumps({"key_id": new_id, "secret": new_secret})})
    aws.delete_key(key_id)
    advance_clock(conn, 31)
    assert conn.execute(READ).fetchone() == (10, 45)
    # only superusers' file_directory servers count
    owner = db.role("owner")
    db.conn.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{owner}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.connect(owner).execute(f"CREATE SERVER f2 TYPE 'file_directory' FOREIGN DATA WRAPPER duckdb "
                                  f"OPTIONS (directory '{base}', allowed_ids '*')")


def test_values_never_stored(db, aws, cluster, tmp_path):
    """No catalog row, dump, data-directory file or log line holds a fetched value."""
    conn, reader, key_id, secret, sid = reading(db, aws)
    conn.execute("SELECT * FROM duckdb.secrets()").fetchall()
    db.conn.execute("CHECKPOINT")
    found = subprocess.run(["grep", "-rlaF", secret, cluster.data], capture_output=True, text=True)
    assert found.stdout == "", "a fetched value is in the data directory"
    dump = subprocess.run([os.path.join(localenv.PG_BIN, "pg_dump"), "-h", cluster.host, "-p", str(cluster.port),
                           "-U", "postgres", db.dbname], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert sid in dump.stdout and secret not in dump.stdout


def test_a_dump_restores_with_references_and_no_values(db, aws, cluster):
    """pg_dump puts lake's mappings before the server vault they name: the restore
    (check_function_bodies off) takes them, and reads work in the copy."""
    key_id, secret, sid = aws.keyed_secret()
    db.conn.execute(vault_sql(aws, name="zvault"))
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER zvault "
                    f"OPTIONS (key_id '{aws.s3.key_id}', secret '{aws.s3.secret}')")
    db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
    refer(db, "PUBLIC", sid, source="zvault")
    dump = subprocess.run([os.path.join(localenv.PG_BIN, "pg_dump"), "-h", cluster.host, "-p", str(cluster.port),
                           "-U", "postgres", db.dbname], capture_output=True, text=True, check=True).stdout
    assert dump.index("SERVER lake") < dump.index("SERVER zvault") and secret not in dump
    target = f"{db.dbname}_copy"
    db.conn.execute(f"DROP DATABASE IF EXISTS {target}")
    db.conn.execute(f"CREATE DATABASE {target}")
    try:
        restore = subprocess.run([os.path.join(localenv.PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                  "-h", cluster.host, "-p", str(cluster.port), "-U", "postgres", "-d", target],
                                 input=dump, capture_output=True, text=True)
        assert restore.returncode == 0, restore.stderr
        with psycopg.connect(cluster.dsn(target), autocommit=True) as c:
            assert c.execute(READ).fetchone() == (10, 45)
    finally:
        db.conn.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")


def test_the_server_stays_manageable_when_a_reference_stops_passing(db, aws):
    key_id, secret, sid = aws.keyed_secret()
    reader = setup(db, aws)
    refer(db, reader, sid)
    db.conn.execute(f'REVOKE USAGE ON FOREIGN SERVER vault FROM "{reader}"')
    warnings = []
    db.conn.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
    db.conn.execute("ALTER SERVER lake OPTIONS (SET region 'us-east-1')")
    assert any("will be skipped" in w and "no USAGE" in w for w in warnings), warnings


def test_a_source_backed_secret_is_not_written_to_a_secret_table(db, aws):
    key_id, secret, sid = aws.keyed_secret()
    reader = setup(db, aws)
    refer(db, "PUBLIC", sid)
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT duckdb.store_table_secret('lake', include_sensitive => true)")
    assert_clean_error(e.value, secret)
    assert "source" in str(e.value)
    del reader


@pytest.mark.parametrize("option", ["key_id", "region", "KEY_ID"])
def test_a_plain_value_never_fills_an_option_that_is_shown(db, aws, option):
    """Red team: source_option 'key_id' (or region) showed an SSM secret, or a whole JSON
    secret, in clear in duckdb.secrets() and in DuckDB's errors."""
    key_id, secret, sid = aws.keyed_secret()
    reader = setup(db, aws)
    conn = db.connect(reader)
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'vault', "
                     f"source_id '{sid}', source_option '{option}')")
    assert "not a sensitive option" in e.value.diag.message_primary
    with pytest.raises(psycopg.Error):
        conn.execute("SELECT duckdb.set_user_mapping('lake', current_user, %s)",
                     (json.dumps({"source": "vault", "source_id": sid, "source_option": option}),))
    # written while DDL checks wait (check_function_bodies off, as a restore): the sync refuses it
    conn.execute("SET check_function_bodies = off")
    with pytest.raises(psycopg.Error):
        conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (source 'vault', "
                     f"source_id '{sid}', source_option '{option}')")
    assert secret not in str(conn.execute("SELECT * FROM duckdb.secrets()").fetchall())


def test_a_file_id_cannot_climb_out_of_allowed_ids(db, aws):
    """Red team: allowed_ids 'lake-*' let 'lake-/../admin.secret' read another file of the directory."""
    base = localenv.scratch_dir("ds_files_")
    _, secret = aws.new_key()
    for name, text in (("lake-reader", secret), ("admin.secret", secret)):
        with open(os.path.join(base, name), "w") as f:
            f.write(text)
    localenv._chown_postgres(base)
    db.conn.execute(f"CREATE SERVER files TYPE 'file_directory' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (directory '{base}', allowed_ids 'lake-*')")
    db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
    reader = db.role("reader")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER lake, files TO "{reader}"; GRANT duckdb_query TO "{reader}"')
    conn = db.connect(reader)
    for sid in ("lake-/../admin.secret", "lake-reader/../admin.secret", "lake-x/./../admin.secret", "lake-//x"):
        mapping = (f"CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (key_id 'k', source 'files', "
                   f"source_id '{sid}', source_option 'secret')")
        with pytest.raises(psycopg.Error) as e:
            conn.execute(mapping)
        assert "relative path" in e.value.diag.message_primary, sid
        conn.execute("SET check_function_bodies = off")     # the DDL's checks wait: the sync's do not
        conn.execute(mapping)
        why = skipped(conn)
        assert why and "relative path" in why[0], why
        conn.execute("RESET check_function_bodies")
        conn.execute("DROP USER MAPPING FOR CURRENT_USER SERVER lake")


def test_refresh_and_errors_of_set_user_mapping(db, aws):
    """Red team: the first refresh_secrets() of a session said 0; a refused set_user_mapping
    masked the source's name; a loop of refresh_secrets() fetched at every call."""
    key_id, secret, sid = aws.keyed_secret()
    reader = setup(db, aws)
    refer(db, reader, sid)
    conn = db.connect(reader)
    before = aws.proxy.count(*SM_ACTIONS)
    assert conn.execute("SELECT duckdb.refresh_secrets()").fetchone() == (1,)
    assert conn.execute("SELECT duckdb.refresh_secrets()").fetchone() == (0,), "not again within 10 s"
    assert aws.proxy.count(*SM_ACTIONS) == before + 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        conn.execute("SELECT duckdb.set_user_mapping('lake', current_user, %s)",
                     (json.dumps({"source": "vault", "source_id": "other/x"}),))
    assert 'source server "vault"' in e.value.diag.message_primary


def test_a_hung_source_costs_one_query_seconds_not_every_query(db, aws):
    """Walk-through: a source that accepted connections and never answered stalled
    every query ~15 s. Now: one try per 30 s, each within a few seconds and within
    statement_timeout."""
    import socket
    import time
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)                     # connections complete; nothing is ever answered
    try:
        key_id, secret, sid = aws.keyed_secret()
        db.conn.execute(f"CREATE SERVER vault TYPE 'aws_secrets_manager' FOREIGN DATA WRAPPER duckdb OPTIONS "
                        f"(endpoint 'http://127.0.0.1:{hole.getsockname()[1]}', allowed_ids 'prod/*', ttl '5s')")
        db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER vault "
                        f"OPTIONS (key_id '{aws.s3.key_id}', secret '{aws.s3.secret}')")
        db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
        refer(db, "CURRENT_USER", sid)
        conn = db.connect()
        conn.execute("SET statement_timeout = '1500ms'")
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):        # 57014, as any statement_timeout
            conn.execute(READ)
        assert time.monotonic() - t0 < 3, "bounded by statement_timeout"
        conn.execute("RESET statement_timeout")
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.SqlclientUnableToEstablishSqlconnection) as e:
            conn.execute(READ)
        assert time.monotonic() - t0 < 6.5
        assert sid in e.value.diag.message_detail and "cannot reach" in e.value.diag.message_detail
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error):
            conn.execute(READ)
        assert time.monotonic() - t0 < 1, "not tried again within 30 s"
    finally:
        hole.close()


def test_what_an_administrator_is_told(db, aws):
    """Walk-through: a credential chain that finds nothing, a narrowed allowed_ids, an id
    that does not exist, a typo in a value's key, a rotation's first failed query."""
    warnings = []
    db.conn.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
    db.conn.execute(vault_sql(aws, extra=", ttl '5m'"))
    db.conn.execute("CREATE USER MAPPING FOR PUBLIC SERVER vault OPTIONS (provider 'credential_chain')")
    assert any("no AWS credentials found" in w for w in warnings), warnings
    db.conn.execute("DROP USER MAPPING FOR PUBLIC SERVER vault")
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER vault "
                    f"OPTIONS (key_id '{aws.s3.key_id}', secret '{aws.s3.secret}')")
    db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
    key_id, secret = aws.new_key()
    typo = aws.secret({"key_id": key_id, "secert": secret})
    refer(db, "CURRENT_USER", typo)
    why = skipped(db.connect())
    assert why and f'source_id "{typo}"' in why[0] and 'invalid option "secert"' in why[0] and '"secret"' in why[0]
    assert secret not in why[0]
    db.conn.execute("DROP USER MAPPING FOR CURRENT_USER SERVER lake")
    refer(db, "CURRENT_USER", "prod/analytics/nope")
    why = skipped(db.connect())
    assert why and 'source_id "prod/analytics/nope"' in why[0] and "ResourceNotFoundException" in why[0]
    warnings.clear()
    db.conn.execute("ALTER SERVER vault OPTIONS (SET allowed_ids 'prod/other/*')")
    assert any("outside the allowed_ids" in w for w in warnings), warnings


def test_a_trickling_source_is_bounded_too(db, aws):
    """Red team 2: a source answering one byte a second never tripped a read
    timeout (240 s for one query)."""
    import socket
    import threading
    import time
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            server.settimeout(0.2)
            try:
                c, _ = server.accept()
            except OSError:
                continue
            c.recv(65536)
            body = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"{" * 200
            for byte in body:
                if stop.wait(0.5):
                    break
                try:
                    c.send(bytes([byte]))
                except OSError:
                    break
            c.close()

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        _, secret, sid = aws.keyed_secret()
        db.conn.execute(f"CREATE SERVER vault TYPE 'aws_secrets_manager' FOREIGN DATA WRAPPER duckdb OPTIONS "
                        f"(endpoint 'http://127.0.0.1:{server.getsockname()[1]}', allowed_ids 'prod/*')")
        db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER vault "
                        f"OPTIONS (key_id '{aws.s3.key_id}', secret '{aws.s3.secret}')")
        db.conn.execute(s3_server_sql("lake", aws.s3, scope="s3://bucket"))
        refer(db, "CURRENT_USER", sid)
        conn = db.connect()
        t0 = time.monotonic()
        assert conn.execute("SELECT * FROM duckdb.query('SELECT 42') AS t(a int)").fetchone() == (42,)
        assert time.monotonic() - t0 < 8
        assert "no answer within" in skipped(conn)[0]
    finally:
        stop.set()
        t.join(5)
        server.close()


def test_hostile_values_are_skipped_alone(db, aws):
    """Red team 2: a lone surrogate (valid JSON, not UTF-8) broke every engine use of
    the role; a Bearer header value (or a header named like a password) showed in
    duckdb.secrets()."""
    key_id, secret = aws.new_key()
    reader = setup(db, aws)
    conn = db.connect(reader)
    bad = aws.secret('{"key_id": "%s", "secret": "x\\ud800y"}' % key_id)
    refer(db, reader, bad)
    assert conn.execute("SELECT * FROM duckdb.query('SELECT 42') AS t(a int)").fetchone() == (42,)
    why = skipped(conn)
    assert why and "UTF-8" in why[0], why
    db.conn.execute(f'DROP USER MAPPING FOR "{reader}" SERVER lake')
    token = "tok-" + uuid.uuid4().hex
    _SECRETS_TO_WATCH.append(token)
    headers = aws.secret({"key_id": key_id, "secret": secret,
                          "extra_http_headers": f"X-Foo=Bearer {token}, X-Pwd={token}2, X-Sig={token}3"})
    refer(db, reader, headers)
    listed = str(conn.execute("SELECT secret_string FROM duckdb.secrets()").fetchall())
    assert token not in listed and "X-Foo=redacted" in listed, listed
    db.conn.execute(f'DROP USER MAPPING FOR "{reader}" SERVER lake')
    db.conn.execute("SELECT duckdb.set_user_mapping('lake', 'PUBLIC', %s)",
                    (json.dumps({"key_id": key_id, "secret": secret, "extra_http_headers": f"X-A=Basic {token}"}),))
    listed = str(conn.execute("SELECT secret_string FROM duckdb.secrets()").fetchall())
    assert token not in listed, listed
