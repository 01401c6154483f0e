"""Real local services for the demo and the tests: a throwaway PostgreSQL
cluster and a moto S3 server that checks request signatures.

Everything listens on 127.0.0.1 only, and every process started here is
stopped by its PID. Usable as a module or from the shell:

    python tests/localenv.py pg-start DIR PORT      # prints nothing; cluster in DIR
    python tests/localenv.py pg-stop DIR
    python tests/localenv.py s3-start DIR PORT      # writes DIR/s3.env (endpoint, keys, pid)
    python tests/localenv.py s3-stop DIR
"""

import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PG_BIN = "/usr/lib/postgresql/15/bin"
HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.join(os.path.dirname(HERE), ".venv", "bin")

# Never let any AWS code (boto3 here, DuckDB's aws code in the server) probe an
# instance-metadata endpoint.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Any AWS SDK call that is not pointed anywhere else goes to a closed port on
# 127.0.0.1, never to AWS (tests that use moto point it at moto).
SAFE_ENV = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


# An S3 read that no secret covers goes to a closed port on 127.0.0.1, never to
# AWS's default endpoint (every test cluster's duckdb.engine_settings).
ENGINE_SETTINGS = "s3_endpoint=127.0.0.1:9; s3_use_ssl=false; s3_url_style=path"


def _scratch_parent():
    """In RAM (/dev/shm) where there is one: a cluster on a disk that other work
    is writing to waits for it (CREATE DATABASE took 10x longer), and nothing
    here needs to outlive the run."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else tempfile.gettempdir()


def scratch_dir(prefix):
    """A new directory (mode 755: the postgres OS user reads it) for a throwaway
    cluster or server."""
    path = tempfile.mkdtemp(prefix=prefix, dir=_scratch_parent())
    os.chmod(path, 0o755)
    return path


def scratch_path(prefix):
    """Where scratch_dir would make one, not made yet (make it with mode 755)."""
    import uuid
    return os.path.join(_scratch_parent(), prefix + uuid.uuid4().hex[:12])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd, env=None):
    """Run as the postgres OS user when we are root (initdb refuses root)."""
    env = {**SAFE_ENV, **(env or {})}
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", "env", *[f"{k}={v}" for k, v in env.items()], *cmd]
    return ["env", *[f"{k}={v}" for k, v in env.items()], *cmd]


def _chown_postgres(path):
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


class PgCluster:
    """A PostgreSQL cluster in its own directory, socket and port."""

    def __init__(self, base, port=None, settings=None, env=None, hba=()):
        self.base = base
        self.hba = list(hba)        # pg_hba.conf lines placed before initdb's (trust) ones
        self.env = env or {}        # the postmaster's environment (e.g. AWS credentials)
        self.data = os.path.join(base, "data")
        self.log = os.path.join(base, "server.log")
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": base,
            "port": str(self.port),
            "fsync": "off",
            "max_connections": "60",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] %u@%d ",
            # Statements that fail are logged (PostgreSQL's default); with it on,
            # a test can check that our own SQL never carries a secret.
            "log_min_error_statement": "error",
            "duckdb.engine_settings": ENGINE_SETTINGS,
            # Tracks nested statements too: tests check no secret reaches it.
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all",
        }
        self.settings.update(settings or {})

    @property
    def pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def dsn(self, dbname="postgres", user=None):
        return f"host={self.host} port={self.port} user={user or self.user} dbname={dbname}"

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        os.chmod(self.base, 0o755)
        _chown_postgres(self.base)
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            subprocess.run(_as_postgres([f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                                         "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8"]),
                           check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
                for k, v in self.settings.items():
                    f.write(f"{k} = '{v}'\n")
            if self.hba:
                hba = os.path.join(self.data, "pg_hba.conf")
                with open(hba) as f:
                    rest = f.read()
                with open(hba, "w") as f:
                    f.write("\n".join(self.hba) + "\n" + rest)
        subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                                     "start"], self.env), check=True, stdout=subprocess.DEVNULL)
        return self

    def stop(self):
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)         # fast shutdown of the postmaster we started
        except ProcessLookupError:
            return
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def log_size(self):
        """Where the server log ends now (bytes): read_log(from that) gives what comes after."""
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def read_log(self, start=0):
        """The server log from byte offset start on."""
        try:
            with open(self.log, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


class S3Server:
    """moto's S3 on 127.0.0.1, with IAM auth on: bad signatures get 403."""

    bucket = "bucket"
    region = "us-east-1"

    def __init__(self, base, port=None, seed=None):
        self.base = base
        self.port = port or free_port()
        # With a seed, moto's generated ids are the same on every start: a
        # restarted server (same port, same set-up) has the same keys.
        self.seed = seed
        self.proc = None
        self.key_id = None
        self.secret = None

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"http://{self.endpoint}"

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        log = open(os.path.join(self.base, "moto.log"), "wb")
        env = {**os.environ, **SAFE_ENV}
        self.proc = subprocess.Popen([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=log, stderr=log, env=env,
                                     start_new_session=True)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto_server did not start; see " + log.name) from None
                time.sleep(0.2)
        if self.seed is not None:
            req = urllib.request.Request(f"{self.url}/moto-api/seed?a={int(self.seed)}", data=b"", method="POST")
            urllib.request.urlopen(req, timeout=5).read()
        self._set_up()
        return self

    def client(self, service, key_id=None, secret=None):
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id=key_id or self.key_id or "setup",
                            aws_secret_access_key=secret or self.secret or "setup")

    def _set_up(self):
        iam = self.client("iam")
        iam.create_user(UserName="duckdb-secrets-test")
        policy = iam.create_policy(PolicyName="s3-all", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Resource": "*",
                           "Action": ["s3:*", "sts:*", "iam:*", "secretsmanager:*", "ssm:*", "kms:*"]}]}))
        iam.attach_user_policy(UserName="duckdb-secrets-test", PolicyArn=policy["Policy"]["Arn"])
        key = iam.create_access_key(UserName="duckdb-secrets-test")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        s3 = self.client("s3")
        s3.create_bucket(Bucket=self.bucket)
        # From now on every request must carry a valid signature.
        req = urllib.request.Request(self.url + "/moto-api/reset-auth", data=b"0",
                                     headers={"Content-Type": "text/plain"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    def put(self, key, data):
        self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=data)

    def keys(self, prefix=""):
        """The bucket's object keys (under prefix)."""
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    def put_parquet(self, key, sql):
        """Upload the result of a DuckDB query as Parquet."""
        import duckdb
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "data.parquet")
            duckdb.connect().execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
            with open(path, "rb") as f:
                self.put(key, f.read())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def write_env(self, path):
        with open(path, "w") as f:
            f.write(f"S3_ENDPOINT={self.endpoint}\nS3_KEY_ID={self.key_id}\nS3_SECRET={self.secret}\n"
                    f"S3_BUCKET={self.bucket}\nS3_REGION={self.region}\nS3_PID={self.proc.pid}\n")


