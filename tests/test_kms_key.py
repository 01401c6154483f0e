"""A key file line wrapped by AWS KMS (kms:<key id or ARN>:<base64 CiphertextBlob>):
the backend unwraps it with KMS Decrypt through its AWS credential chain,
once per backend, and keeps the plain key in its memory only.

KMS is moto's (the session's local S3 server, IAM auth on), reached through a
small counting proxy in the test process (KmsProxy): it counts the Decrypt
requests the backends make, can drop or hang them (KMS unreachable), and
answers a Decrypt of a disabled key with KMS's DisabledException, which moto
5.2.5 does not do itself (its Decrypt ignores the key's state; the test
disables the key in moto with DisableKey, the proxy reads the state there).

A cluster of its own: its postmaster has AWS_ENDPOINT_URL_KMS (the proxy), the
access key of an IAM user that may only kms:Decrypt, AWS_REGION and
AWS_EC2_METADATA_DISABLED=true in its environment. No plain key, data key or
S3 secret may reach the server log (checked after each test) or this test's
output (assertions compare derived values: key ids, counts, booleans)."""

import base64
import http.client
import http.server
import json
import os
import shutil
import threading
import time
import uuid

import psycopg
import pytest

import conftest
import localenv
from conftest import READ, assert_clean_error, fresh_database, s3_server_sql
from duckdb_secrets import crypto
from test_encryption import KEY1, KEY2, SEALED, SET, KeyFile, fresh_key, grep_tree

# --- KMS: moto behind a counting proxy ----------------------------------------


