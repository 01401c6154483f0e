"""A small Iceberg REST catalog for the tests: the endpoints DuckDB's iceberg
extension calls, OAuth2 client credentials that it really checks, tokens that
expire, and tables that pyiceberg wrote (SQL catalog in SQLite, data and
metadata on the local S3 server). Listens on 127.0.0.1 only.

Counts what happens (token requests, refused requests) so tests can assert on it.
"""

import base64
import http.server
import json
import os
import threading
import time
import urllib.parse

from pyiceberg.catalog.sql import SqlCatalog


class Catalog:
    def __init__(self, s3, client_id, client_secret, token_lifetime=3600, warehouse_dir=None):
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime
        self.tokens = {}            # token -> expiry (by now())
        self.advance = 0.0          # seconds the catalog's clock is ahead (a test moves it with the backend's)
        self.token_requests = 0
        self.refused = 0
        self.lock = threading.Lock()
        self.dir = warehouse_dir
        self.sql = SqlCatalog("tests", **{
            "uri": f"sqlite:///{os.path.join(warehouse_dir, 'catalog.db')}",
            "warehouse": f"s3://{s3.bucket}/iceberg",
            "s3.endpoint": s3.url, "s3.access-key-id": s3.key_id, "s3.secret-access-key": s3.secret,
            "s3.region": s3.region, "s3.path-style-access": "true",
        })
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def create_table(self, namespace, name, rows):
        import pyarrow as pa
        self.sql.create_namespace_if_not_exists(namespace)
        data = pa.table({"i": pa.array([r[0] for r in rows], pa.int64()),
                         "label": pa.array([r[1] for r in rows], pa.string())})
        table = self.sql.create_table(f"{namespace}.{name}", schema=data.schema)
        table.append(data)
        return table

    # --- HTTP -----------------------------------------------------------------

    def now(self):
        return time.time() + self.advance

    def _token_ok(self, header):
        if not header or not header.startswith("Bearer "):
            return False
        with self.lock:
            expiry = self.tokens.get(header[7:])
        return expiry is not None and self.now() < expiry

    def _issue(self, body, basic):
        form = dict(urllib.parse.parse_qsl(body))
        cid, secret = None, None
        if basic:
            cid, _, secret = base64.b64decode(basic).decode().partition(":")
        cid, secret = form.get("client_id", cid), form.get("client_secret", secret)
        with self.lock:
            self.token_requests += 1
        if form.get("grant_type") != "client_credentials" or (cid, secret) != (self.client_id, self.client_secret):
            with self.lock:
                self.refused += 1
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        token = base64.urlsafe_b64encode(os.urandom(24)).decode()
        with self.lock:
            self.tokens[token] = self.now() + self.token_lifetime
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime,
                     "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}

    def _load(self, namespace, name):
        table = self.sql.load_table(f"{namespace}.{name}")
        return {"metadata-location": table.metadata_location,
                "metadata": json.loads(table.metadata.model_dump_json(by_alias=True, exclude_none=True)),
                "config": {}}

    def _handler(self):
        catalog = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.path.split("?")[0].endswith("/oauth/tokens"):
                    auth = self.headers.get("Authorization") or ""
                    code, obj = catalog._issue(body, auth[6:] if auth.startswith("Basic ") else None)
                    return self._send(code, obj)
                return self._send(404, {"error": {"message": "not here", "type": "NotFound", "code": 404}})

            def do_GET(self):
                if not catalog._token_ok(self.headers.get("Authorization")):
                    with catalog.lock:
                        catalog.refused += 1
                    return self._send(401, {"error": {"message": "Not authorized", "type": "NotAuthorizedException",
                                                      "code": 401}})
                path = urllib.parse.urlparse(self.path).path.rstrip("/")
                parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
                try:
                    if parts == ["v1", "config"]:
                        return self._send(200, {"defaults": {}, "overrides": {}})
                    if parts == ["v1", "namespaces"]:
                        return self._send(200, {"namespaces": [list(n) for n in catalog.sql.list_namespaces()]})
                    if len(parts) == 3 and parts[:2] == ["v1", "namespaces"]:
                        return self._send(200, {"namespace": [parts[2]], "properties": {}})
                    if len(parts) == 4 and parts[3] == "tables":
                        ids = catalog.sql.list_tables(parts[2])
                        return self._send(200, {"identifiers": [{"namespace": [i[0]], "name": i[1]} for i in ids]})
                    if len(parts) == 5 and parts[3] == "tables":
                        return self._send(200, catalog._load(parts[2], parts[4]))
                except Exception as e:  # noqa: BLE001 - a test server: report anything as a 404
                    return self._send(404, {"error": {"message": str(e), "type": "NoSuchTableException",
                                                      "code": 404}})
                return self._send(404, {"error": {"message": "not here", "type": "NotFound", "code": 404}})

        return Handler
