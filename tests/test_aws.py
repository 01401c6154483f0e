"""AWS credentials resolved in the backend with boto3: environment and profile
files, assume-role through the local moto STS with refresh, RDS IAM tokens
that reach a PostgreSQL-protocol peer and are regenerated, and clean errors.
Only 127.0.0.1 is ever contacted; AWS_EC2_METADATA_DISABLED=true throughout."""

import hashlib
import hmac
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.parse

import psycopg
import pytest

import localenv
from conftest import READ, advance_clock, assert_clean_error, fresh_database, secret_lines
from duckdb_secrets import aws

pytestmark = pytest.mark.cluster

CANARY = "CANARY-aws-77d1"
ROLE_ARN = "arn:aws:iam::123456789012:role/s3-reader"
DUCK_KEY = ("SELECT * FROM duckdb.query($$ SELECT regexp_extract(secret_string, 'key_id=([^;]*)', 1) "
            "FROM duckdb_secrets() WHERE name = '{}' $$) AS t(k text)")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


@pytest.fixture(scope="module")
def aws_world(s3):
    """A cluster whose postmaster has the moto user's keys in its environment,
    and whose settings name a config file (STS endpoint = moto) and a
    credentials file with a second user's profile."""
    base = localenv.scratch_dir("duckdb_secrets_aws.")
    iam = s3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                     "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="s3-reader", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="s3-reader", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    iam.create_user(UserName="no-sts")
    iam.put_user_policy(UserName="no-sts", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    other = iam.create_access_key(UserName="no-sts")["AccessKey"]
    config = os.path.join(base, "config")
    creds = os.path.join(base, "credentials")
    _write(config, f"[default]\nregion = {s3.region}\nservices = local\n\n"
                   f"[profile fileprofile]\nregion = {s3.region}\nservices = local\n\n"
                   f"[services local]\nsts =\n  endpoint_url = {s3.url}\n")
    _write(creds, f"[fileprofile]\naws_access_key_id = {other['AccessKeyId']}\n"
                  f"aws_secret_access_key = {other['SecretAccessKey']}\n")
    cluster = localenv.PgCluster(
        os.path.join(base, "pg"),
        settings={"duckdb.aws_config_file": config, "duckdb.aws_shared_credentials_file": creds,
                  # the defaults, said here: the expiry tests count on them
                  "duckdb.aws_refresh_margin": "300", "duckdb.rds_token_max_age": "600",
                  "duckdb.aws_assume_role_duration": "900"},
        env={"AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": s3.secret,
             "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": s3.url}).start()
    world = {"cluster": cluster, "other": other, "n": 0}
    yield world
    cluster.stop()
    log = cluster.read_log()
    shutil.rmtree(base, ignore_errors=True)
    assert not secret_lines(log, [s3.secret, other["SecretAccessKey"], CANARY])
    assert "terminated by signal" not in log


@pytest.fixture
def conn(aws_world):
    aws_world["n"] += 1
    c = fresh_database(aws_world["cluster"], f"aws_{aws_world['n']}")
    yield c
    c.close()


def s3_chain_server(conn, name, s3, **opts):
    opts = {"provider": "credential_chain", "region": s3.region, "endpoint": s3.endpoint,
            "url_style": "path", "use_ssl": "false", **opts}
    body = ", ".join(f"{k} '{v}'" for k, v in opts.items())
    conn.execute(f"CREATE SERVER {name} TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS ({body})")


def test_environment_credentials_reach_s3(conn, s3):
    s3_chain_server(conn, "from_env", s3, chain="env")
    assert conn.execute(READ).fetchone() == (10,)
    row = conn.execute("SELECT provider, secret_string FROM duckdb.secrets()").fetchone()
    assert row[0] == "credential_chain" and s3.secret not in row[1]
    assert conn.execute(DUCK_KEY.format("from_env")).fetchone() == (s3.key_id,)


def test_profile_file_named_by_a_setting_reaches_s3(conn, s3, aws_world):
    s3_chain_server(conn, "from_profile", s3, chain="config", profile="fileprofile")
    assert conn.execute(READ).fetchone() == (10,)
    assert conn.execute(DUCK_KEY.format("from_profile")).fetchone() == (aws_world["other"]["AccessKeyId"],)


@pytest.mark.expiry
def test_assume_role_through_sts_and_refresh_before_expiry(conn, s3):
    # Role credentials live 900 s (duckdb.aws_assume_role_duration, the AWS
    # minimum) and are refreshed 300 s early (duckdb.aws_refresh_margin): due
    # 600 s after each resolution, by the backend's clock.
    s3_chain_server(conn, "assumed", s3, chain="env", assume_role_arn=ROLE_ARN, session_name="duckdb-test")
    assert conn.execute(READ).fetchone() == (10,)
    first = conn.execute(DUCK_KEY.format("assumed")).fetchone()[0]
    assert first.startswith("ASIA") and first != s3.key_id          # temporary, assumed-role keys
    advance_clock(conn, 590)
    assert conn.execute(DUCK_KEY.format("assumed")).fetchone()[0] == first   # not yet due: cached
    advance_clock(conn, 20)
    assert conn.execute(READ).fetchone() == (10,)                     # same session, no reconnect
    second = conn.execute(DUCK_KEY.format("assumed")).fetchone()[0]
    assert second.startswith("ASIA") and second != first              # refreshed


def test_assume_role_denied_is_a_clean_error(conn, s3, aws_world):
    s3_chain_server(conn, "denied", s3, chain="env", assume_role_arn=ROLE_ARN)
    other = aws_world["other"]
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER denied OPTIONS "
                     f"(key_id '{other['AccessKeyId']}', secret '{other['SecretAccessKey']}')")
    assert e.value.sqlstate == "28000"
    assert "could not assume role" in e.value.diag.message_primary
    assert_clean_error(e.value, other["SecretAccessKey"], s3.secret)