class KmsProxy:
    """A loopback HTTP proxy in front of moto's KMS.

    mode: "forward" (default), "drop" (close the connection, no answer: KMS
    unreachable) or "hang" (answer nothing for `hang` seconds). decrypts:
    one entry per Decrypt request that reached it (each attempt counts)."""

    def __init__(self, upstream_port, kms_admin):
        self.mode = "forward"
        self.hang = 30
        self.decrypts = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                if target.endswith(".Decrypt"):
                    proxy.decrypts.append(time.monotonic())
                if proxy.mode == "drop":
                    self.close_connection = True
                    return
                if proxy.mode == "hang":
                    time.sleep(proxy.hang)
                    self.close_connection = True
                    return
                up = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    # The Host header is passed on as it is: moto checks the
                    # signature the client made for the proxy's address.
                    up.request("POST", self.path, body, headers=dict(self.headers.items()))
                    resp = up.getresponse()
                    status, data = resp.status, resp.read()
                    ctype = resp.getheader("Content-Type", "application/x-amz-json-1.1")
                finally:
                    up.close()
                if target.endswith(".Decrypt") and status == 200:
                    state = kms_admin.describe_key(KeyId=json.loads(data)["KeyId"])["KeyMetadata"]["KeyState"]
                    if state != "Enabled":      # what KMS answers (moto 5.2.5 decrypts anyway)
                        status = 400
                        kind = "DisabledException" if state == "Disabled" else "KMSInvalidStateException"
                        data = json.dumps({"__type": kind, "message": f"the key is {state}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _iam_user(iam, name, actions):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="kms", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def _watch(*values):
    """Values no server log (the shared cluster's and ours) may carry."""
    conftest._SECRETS_TO_WATCH.extend(v for v in values if v)


@pytest.fixture(scope="module")
def kms_world(s3):
    suffix = uuid.uuid4().hex[:8]
    iam = s3.client("iam")
    admin = _iam_user(iam, f"kms-admin-{suffix}", ["kms:*"])
    server_user = f"kms-server-{suffix}"
    server = _iam_user(iam, server_user, ["kms:Decrypt"])
    _watch(admin[1], server[1])
    kms = s3.client("kms", *admin)
    proxy = KmsProxy(s3.port, kms)
    kf = KeyFile()
    kf.write(KEY1)
    base = localenv.scratch_dir("duckdb_secrets_kms.")
    cluster = localenv.PgCluster(
        os.path.join(base, "pg"), settings={"duckdb.encryption_key_file": kf.path},
        env={"AWS_ENDPOINT_URL_KMS": proxy.url, "AWS_ACCESS_KEY_ID": server[0], "AWS_SECRET_ACCESS_KEY": server[1],
             "AWS_REGION": s3.region, "AWS_EC2_METADATA_DISABLED": "true"}).start()
    world = {"cluster": cluster, "kms": kms, "proxy": proxy, "keyfile": kf, "iam": iam,
             "server_user": server_user, "n": 0}
    try:
        yield world
    finally:
        cluster.stop()
        log = cluster.read_log()
        proxy.close()
        kf.remove()
        shutil.rmtree(base, ignore_errors=True)
        assert not any(s in log for s in conftest._SECRETS_TO_WATCH), "a watched value is in the server log"
        assert "terminated by signal" not in log


@pytest.fixture
def kw(kms_world):
    """The world, with a fresh database (conn) and the key file back at KEY1;
    afterwards, nothing watched in what the server logged meanwhile."""
    cluster = kms_world["cluster"]
    kms_world["keyfile"].write(KEY1)
    kms_world["proxy"].mode = "forward"
    kms_world["n"] += 1
    start = cluster.log_size()
    conn = fresh_database(cluster, f"kms_{kms_world['n']}")
    kms_world["conn"] = conn
    kms_world["connect"] = lambda: psycopg.connect(cluster.dsn(f"kms_{kms_world['n']}"), autocommit=True)
    yield kms_world
    conn.close()
    log = cluster.read_log(start)
    assert not any(s in log for s in conftest._SECRETS_TO_WATCH), "a watched value is in the server log"


def data_key(kw, alias=None, plain=None):
    """A new KMS key (and alias), a data key under it: (key file line, key id of the plain key).
    plain: wrap this key (KMS Encrypt) rather than generate one."""
    kms = kw["kms"]
    meta = kms.create_key()["KeyMetadata"]
    alias = alias or f"alias/ds-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    if plain is None:
        out = kms.generate_data_key(KeyId=alias, KeySpec="AES_256")
        plain, blob = out["Plaintext"], out["CiphertextBlob"]
    else:
        blob = kms.encrypt(KeyId=alias, Plaintext=plain)["CiphertextBlob"]
    _watch(plain.hex(), base64.b64encode(plain).decode(), base64.urlsafe_b64encode(plain).decode())
    line = f"kms:{alias}:{base64.b64encode(blob).decode()}"
    kw.setdefault("key_ids", {})[line] = meta["KeyId"]
    kw.setdefault("plain", {})[line] = plain
    return line, crypto._key_id(plain)


def kid(key_hex):
    return crypto._key_id(bytes.fromhex(key_hex))


def stored_key_id(conn, server, user="public"):
    """The key id of a mapping's stored secret, or "clear" (never the value itself)."""
    opts = dict(o.split("=", 1) for o in conn.execute(
        "SELECT umoptions FROM pg_user_mappings WHERE srvname = %s AND usename = %s", (server, user)).fetchone()[0])
    value = opts["secret"]
    return value.split(":")[1] if value.startswith(SEALED) else "clear"


def lake(conn, s3, name="lake", scope="s3://bucket"):
    """A server on the local S3 with a fresh access key in its PUBLIC mapping: that key's secret."""
    conn.execute(s3_server_sql(name, s3, scope=scope))
    key_id, secret = fresh_key(s3)
    _watch(secret)
    conn.execute(SET, (name, "PUBLIC", json.dumps({"key_id": key_id, "secret": secret})))
    return secret


def secrets_and_warnings(conn):
    """duckdb.secrets() by name (storage, secret_string) and the WARNINGs that computing it gave."""
    warnings = []
    conn.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity_nonlocalized == "WARNING"
                            else None)
    rows = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT name, storage, secret_string FROM duckdb.secrets()")}
    return rows, warnings


def grep_bytes(root, needle):
    hits = []
    for d, _, files in os.walk(root):
        for f in files:
            try:
                with open(os.path.join(d, f), "rb") as fh:
                    if needle in fh.read():
                        hits.append(f)
            except OSError:
                pass
    return hits


# --- with a cluster -----------------------------------------------------------


@pytest.mark.cluster
def test_kms_line_encrypts_values_and_unwraps_once_per_backend(kw, s3):
    line, line_id = data_key(kw)
    kw["keyfile"].write(line)
    secret = lake(kw["conn"], s3)
    stored = stored_key_id(kw["conn"], "lake")
    assert stored == line_id                      # sealed under the unwrapped data key
    kw["conn"].execute("CHECKPOINT")
    assert grep_tree(kw["cluster"].data, secret) == []
    plain = kw["plain"][line]
    assert grep_tree(kw["cluster"].data, plain.hex()) == []
    assert grep_bytes(kw["cluster"].data, plain) == []

    # A new backend: one Decrypt, however many queries it runs.
    proxy = kw["proxy"]
    before = len(proxy.decrypts)
    with kw["connect"]() as c:
        for _ in range(3):
            assert c.execute(READ).fetchone() == (10,)
        rows, warnings = secrets_and_warnings(c)
        assert rows["lake"][0] == "memory" and warnings == []
        c.execute(SET, ("lake", "PUBLIC", json.dumps({"secret": secret})))     # a DDL: sealed, no new Decrypt
        assert c.execute(READ).fetchone() == (10,)
        first = len(proxy.decrypts) - before
    with kw["connect"]() as c:
        assert c.execute(READ).fetchone() == (10,)
        assert c.execute(READ).fetchone() == (10,)
    second = len(proxy.decrypts) - before - first
    assert (first, second) == (1, 1)


@pytest.mark.cluster
def test_a_disabled_kms_key_skips_its_values_once_and_refuses_new_ones(kw, s3):
    conn = kw["conn"]
    # A value sealed under a plain key, which stays below the kms line.
    lake(conn, s3, "plainsrv", scope="s3://bucket")
    assert stored_key_id(conn, "plainsrv") == kid(KEY1)
    line, line_id = data_key(kw)
    kw["keyfile"].write(line, KEY1)
    lake(conn, s3, "kms_a", scope="s3://bucket/a")
    lake(conn, s3, "kms_b", scope="s3://bucket/b")
    assert stored_key_id(conn, "kms_a") == stored_key_id(conn, "kms_b") == line_id

    kw["kms"].disable_key(KeyId=kw["key_ids"][line])
    with kw["connect"]() as c:
        rows, warnings = secrets_and_warnings(c)
        assert rows["kms_a"][0] == rows["kms_b"][0] == "skipped"
        for name in ("kms_a", "kms_b"):
            why = rows[name][1]
            assert "cannot decrypt" in why and "line 1 of key file" in why and "DisabledException" in why, why
        assert rows["plainsrv"][0] == "memory"          # the plain line below still opens its values
        assert len(warnings) == 1, warnings                 # one per sync, not one per server
        assert "DisabledException" in warnings[0] and "line 1" in warnings[0]
        assert c.execute(READ).fetchone() == (10,)          # through plainsrv
        # The next sync (after a change) says it once again, still once.
        c.execute(s3_server_sql("nothing_sensitive", s3, scope="s3://bucket/n"))
        rows, warnings = secrets_and_warnings(c)
        assert rows["kms_a"][0] == "skipped" and len(warnings) <= 1, warnings

        # New values are never stored in clear: a new mapping, a changed one.
        role = "kms_role"
        c.execute(f"CREATE ROLE {role}")
        for who in (role, "PUBLIC"):
            with pytest.raises(psycopg.Error) as e:
                c.execute(SET, ("kms_a", who, json.dumps({"key_id": "k", "secret": "CANARY-kms-refused"})))
            assert e.value.sqlstate == "F0000" and "cannot encrypt" in e.value.diag.message_primary
            assert "DisabledException" in e.value.diag.message_primary
            assert_clean_error(e.value, "CANARY-kms-refused", *conftest._SECRETS_TO_WATCH)
        assert c.execute("SELECT count(*) FROM pg_user_mappings WHERE srvname = 'kms_a' AND usename = %s",
                         (role,)).fetchone() == (0,)
        assert stored_key_id(c, "kms_a") == line_id
    kw["kms"].enable_key(KeyId=kw["key_ids"][line])
    with kw["connect"]() as c:                             # a new backend: all back
        rows, warnings = secrets_and_warnings(c)
        assert {rows[n][0] for n in ("kms_a", "kms_b", "plainsrv")} == {"memory"} and warnings == []


@pytest.mark.cluster
@pytest.mark.parametrize("failure", ["denied", "unreachable", "hangs"])
def test_kms_failures_skip_in_bounded_time(kw, s3, failure):
    conn = kw["conn"]
    line, line_id = data_key(kw)
    kw["keyfile"].write(line)
    lake(conn, s3)
    iam, user = kw["iam"], kw["server_user"]
    if failure == "denied":
        iam.delete_user_policy(UserName=user, PolicyName="kms")
    else:
        kw["proxy"].mode = "drop" if failure == "unreachable" else "hang"
    try:
        t0 = time.monotonic()
        with kw["connect"]() as c:
            rows, warnings = secrets_and_warnings(c)
            took = time.monotonic() - t0
            why = rows["lake"][1]
            assert rows["lake"][0] == "skipped" and "line 1 of key file" in why
            code = {"denied": "KMS Decrypt failed: HTTP 403", "unreachable": "ConnectionClosedError",
                    "hangs": "ReadTimeoutError"}[failure]
            assert code in why, why
            assert len(warnings) == 1
            with pytest.raises(psycopg.Error) as e:
                c.execute(SET, ("lake", "PUBLIC", json.dumps({"secret": "CANARY-kms-failure"})))
            assert e.value.sqlstate == "F0000"
            assert_clean_error(e.value, "CANARY-kms-failure")
        # connect 3 s, read 5 s, 2 attempts: a dead KMS costs a backend seconds, not minutes.
        assert took < 20, took
        assert stored_key_id(conn, "lake") == line_id
    finally:
        kw["proxy"].mode = "forward"
        if failure == "denied":
            iam.put_user_policy(UserName=user, PolicyName="kms", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kms:Decrypt"],
                                                         "Resource": "*"}]}))


