"""The one table of truth: DuckDB secret types, their providers and options.

Validation, export, redaction and the generated docs all read this module.
Adding a secret type is one entry in TYPES (plus its options, if new).

Facts are DuckDB 1.5.5 with the httpfs, aws, azure and postgres extensions.
"""

from dataclasses import dataclass, field

# Option value kinds. DuckDB receives text as VARCHAR, bool as BOOLEAN,
# int as INTEGER, list as LIST(VARCHAR) (comma-separated in PostgreSQL),
# map as MAP(VARCHAR, VARCHAR) ("k=v" pairs, comma-separated).
TEXT, BOOL, INT, LIST, MAP = "text", "bool", "int", "list", "map"

# Options that must never be stored on a SERVER (whose options every role can
# read) but only in a USER MAPPING. Stricter than DuckDB's own redaction.
SENSITIVE = frozenset({
    "secret", "session_token", "bearer_token", "token", "password",
    "sslpassword", "passfile", "connection_string", "client_secret",
    "client_certificate_path", "access_token", "http_proxy_password",
    "proxy_password", "oauth_client_secret", "scram_client_key",
    "scram_server_key", "uri",
})

# Options that describe the secret itself rather than a parameter; they live on
# the SERVER only.
PROVIDER = "provider"
SCOPE = "scope"
SERVER_ONLY = frozenset({PROVIDER, SCOPE})


@dataclass(frozen=True)
class Option:
    name: str
    kind: str = TEXT
    doc: str = ""

    @property
    def sensitive(self):
        return self.name in SENSITIVE


def _opts(*specs):
    """Build {name: Option} from names, or (name, kind) pairs."""
    out = {}
    for spec in specs:
        name, kind = (spec, TEXT) if isinstance(spec, str) else spec
        out[name] = Option(name, kind)
    return out


# --- option groups -----------------------------------------------------------

_AWS_COMMON = _opts(
    "key_id", "secret", "region", "session_token", "endpoint", "url_style",
    "http_proxy", "http_proxy_username", "http_proxy_password",
    ("use_ssl", BOOL), ("url_compatibility_mode", BOOL),
)
_AWS_CONFIG = {**_AWS_COMMON, **_opts(
    "kms_key_id", ("verify_ssl", BOOL), ("requester_pays", BOOL),
    ("extra_http_headers", MAP),
)}


@dataclass(frozen=True)
class Provider:
    name: str
    options: dict
    required: tuple = ()


@dataclass(frozen=True)
class SecretType:
    name: str
    extension: str                      # DuckDB extension that defines it
    default_provider: str
    providers: dict                     # name -> Provider
    default_scope: tuple = ()
    doc: str = ""
    example: dict = field(default_factory=dict)     # server options
    example_mapping: dict = field(default_factory=dict)

    def provider(self, name):
        return self.providers.get(name or self.default_provider)


def _type(name, extension, providers, default_provider="config", **kw):
    return SecretType(name=name, extension=extension,
                      default_provider=default_provider,
                      providers={p.name: p for p in providers}, **kw)


TYPES = {t.name: t for t in (
    _type("s3", "httpfs", [Provider("config", _AWS_CONFIG)],
          default_scope=("s3://", "s3n://", "s3a://"),
          doc="Amazon S3 and S3-compatible object stores (MinIO, Ceph, ...).",
          example={"region": "us-east-1", "endpoint": "127.0.0.1:9000",
                   "url_style": "path", "use_ssl": "false", "scope": "s3://bucket"},
          example_mapping={"key_id": "AKIA...", "secret": "..."}),
    _type("r2", "httpfs",
          [Provider("config", {**_AWS_CONFIG, **_opts("account_id")})],
          default_scope=("r2://",),
          doc="Cloudflare R2. `account_id` sets the endpoint and path-style URLs.",
          example={"account_id": "my-account"},
          example_mapping={"key_id": "...", "secret": "..."}),
    _type("gcs", "httpfs",
          [Provider("config", {**_AWS_CONFIG, **_opts("bearer_token")})],
          default_scope=("gcs://", "gs://"),
          doc="Google Cloud Storage through its S3-compatible (HMAC) interface, "
              "or with an OAuth `bearer_token`.",
          example={},
          example_mapping={"key_id": "GOOG...", "secret": "..."}),
    _type("aws", "httpfs", [Provider("config", _AWS_CONFIG)],
          doc="Plain AWS credentials, for extensions that look up a secret of type aws.",
          example={"region": "eu-west-1"},
          example_mapping={"key_id": "AKIA...", "secret": "..."}),
)}

# Every option name any type/provider knows, plus provider and scope: the
# first validation stage (which does not know the server's TYPE) accepts these.
ALL_OPTIONS = frozenset(
    {o for t in TYPES.values() for p in t.providers.values() for o in p.options}
    | SERVER_ONLY
)

# The simple-secret helper's types (as in Postgres Pro AXE / pg_duckdb).
SIMPLE_TYPES = ("s3", "gcs", "r2")


def options_for(type_name, provider_name):
    """Options valid for TYPE/PROVIDER, including provider and scope."""
    t = TYPES[type_name]
    p = t.provider(provider_name)
    return {**p.options, **{n: Option(n, LIST if n == SCOPE else TEXT) for n in SERVER_ONLY}}


def extensions_for(type_names):
    """DuckDB extensions needed to hold secrets of these types."""
    return sorted({TYPES[t].extension for t in type_names if t in TYPES})