class HTTPCounter:
    """A loopback HTTP server that counts every request (any method): a
    small CSV for each, or a redirect to redirect_to."""

    def __init__(self, redirect_to=None):
        self.hits = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                hits.append((self.command, self.path))
                if redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"a,b\n1,2\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class CountingProxy:
    """A loopback HTTP server in front of another (moto): forwards every request
    as it is (Host header included, so signatures still check) and counts them
    by AWS action (the X-Amz-Target header, or the Action parameter). down: it
    answers 503 to everything, as a source that cannot be reached."""

    def __init__(self, target_port):
        import http.client
        self.hits = []
        self.down = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = self.headers.get("X-Amz-Target") or ""
                if not action and b"Action=" in body:
                    action = body.split(b"Action=", 1)[1].split(b"&", 1)[0].decode()
                proxy.hits.append(action.rsplit(".", 1)[-1])
                if proxy.down:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def count(self, *actions):
        return sum(1 for h in self.hits if not actions or h in actions)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _pid_file_stop(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    os.unlink(pidfile)


def main(argv):
    cmd, base = argv[0], argv[1]
    if cmd == "pg-start":
        PgCluster(base, int(argv[2])).start()
    elif cmd == "pg-stop":
        PgCluster(base).stop()
    elif cmd == "s3-start":
        s3 = S3Server(base, int(argv[2])).start()
        s3.put_parquet("demo/cities.parquet",
                       "SELECT * FROM (VALUES ('Lisbon', 545000), ('Oslo', 709000), ('Quito', 2800000)) "
                       "AS t(city, population)")
        s3.write_env(os.path.join(base, "s3.env"))
        with open(os.path.join(base, "s3.pid"), "w") as f:
            f.write(str(s3.proc.pid))
    elif cmd == "s3-stop":
        _pid_file_stop(os.path.join(base, "s3.pid"))
    elif cmd == "rmtree":
        shutil.rmtree(base, ignore_errors=True)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