def test_no_credentials_in_the_chain(conn, s3):
    with pytest.raises(psycopg.Error) as e:
        s3_chain_server(conn, "empty", s3, chain="sso;process")
    assert e.value.sqlstate == "28000"
    assert "no AWS credentials found" in e.value.diag.message_primary
    assert e.value.diag.message_hint
    assert_clean_error(e.value, s3.secret)
    # validation 'none' accepts it; the engine then holds an anonymous secret.
    s3_chain_server(conn, "empty", s3, chain="sso;process", validation="none")
    assert conn.execute("SELECT name FROM duckdb.secrets()").fetchall() == [("empty",)]


def test_unknown_profile(conn, s3):
    with pytest.raises(psycopg.Error) as e:
        s3_chain_server(conn, "noprof", s3, chain="config", profile="nosuchprofile")
    assert e.value.sqlstate == "HV024"
    assert "nosuchprofile" in e.value.diag.message_primary
    assert_clean_error(e.value, s3.secret)


class FakePostgres:
    """Speaks just enough of the PostgreSQL protocol to ask for a cleartext
    password, record it, and refuse the login."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.passwords = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _recv(self, c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise ConnectionError
            buf += chunk
        return buf

    def _serve(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                with c:
                    while True:
                        length, code = struct.unpack("!ii", self._recv(c, 8))
                        if code in (80877103, 80877104):        # SSLRequest, GSSENCRequest
                            c.sendall(b"N")
                            continue
                        self._recv(c, length - 8)
                        break
                    c.sendall(b"R" + struct.pack("!ii", 8, 3))   # AuthenticationCleartextPassword
                    kind = self._recv(c, 1)
                    (length,) = struct.unpack("!i", self._recv(c, 4))
                    body = self._recv(c, length - 4)
                    if kind == b"p":
                        self.passwords.append(body.rstrip(b"\0").decode())
                    msg = b"SFATAL\0VFATAL\0C28P01\0Mfake peer: password recorded\0\0"
                    c.sendall(b"E" + struct.pack("!i", len(msg) + 4) + msg)
            except (ConnectionError, OSError):
                pass

    def close(self):
        self._stop = True
        self.sock.close()


def verify_rds_token(token, key_id, secret, host, port, user, region):
    """Check an RDS IAM token (a SigV4 presigned URL) independently of boto3."""
    url = urllib.parse.urlsplit("https://" + token)
    assert url.netloc == f"{host}:{port}"
    q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    assert q["Action"] == "connect" and q["DBUser"] == user and q["X-Amz-Expires"] == "900"
    key, date, reg, service, _ = q["X-Amz-Credential"].split("/")
    assert (key, reg, service) == (key_id, region, "rds-db")
    signature = q.pop("X-Amz-Signature")
    def quote(v):
        return urllib.parse.quote(v, safe="-_.~")

    canonical_query = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(q.items()))
    payload = hashlib.sha256(b"").hexdigest()
    canonical = "\n".join(["GET", "/", canonical_query, f"host:{host}:{port}", "", "host", payload])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", q["X-Amz-Date"], f"{date}/{region}/rds-db/aws4_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, "rds-db", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    assert hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest() == signature
    return q["X-Amz-Date"]


@pytest.mark.expiry
def test_rds_token_reaches_the_peer_and_is_regenerated(conn, s3):
    peer = FakePostgres()
    try:
        conn.execute(f"CREATE SERVER iam_rds TYPE 'rds' FOREIGN DATA WRAPPER duckdb OPTIONS (chain 'env', "
                     f"region '{s3.region}', rds_user 'iam_user', rds_host '127.0.0.1', rds_port '{peer.port}')")
        conn.execute(f"CREATE SERVER iam_pg TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (host '127.0.0.1', "
                     f"port '{peer.port}', dbname 'app', \"user\" 'iam_user', sslmode 'disable', "
                     f"aws_rds_secret 'iam_rds')")
        listed = dict(conn.execute("SELECT name, storage FROM duckdb.secrets() WHERE origin = 'server'").fetchall())
        assert listed == {"iam_pg": "memory", "iam_rds": "none"}

        def attach():
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SELECT * FROM duckdb.query($$ ATTACH '' AS db (TYPE postgres, SECRET iam_pg) $$) "
                             "AS t(n bigint)")
            assert "password recorded" in str(e.value)
            assert_clean_error(e.value, s3.secret, *peer.passwords)     # the token is masked too
            return peer.passwords[-1]

        first = attach()
        stamp = verify_rds_token(first, s3.key_id, s3.secret, "127.0.0.1", peer.port, "iam_user", s3.region)
        advance_clock(conn, 590)
        assert attach() == first                  # within duckdb.rds_token_max_age (600 s): the same token
        advance_clock(conn, 20)
        _next_second()
        second = attach()
        assert second != first                    # past it: a new one, also valid
        assert verify_rds_token(second, s3.key_id, s3.secret, "127.0.0.1", peer.port, "iam_user",
                                s3.region) > stamp
    finally:
        peer.close()


def _next_second():
    """A token is signed with the wall clock's time to the second (botocore's,
    not the backend's clock): one made within the same second would be the
    same token."""
    time.sleep(1.01 - time.time() % 1)


def test_settings_set_by_a_role_are_ignored(conn, s3, aws_world):
    # A path a role could SET would let it run a credential_process as the server.
    conn.execute("SET duckdb.aws_config_file = '/tmp/attacker-config'")
    s3_chain_server(conn, "from_profile", s3, chain="config", profile="fileprofile")
    assert conn.execute(READ).fetchone() == (10,)


def test_default_chain_never_reaches_for_instance_metadata(monkeypatch):
    hits = []

    class Handler(__import__("http.server").server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_PUT = do_GET

        def log_message(self, *args):
            pass

    import http.server
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    empty = tempfile.mkdtemp()
    try:
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/")
        settings = aws.Settings(os.path.join(empty, "config"), os.path.join(empty, "credentials"))
        assert "instance" not in aws.DEFAULT_CHAIN
        assert aws.resolve({}, "x", settings) is None
        assert aws.resolve({"chain": "instance"}, "x", settings) is None    # asked for, but disabled here
        assert hits == []
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(empty)