@pytest.mark.cluster
def test_reencrypt_across_plain_and_kms_lines(kw, s3):
    conn = kw["conn"]
    lake(conn, s3)
    assert stored_key_id(conn, "lake") == kid(KEY1)
    # Rotate to a kms first line.
    line, line_id = data_key(kw)
    kw["keyfile"].write(line, KEY1)
    assert conn.execute("SELECT duckdb.reencrypt_secrets()").fetchone() == (1,)
    assert stored_key_id(conn, "lake") == line_id
    kw["keyfile"].write(line)
    with kw["connect"]() as c:
        assert c.execute(READ).fetchone() == (10,)
    # And back to a plain first line.
    kw["keyfile"].write(KEY2, line)
    assert conn.execute("SELECT duckdb.reencrypt_secrets()").fetchone() == (1,)
    assert stored_key_id(conn, "lake") == kid(KEY2)
    assert conn.execute("SELECT duckdb.reencrypt_secrets()").fetchone() == (0,)
    kw["keyfile"].write(KEY2)
    with kw["connect"]() as c:
        assert c.execute(READ).fetchone() == (10,)
    # A plain key wrapped by KMS keeps its id: its values open, nothing to move.
    wrapped, wrapped_id = data_key(kw, plain=bytes.fromhex(KEY2))
    assert wrapped_id == kid(KEY2)
    kw["keyfile"].write(wrapped)
    with kw["connect"]() as c:
        assert c.execute(READ).fetchone() == (10,)
        assert c.execute("SELECT duckdb.reencrypt_secrets()").fetchone() == (0,)


# --- in the test process alone --------------------------------------------------


@pytest.fixture
def keyfile_here(monkeypatch):
    """A key file of the test process's user; KMS at a closed port of 127.0.0.1."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    kf = KeyFile()
    yield kf
    kf.remove()


def _write(kf, *lines):
    with open(kf.path, "w") as f:
        f.write("".join(x + "\n" for x in lines))
    os.chmod(kf.path, 0o600)


@pytest.mark.inprocess
@pytest.mark.parametrize("line", ["kms:", "kms:alias/x:", "kms::QUJD", "kms:alias/x:not base64!", "kms:alias/x"])
def test_a_malformed_kms_line_is_not_a_key(keyfile_here, line):
    _write(keyfile_here, line)
    with pytest.raises(crypto.KeyProblem) as e:
        crypto.load(keyfile_here.path)
    assert "line 1 of key file" in str(e.value) and "kms:<KMS key id or ARN>" in str(e.value)


@pytest.mark.inprocess
def test_an_unreachable_kms_leaves_the_plain_lines_usable(keyfile_here, monkeypatch):
    wrapped = base64.b64encode(b"\x01" * 96).decode()
    _write(keyfile_here, f"kms:arn:aws:kms:eu-west-1:111122223333:key/abc:{wrapped}", KEY1)
    t0 = time.monotonic()
    keys = crypto.load(keyfile_here.path)
    assert time.monotonic() - t0 < 15
    assert keys.current is None and len(keys.failed) == 1
    assert "line 1 of key file" in keys.failed[0] and "EndpointConnectionError" in keys.failed[0]
    value = crypto.Keys(keyfile_here.path, [(1, bytes.fromhex(KEY1), None)]).seal("v", "s", "public", "secret")
    assert keys.open(value, "s", "public", "secret") == "v"
    ring = crypto.Keyring({crypto.SETTING: keyfile_here.path})
    with pytest.raises(crypto.PgError) as e:
        ring.sealing()
    assert e.value.sqlstate == "F0000" and "EndpointConnectionError" in e.value.message
    # A value of the line that failed: a problem of the file, said once per sync.
    other = crypto.Keys(keyfile_here.path, [(1, bytes.fromhex(KEY2), None)]).seal("v", "s", "public", "secret")
    with pytest.raises(crypto.KeyProblem) as e:
        ring.open([f"secret={other}"], "s", "public")
    assert e.value.shared and "no usable line" in str(e.value)
    assert ring.warning(e.value, "w") is not None and ring.warning(e.value, "w") is None
    ring.new_sync()
    assert ring.warning(e.value, "w") is not None
    # Not tried again at once (a dead KMS costs a backend its timeouts once a minute at most).
    n = len(crypto._kms_failed)
    t0 = time.monotonic()
    assert crypto.load(keyfile_here.path).failed
    assert time.monotonic() - t0 < 1 and len(crypto._kms_failed) == n
    # Then asked again, by a keyring that holds the failed line too.
    asked = []
    real = crypto._kms_decrypt
    monkeypatch.setattr(crypto, "_kms_decrypt", lambda *a: asked.append(1) or real(*a))
    assert ring.keys().failed and asked == []
    monkeypatch.setattr(crypto, "KMS_RETRY_AFTER", 0)
    assert ring.keys().failed and asked == [1]


@pytest.mark.inprocess
def test_the_region_comes_from_the_arn_else_the_environment(keyfile_here):
    class Sess:
        def get_config_variable(self, name):
            return "from-config"
    assert crypto._kms_region("arn:aws:kms:eu-west-3:111122223333:key/abc", Sess()) == "eu-west-3"
    assert crypto._kms_region("alias/x", Sess()) == "us-east-1"
    os.environ.pop("AWS_REGION")
    assert crypto._kms_region("alias/x", Sess()) == "from-config"
