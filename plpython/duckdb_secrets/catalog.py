"""The one table of truth: DuckDB secret types, their providers and options.

Validation, export, redaction and docs/secret-types.md all read this module;
adding a secret type is one entry in TYPES. Facts are DuckDB 1.5.5 with the
httpfs, aws, azure, postgres and mysql extensions, each option checked against
DuckDB itself by tests/test_catalog.py.
"""

import re

# Option value kinds: how a PostgreSQL option string becomes a DuckDB value.
TEXT, BOOL, INT, LIST, MAP = "text", "bool", "int", "list", "map"
KIND_DOC = {
    TEXT: "text", BOOL: "boolean (true/false, on/off, yes/no, 1/0)", INT: "integer",
    LIST: "comma-separated list", MAP: "comma-separated key=value pairs",
}

# Options that must never be stored on a SERVER (whose options every role can
# read) but only in a USER MAPPING. Stricter than DuckDB's own redaction: DuckDB
# shows http_proxy_password and scram_* keys in clear.
SENSITIVE = frozenset({
    "secret", "session_token", "bearer_token", "token", "password",
    "sslpassword", "passfile", "connection_string", "client_secret",
    "client_certificate_path", "access_token", "http_proxy_password",
    "proxy_password", "oauth_client_secret", "scram_client_key",
    "scram_server_key", "uri", "refresh_token",
})

# Options whose values may carry credentials though the option itself is not
# sensitive: a header such as Authorization in extra_http_headers, a password
# in a connection string given as dbname or host. On a server such values are
# refused (validation.check_embedded_credentials); in a user mapping the whole
# option is encrypted at rest like the sensitive ones, and credential headers
# are redacted and scrubbed.
MAY_CARRY_CREDENTIALS = frozenset({"extra_http_headers", "dbname", "host", "options", "metadata_path",
                                   "metadata_parameters"})
# Encrypted at rest in user mappings (duckdb.encryption_key_file).
SEALED = SENSITIVE | MAY_CARRY_CREDENTIALS
_CREDENTIAL_HEADER = re.compile(r"(?i)^(authorization|proxy-authorization|cookie)$|token|secret|pass(w|phrase)|pwd"
                                r"|api[-_]?key|auth|signature|(^|[-_])sig($|[-_])|credential|session|pat$|jwt"
                                r"|bearer|(^|[-_])access($|[-_])|cert")
# A password or token inside a connection string or URL: libpq/MySQL keywords
# (also percent-encoded: decoded first), user:password@, signed query strings.
_EMBEDDED_PASSWORD = re.compile(
    r"(?i)(^|[\s?&;:/])(ssl)?(password|passwd|pwd)\s*=|://[^/@\s]*:[^/@\s]*@"
    r"|[?&;](access_token|token|api_?key|sig|signature|x-amz-signature|x-amz-security-token|client_secret|secret)=")


_CREDENTIAL_PARAMETER = re.compile(r"(?i)passw|pwd|token|(^|_)key$|credential|auth|_secret$|^uri$")


def credential_header(name):
    """Whether an HTTP header of this name carries a credential."""
    return bool(_CREDENTIAL_HEADER.search(str(name)))


def credential_entry(option, key, value):
    """Whether an entry of a map option carries a credential: by its key, or by
    its value (Bearer ..., Basic ...)."""
    return credential_key(option, key) or credential_value(value)


def credential_key(option, key):
    """Whether a key of a map option (extra_http_headers, metadata_parameters)
    carries a credential. (metadata_parameters' SECRET names a secret: fine.)"""
    if option == "extra_http_headers":
        return credential_header(key)
    return bool(_CREDENTIAL_PARAMETER.search(str(key)))


def embedded_password(value):
    """Whether a connection string or URL (dbname, endpoint, ...) carries a password or token."""
    import urllib.parse
    text = str(value)
    return bool(_EMBEDDED_PASSWORD.search(text) or _EMBEDDED_PASSWORD.search(urllib.parse.unquote(text)))


# HTTP authorization schemes (RFC 9110 and common ones): "<scheme> <credentials>"
_CREDENTIAL_VALUE = re.compile(r"(?i)^\s*(bearer|basic|token|digest|negotiate|ntlm|hoba|mutual|hawk|ssws|sharedkey"
                               r"|aws4?(-hmac-sha256)?|gsslogin|oauth|dpop)\s+\S")


def credential_value(value):
    """Whether a header or parameter value looks like a credential (Bearer ..., Basic ...)."""
    return bool(_CREDENTIAL_VALUE.search(str(value)))


# Sensitive options that DuckDB's own duckdb_secrets() shows in clear: result
# cells of non-superusers' queries are scrubbed of their values.
DUCKDB_SHOWS = frozenset({"http_proxy_password", "scram_client_key", "scram_server_key"})

# Options that send a secret's requests through a proxy of its own, around the
# engine's egress proxy: only in secrets an administrator defined.
# The proxy's address lives on the SERVER only: a role with USAGE can write its
# own user mapping, and a proxy of its choosing would carry its engine's
# requests anywhere. (The proxy's user name and password may be in a mapping.)
PROXY_ADDRESS = frozenset({"http_proxy"})
# Options that say which host a secret's requests go to. From a mapping the role
# may have written itself (its own, not PUBLIC's), they open no host of the
# egress proxy: the secret counts as one an administrator did not define.
ROUTING_OPTIONS = frozenset({"endpoint", "connection_string"}) | PROXY_ADDRESS
PROXY_OPTIONS = frozenset({"http_proxy", "http_proxy_username", "http_proxy_password",
                           "proxy_user_name", "proxy_password"})

# What a secret read from a duckdb_secrets table (written by whoever may INSERT
# there) may not use in a non-superuser's engine: providers that take the
# server's own identity or environment, and options naming files on the server.
SERVER_ENVIRONMENT_PROVIDERS = frozenset({"credential_chain", "managed_identity", "env"})
SERVER_FILE_OPTIONS = frozenset({
    "client_certificate_path", "web_identity_token_file", "passfile", "sslcert", "sslkey",
    "sslrootcert", "sslcrl", "sslcrldir", "sslkeylogfile", "socket", "ssl_ca", "ssl_capath",
    "ssl_cert", "ssl_key", "ssl_crl", "ssl_crlpath",
})

# Options that describe the secret itself; they live on the SERVER only.
PROVIDER = "provider"
SCOPE = "scope"
# A catalog every engine that gets the secret attaches, under this name, the
# first time its SQL refers to the name (types with an `attach` entry below).
ATTACH_AS = "attach_as"
ATTACH_OPTIONS = "attach_options"
ATTACH = frozenset({ATTACH_AS, ATTACH_OPTIONS})
SERVER_ONLY = frozenset({PROVIDER, SCOPE}) | ATTACH
# Names an attach_as may not take: DuckDB's own catalogs, and schema names
# every catalog has (a reference to them never reaches the catalog lookup).
RESERVED_CATALOGS = ("memory", "system", "temp", "main", "information_schema", "pg_catalog")

# Options DuckDB has that we deliberately do not offer: with REFRESH 'auto'
# DuckDB copies every option, secrets included, into an unredacted
# refresh_info field.
WITHHELD = {"refresh": "copies secrets into an unredacted field; credentials are refreshed by the extension",
            "refresh_info": "internal to DuckDB's refresh"}


class Option:
    """One option of a secret type/provider. (Plain classes: dataclasses would
    add ~10 ms to every backend's first use.)"""

    __slots__ = ("name", "kind", "choices", "sep", "needs", "example")

    def __init__(self, name, kind=TEXT, choices=(), sep="", needs=(), example=""):
        self.name = name
        self.kind = kind
        self.choices = choices    # allowed values (lowercase); for "sep" options, per member
        self.sep = sep            # members separated by this (chain: ';')
        self.needs = needs        # options that must be set too
        self.example = example

    @property
    def sensitive(self):
        return self.name in SENSITIVE


def _opts(*specs):
    """{name: Option} from names or Option objects."""
    out = {}
    for spec in specs:
        o = Option(spec) if isinstance(spec, str) else spec
        out[o.name] = o
    return out


class Provider:
    __slots__ = ("name", "options", "required", "extension", "dry_run")

    def __init__(self, name, options, required=(), extension="", dry_run=None):
        self.name = name
        self.options = options
        self.required = required      # each entry: an option name, or a tuple meaning "one of"
        self.extension = extension    # DuckDB extension, if not the type's
        self.dry_run = dry_run or {}  # extra params for the DDL-time dry run (None: left out)


class Attach:
    """How a server of a type is attached under its attach_as name:
    ATTACH <path> AS <name> (TYPE <db_type>, SECRET <the server's secret>, <attach_options>).

    path: '' or a template naming {secret} (the server's secret); SCOPE_PATH:
    the server's one scope; path_option: an attach_options key that is the
    path (required). options: the attach_options keys DuckDB 1.5.5 accepts for
    it that are offered (Option: kind, choices), each checked against DuckDB by
    tests/test_attach_as.py."""
    __slots__ = ("path", "db_type", "secret", "options", "path_option")

    SCOPE_PATH = object()

    def __init__(self, path="", db_type=None, secret=True, options=(), path_option=None):
        self.path = path
        self.db_type = db_type
        self.secret = secret
        self.options = _opts(*options)
        self.path_option = path_option
        if path_option is not None:
            self.options[path_option] = Option(path_option, example="...")

    @property
    def keys(self):
        return sorted(self.options)


_READ_ONLY = Option("read_only", BOOL)


class SecretType:
    __slots__ = ("name", "extension", "default_provider", "providers", "default_scope", "doc", "aliases",
                 "excludes", "example", "example_mapping", "hosts", "proxy_option", "superuser_only",
                 "aws_credentials", "rds_token_option", "derive", "renew", "option_extensions",
                 "opens_prefixes", "helper_name", "attach")

    def __init__(self, name, extension, default_provider, providers, default_scope=(), doc="", aliases=None,
                 excludes=None, example=None, example_mapping=None, hosts=(), proxy_option=None,
                 superuser_only=False, aws_credentials=False, rds_token_option=None, derive=(), renew=None,
                 option_extensions=(), opens_prefixes=False, helper_name=None, attach=None):
        self.name = name
        self.extension = extension
        self.default_provider = default_provider
        self.providers = providers
        self.default_scope = default_scope
        self.doc = doc
        self.aliases = aliases or {}        # alias -> canonical option name
        self.excludes = excludes or {}      # option -> options it cannot go with ("*": all but these)
        self.example = example or {}        # server options
        self.example_mapping = example_mapping or {}
        # The provider's standard hosts (port 443), reachable from a
        # non-superuser's engine when the secret names no endpoint;
        # '.example.com' is the domain and its subdomains.
        self.hosts = hosts
        # The option that routes this type's requests through a proxy, for
        # types whose extension ignores DuckDB's http_proxy setting (azure).
        self.proxy_option = proxy_option
        # Its secrets open database or catalog connections from the server
        # process: a non-superuser could point them at this very cluster and
        # authenticate as the server's OS user. Superusers' engines only.
        self.superuser_only = superuser_only
        # Its credential_chain is resolved by this extension with boto3 (and
        # checked at DDL time); exported to DuckDB as provider config with keys.
        self.aws_credentials = aws_credentials
        # The option naming an rds server whose IAM token becomes the password.
        self.rds_token_option = rds_token_option
        # What DuckDB gets for a secret of this type: the hooks of derive.py
        # (derive.HOOKS) applied in this order to the validated spec; none: the
        # spec as it is. 'token_source': nothing, it is a source for others (rds).
        self.derive = tuple(derive)
        # When a secret DuckDB holds must be created anew (derive.RENEWALS), or None.
        self.renew = renew
        # (option, value prefix, extension): a value that needs another extension.
        self.option_extensions = tuple(option_extensions)
        # Its scopes open http(s) URL prefixes in a non-superuser's engine
        # (administrators' servers only).
        self.opens_prefixes = opens_prefixes
        # The server name duckdb.create_*_secret() gives (then _1, _2, ...).
        self.helper_name = helper_name or f"simple_{name}_secret"
        # Names a database or catalog: a server may carry attach_as (Attach), or None.
        self.attach = attach

    def provider(self, name):
        return self.providers.get(name or self.default_provider)

    def extensions_for(self, provider):
        """The DuckDB extensions that register this type and this provider."""
        p = self.provider(provider)
        return {self.extension} | ({p.extension} if p and p.extension else set())

    @property
    def exported(self):
        """False: a token source for other secrets; DuckDB gets no copy (rds)."""
        return "token_source" not in self.derive

    @property
    def lock_timeout(self):
        """Its connections get duckdb.attach_lock_timeout (and a superuser's
        ATTACH without SECRET a default secret that carries it)."""
        return "attach_lock_timeout" in self.derive


def _type(name, extension, providers, default_provider="config", **kw):
    return SecretType(name=name, extension=extension, default_provider=default_provider,
                      providers={p.name: p for p in providers}, **kw)


# --- option groups -----------------------------------------------------------

AWS_CHAIN_MEMBERS = ("config", "sts", "sso", "env", "instance", "web_identity", "process")
AZURE_CHAIN_MEMBERS = ("cli", "managed_identity", "workload_identity", "env", "default")

_HTTP_PROXY = _opts("http_proxy", "http_proxy_username", "http_proxy_password")
_AWS_BASE = {**_opts(
    "key_id", "secret", "region", "session_token", "endpoint",
    Option("url_style", choices=("vhost", "path")),
    Option("use_ssl", BOOL), Option("url_compatibility_mode", BOOL),
), **_HTTP_PROXY}
_AWS_CONFIG = {**_AWS_BASE, **_opts(
    "kms_key_id", Option("verify_ssl", BOOL), Option("requester_pays", BOOL),
    Option("extra_http_headers", MAP, example="X-Header=value"),
)}
_AWS_CHAIN = {**_AWS_BASE, **_opts(
    Option("assume_role_arn", needs=("chain",)), "external_id", "web_identity_token_file", "session_name",
    "profile",
    Option("chain", choices=AWS_CHAIN_MEMBERS, sep=";", example="env;config"),
    Option("validation", choices=("exists", "none")),
)}
# DuckDB resolves a credential chain when the secret is created, and some
# members (sts, sso, assume-role) call AWS. The DDL-time dry run must never
# reach the network: it checks the options' names and types with a local-only
# chain and without role assumption (None = left out of the dry run).
_CHAIN_DRY_RUN = {"validation": "none", "chain": "env", "assume_role_arn": None,
                  "external_id": None, "session_name": None, "web_identity_token_file": None}


def _aws_family(extra_config=(), extra_chain=()):
    return [Provider("config", {**_AWS_CONFIG, **_opts(*extra_config)}),
            Provider("credential_chain", {**_AWS_CHAIN, **_opts(*extra_chain)},
                     extension="aws", dry_run=_CHAIN_DRY_RUN)]


_AZURE_BASE = _opts("account_name", "endpoint", "http_proxy", "proxy_user_name", "proxy_password")

_LIBPQ = (
    "host", "hostaddr", Option("port", INT), "dbname", "user", "password", "passfile",
    "require_auth", "channel_binding", Option("connect_timeout", INT), "client_encoding", "options",
    "application_name", "fallback_application_name", Option("keepalives", INT),
    Option("keepalives_idle", INT), Option("keepalives_interval", INT), Option("keepalives_count", INT),
    Option("tcp_user_timeout", INT), "replication", "gssencmode",
    Option("sslmode", choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full")),
    "requiressl", "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslkeylogfile", "sslpassword",
    "sslcertmode", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "min_protocol_version", "max_protocol_version",
    "krbsrvname", "gsslib", "gssdelegation", "scram_client_key", "scram_server_key", "service",
    "target_session_attrs", "load_balance_hosts", "oauth_issuer", "oauth_client_id", "oauth_client_secret",
    "oauth_scope",
)
LIBPQ_KEYWORDS = frozenset(o if isinstance(o, str) else o.name for o in _LIBPQ)


TYPES = {t.name: t for t in (
    _type("s3", "httpfs", _aws_family(), aws_credentials=True, derive=("aws_chain",),
          default_scope=("s3://", "s3n://", "s3a://"),
          hosts=('.amazonaws.com',),
          doc="Amazon S3 and S3-compatible object stores (MinIO, Ceph, ...).",
          example={"region": "us-east-1", "endpoint": "127.0.0.1:9000", "url_style": "path",
                   "use_ssl": "false", "scope": "s3://bucket"},
          example_mapping={"key_id": "AKIA...", "secret": "..."}),
    _type("r2", "httpfs", _aws_family(extra_config=("account_id",), extra_chain=("account_id",)),
          aws_credentials=True, derive=("aws_chain",),
          default_scope=("r2://",),
          hosts=('.r2.cloudflarestorage.com',),
          doc="Cloudflare R2. `account_id` sets the endpoint and path-style URLs.",
          example={"account_id": "my-account"},
          example_mapping={"key_id": "...", "secret": "..."}),
    _type("gcs", "httpfs", _aws_family(extra_config=("bearer_token",)), aws_credentials=True, derive=("aws_chain",),
          default_scope=("gcs://", "gs://"),
          hosts=('storage.googleapis.com',),
          doc="Google Cloud Storage through its S3-compatible (HMAC) interface, or with an OAuth "
              "`bearer_token`.",
          example={},
          example_mapping={"key_id": "GOOG...", "secret": "..."}),
    _type("aws", "httpfs", _aws_family(), aws_credentials=True, derive=("aws_chain",),
          hosts=('.amazonaws.com',),
          doc="Plain AWS credentials, for extensions that look a secret of type aws up.",
          example={"region": "eu-west-1"},
          example_mapping={"key_id": "AKIA...", "secret": "..."}),
    _type("azure", "azure", [
        Provider("config", {**_AZURE_BASE, **_opts("connection_string")},
                 required=(("connection_string", "account_name"),)),
        Provider("credential_chain", {**_AZURE_BASE, **_opts(
            Option("chain", choices=AZURE_CHAIN_MEMBERS, sep=";", example="cli;env"))},
            required=("account_name",)),
        Provider("managed_identity", {**_AZURE_BASE, **_opts("client_id", "object_id", "resource_id")},
                 required=("account_name",)),
        Provider("service_principal", {**_AZURE_BASE, **_opts(
            "tenant_id", "client_id", "client_secret", "client_certificate_path")},
            required=("tenant_id", "client_id", "account_name",
                      ("client_secret", "client_certificate_path"))),
        Provider("access_token", {**_AZURE_BASE, **_opts("access_token")},
                 required=("account_name", "access_token")),
    ], default_scope=("azure://", "az://", "abfss://", "abfs://"),
        hosts=('.blob.core.windows.net', '.dfs.core.windows.net'), proxy_option="http_proxy",
        helper_name="azure_secret",         # pg_duckdb's name
          doc="Azure Blob Storage and ADLS Gen2.",
        example={"account_name": "myaccount"},
        example_mapping={"connection_string": "DefaultEndpointsProtocol=https;AccountName=..."}),
    _type("huggingface", "httpfs", [
        Provider("config", _opts("token")),         # without a token: anonymous, for public datasets
        Provider("credential_chain", {}),
    ], default_scope=("hf://",),
        hosts=('huggingface.co', '.huggingface.co', '.hf.co'),
          doc="Hugging Face datasets (`hf://`).",
        example={},
        example_mapping={"token": "hf_..."}),
    _type("http", "httpfs", [
        Provider("config", {**_HTTP_PROXY, **_opts(
            "bearer_token", Option("verify_ssl", BOOL),
            Option("extra_http_headers", MAP, example="X-Request-Source=duckdb"))}),
        Provider("env", {**_HTTP_PROXY, **_opts(
            "bearer_token", Option("verify_ssl", BOOL),
            Option("extra_http_headers", MAP, example="X-Request-Source=duckdb"))}),
    ], hosts="scope", opens_prefixes=True,
        doc="Plain HTTP(S): proxies, bearer tokens and extra headers for `http://` and `https://` reads.",
        example={"scope": "https://example.com/data"},
        example_mapping={"bearer_token": "..."}),
    _type("mysql", "mysql_scanner", [
        Provider("config", _opts(
            "host", Option("port", INT), "password", "user", "database", "socket", "ssl_mode", "ssl_ca",
            "ssl_capath", "ssl_cert", "ssl_cipher", "ssl_crl", "ssl_crlpath", "ssl_key")),
    ], superuser_only=True, attach=Attach(db_type="mysql", options=(_READ_ONLY,)),
        doc="MySQL, for `ATTACH '' AS m (TYPE mysql, SECRET <server>)`.",
        example={"host": "127.0.0.1", "port": "3306", "database": "app", "user": "reader"},
        example_mapping={"password": "..."}),
    _type("postgres", "postgres_scanner", [
        Provider("config", _opts(*_LIBPQ, "uri", "aws_rds_secret")),
    ], superuser_only=True, rds_token_option="aws_rds_secret",
        derive=("rds_password", "attach_lock_timeout"),
        attach=Attach(db_type="postgres", options=(
            _READ_ONLY, "schema",
            Option("isolation_level", choices=("read committed", "repeatable read", "serializable")))),
        doc="PostgreSQL, for `ATTACH '' AS p (TYPE postgres, SECRET <server>)`: every libpq keyword, "
           "or a `uri`; `aws_rds_secret` names an `rds` server for IAM authentication. SCOPE is "
           "accepted but ignored by DuckDB.",
        aliases={"database": "dbname", "hostname": "host", "username": "user"},
        excludes={"uri": ("*", "aws_rds_secret"), "aws_rds_secret": ("password",)},
        example={"host": "127.0.0.1", "port": "5432", "dbname": "app", "user": "reader"},
        example_mapping={"password": "..."}),
    _type("rds", "postgres_scanner", [
        Provider("credential_chain", {**_AWS_CHAIN, **_opts("rds_user", "rds_host", Option("rds_port", INT))},
                 required=("chain", "region", "rds_user", "rds_host", "rds_port"), extension="aws",
                 dry_run=_CHAIN_DRY_RUN),
    ], default_provider="credential_chain", superuser_only=True, aws_credentials=True,
        derive=("token_source",),
        doc="AWS RDS IAM authentication tokens, referenced by a postgres server's `aws_rds_secret`.",
        example={"chain": "env", "region": "eu-west-1", "rds_user": "app",
                 "rds_host": "db.xxxx.eu-west-1.rds.amazonaws.com", "rds_port": "5432"},
        example_mapping={}),
    # Lakehouse types (DuckDB 1.5.5's iceberg, ducklake, quack and unity_catalog
    # extensions; each has the config provider only). Their use opens
    # connections to catalogs and databases from the server: superusers only.
    _type("iceberg", "iceberg", [
        Provider("config", _opts(
            "token", "client_id", Option("client_secret", needs=("client_id",)), "refresh_token", "endpoint",
            "oauth2_server_uri",
            "oauth2_scope", Option("oauth2_grant_type", choices=("client_credentials",)),
            Option("expires_in", INT), Option("extra_http_headers", MAP, example="X-Request-Source=duckdb")),
            required=(("token", "client_secret"),), extension="avro",
            # CREATE SECRET with client credentials asks the token endpoint for a
            # token at once: the DDL-time check gives one instead, and stays offline.
            dry_run={"token": "dry-run", "client_id": None, "client_secret": None, "refresh_token": None}),
    ], superuser_only=True, renew="oauth2_token",
        attach=Attach(db_type="iceberg", path_option="warehouse", options=(
            _READ_ONLY, "default_region", Option("access_delegation_mode", choices=("vended_credentials", "none")),
            Option("support_nested_namespaces", BOOL))),
        doc="Iceberg REST catalogs, for `ATTACH '<warehouse>' AS i (TYPE iceberg, SECRET <server>)`: a bearer "
           "`token`, or OAuth2 client credentials (`client_id`, `client_secret`, and `oauth2_server_uri` or "
           "`endpoint`), for which the engine asks the token endpoint when it takes the secret, and again "
           "when 80% of the token's lifetime has passed (a token endpoint that is down skips this secret with "
           "a WARNING; the others load). SCOPE is ignored by DuckDB.",
        example={"endpoint": "https://catalog.example.com", "client_id": "reader"},
        example_mapping={"client_secret": "..."}),
    _type("ducklake", "ducklake", [
        Provider("config", _opts(
            "metadata_path", "data_path", "metadata_schema", "metadata_catalog", Option("encrypted", BOOL),
            Option("metadata_parameters", MAP, example="TYPE=postgres")),
            required=("metadata_path",)),
    ], superuser_only=True, option_extensions=(("metadata_path", "postgres:", "postgres_scanner"),),
        attach=Attach(path="ducklake:{secret}", secret=False, options=(
            _READ_ONLY, Option("snapshot_version", INT), "snapshot_time", Option("data_inlining_row_limit", INT),
            Option("create_if_not_exists", BOOL))),
        doc="DuckLake, for `ATTACH 'ducklake:<server>' AS l`: the metadata database (`metadata_path`, e.g. "
           "`postgres:dbname=lake host=...`, whose password goes in a postgres server named by "
           "`metadata_parameters` `SECRET=<server>`, or in the user mapping) and where the data files go "
           "(`data_path`, e.g. `s3://bucket/lake/`, read with the role's s3 secrets). SCOPE is ignored by DuckDB.",
        example={"metadata_path": "postgres:dbname=lake host=127.0.0.1", "data_path": "s3://bucket/lake/"},
        example_mapping={}),
    _type("quack", "quack", [
        Provider("config", _opts("token"), required=("token",)),
    ], default_scope=("quack:",), superuser_only=True,
        attach=Attach(path=Attach.SCOPE_PATH, secret=False, options=(_READ_ONLY,)),
        doc="DuckDB's client-server protocol: the `token` of a `quack_serve` server, for "
            "`ATTACH 'quack:<host>:<port>' AS r` (the secret whose scope matches the address is used).",
        example={"scope": "quack:127.0.0.1:9494"},
        example_mapping={"token": "..."}),
    _type("uc", "unity_catalog", [
        Provider("config", _opts("token", "endpoint", "aws_region")),
    ], superuser_only=True, attach=Attach(db_type="unity_catalog", path_option="catalog", options=(_READ_ONLY,)),
        doc="Unity Catalog (short name), for `ATTACH '<catalog>' AS u (TYPE uc, SECRET <server>)`.",
        example={"endpoint": "https://uc.example.com"},
        example_mapping={"token": "..."}),
    _type("unity_catalog", "unity_catalog", [
        Provider("config", _opts("token", "endpoint", "aws_region")),
    ], superuser_only=True, attach=Attach(db_type="unity_catalog", path_option="catalog", options=(_READ_ONLY,)),
        doc="Unity Catalog, for `ATTACH '<catalog>' AS u (TYPE unity_catalog, SECRET <server>)`.",
        example={"endpoint": "https://uc.example.com"},
        example_mapping={"token": "..."}),
)}

# Types DuckDB 1.5.5 offers that the extension does not: why.
REFUSED_TYPES = {
    "motherduck": "the motherduck extension downloads its implementation from the internet when it loads, "
                  "and this server's engines run offline",
}

# Every option name any type/provider knows, aliases, and provider and scope:
# the first validation stage (which does not know the TYPE) accepts these.
ALL_OPTIONS = frozenset(
    {o for t in TYPES.values() for p in t.providers.values() for o in p.options}
    | {a for t in TYPES.values() for a in t.aliases}
    | SERVER_ONLY
)

# The types whose servers may carry attach_as.
ATTACH_TYPES = tuple(t.name for t in TYPES.values() if t.attach is not None)

# Types a change of which may change other servers' secrets: token sources
# (rds) and the types that take a token from one (postgres).
LINKED_TYPES = frozenset(t.name for t in TYPES.values() if not t.exported or t.rds_token_option)

# The simple-secret helper's types (as in Postgres Pro AXE / pg_duckdb).
SIMPLE_TYPES = ("s3", "gcs", "r2")


def options_for(type_name, provider_name):
    """Options valid for TYPE/PROVIDER, with aliases, provider and scope."""
    t = TYPES[type_name]
    p = t.provider(provider_name)
    opts = dict(p.options)
    opts.update({a: p.options[c] for a, c in t.aliases.items() if c in p.options})
    opts[PROVIDER] = Option(PROVIDER)
    opts[SCOPE] = Option(SCOPE, LIST)
    return opts


def extensions_for(specs):
    """DuckDB extensions needed to hold these secrets (specs from validation);
    a DuckLake whose metadata is in PostgreSQL needs the postgres extension."""
    out = set()
    for s in specs:
        t = TYPES[s["type"]]
        out |= t.extensions_for(s["provider"])
        out |= {ext for option, prefix, ext in t.option_extensions
                if str(s["params"].get(option, "")).startswith(prefix)}
    return sorted(out)


def endpoint_rules(authority, ports):
    """Rules for one endpoint: the host on those ports and, for a name, its
    subdomains (virtual-host-style buckets: bucket.endpoint)."""
    from .egress import split_hostport
    text = authority.split("://", 1)[-1].split("/", 1)[0]
    hp = split_hostport(text, ports)
    if hp is None:
        return []
    host, ports = hp
    hosts = [host] if host.replace(".", "").isdigit() or ":" in host else [host, "." + host]
    return [(h, p) for h in hosts for p in ports]


def reach(spec, trusted=True):
    """(host or '.domain', port) pairs that a secret lets a non-superuser's
    engine contact: its endpoint, else its type's standard hosts; for http
    secrets the hosts of their scopes. A secret an administrator did not define
    (trusted False) names no host of its own: its type's standard hosts only."""
    from .egress import url_hostport
    t = TYPES[spec["type"]]
    params = spec["params"]
    if not trusted:
        # its type's standard hosts, never one it names (an endpoint; a
        # connection string's own endpoints are simply not added)
        own = params.get("endpoint") or t.hosts == "scope"
        return [] if own else [(h, 443) for h in t.hosts]
    if t.hosts == "scope":
        found = [url_hostport(p) for p in spec.get("scope") or ()]
        return [(h, p) for hp in found if hp for h in (hp[0],) for p in hp[1]]
    ports = (80,) if params.get("use_ssl") is False else (443,)
    rules = []
    if params.get("endpoint"):
        rules += endpoint_rules(params["endpoint"], ports)
    if params.get("connection_string"):
        rules += _azure_connection_rules(params["connection_string"])
    if not params.get("endpoint"):
        rules += [(h, 443) for h in t.hosts]
    return rules


def _azure_connection_rules(text):
    """Endpoints an Azure connection string names (BlobEndpoint, DfsEndpoint)."""
    rules = []
    for item in text.split(";"):
        key, _, value = item.partition("=")
        if key.strip().lower() in ("blobendpoint", "dfsendpoint") and value.strip():
            scheme_ports = (80,) if value.strip().lower().startswith("http://") else (443,)
            rules += endpoint_rules(value.strip(), scheme_ports)
    return rules


# --- sources: servers that hold no secret but fetch user-mapping values ----------
#
# A SERVER of a source type is not a DuckDB secret: user mappings of other
# servers name it (source, source_id, source_option) and their values are
# fetched from it at sync time (sources.py), kept in the backend's memory and
# the engine only. Options of the source's own user mapping are its
# credentials (aws types); file_directory reads the server's own files.

# A user mapping's reference to a source.
SOURCE = "source"
SOURCE_ID = "source_id"
SOURCE_OPTION = "source_option"
REFERENCE = frozenset({SOURCE, SOURCE_ID, SOURCE_OPTION})
# What a source's value may never set: the options that say where requests go
# and which URLs a secret covers (a value could widen the secret's reach).
NOT_FROM_SOURCE = SERVER_ONLY | PROXY_OPTIONS | REFERENCE | frozenset({"endpoint", "account_id"})

DURATION = "duration"
KIND_DOC[DURATION] = "duration (`30s`, `5min`, `1h`, `1d`; a bare number is seconds)"


class SourceType:
    """A source server type: its server options, its user mapping's options
    (credentials to reach it), defaults, and whether only superusers' servers
    of it count."""
    __slots__ = ("name", "server_options", "required", "mapping_options", "defaults", "superuser_only",
                 "service", "batch", "doc", "example")

    def __init__(self, name, server_options, required, mapping_options=(), defaults=None, superuser_only=False,
                 service=None, batch=1, doc="", example=None):
        self.name = name
        self.server_options = _opts(*server_options)
        self.required = required
        self.mapping_options = _opts(*mapping_options)
        self.defaults = defaults or {}
        self.superuser_only = superuser_only
        self.service = service      # the AWS service (botocore name), or None
        self.batch = batch          # ids one request may fetch
        self.doc = doc
        self.example = example or {}


_AWS_SOURCE_SERVER = (
    "region", Option("endpoint", example="https://secretsmanager.eu-west-1.amazonaws.com"),
    Option("allowed_ids", LIST, example="prod/analytics/*"), Option("ttl", DURATION), Option("max_stale", DURATION),
    Option(PROVIDER, choices=("config", "credential_chain")),
    Option("chain", choices=AWS_CHAIN_MEMBERS, sep=";"), "profile",
)
_AWS_SOURCE_MAPPING = ("key_id", "secret", "session_token", Option(PROVIDER, choices=("config", "credential_chain")))

SOURCES = {s.name: s for s in (
    SourceType("aws_secrets_manager", _AWS_SOURCE_SERVER, ("allowed_ids",), _AWS_SOURCE_MAPPING,
               defaults={"ttl": 300, "max_stale": 3600}, service="secretsmanager", batch=20,
               doc="AWS Secrets Manager: a secret's current version (`AWSCURRENT`), a JSON object of user-mapping "
                   "options or, with `source_option`, one option's value.",
               example={"region": "eu-west-1", "allowed_ids": "prod/analytics/*"}),
    SourceType("aws_ssm_parameter", _AWS_SOURCE_SERVER, ("allowed_ids",), _AWS_SOURCE_MAPPING,
               defaults={"ttl": 300, "max_stale": 3600}, service="ssm", batch=10,
               doc="AWS Systems Manager Parameter Store: a parameter (`SecureString` decrypted), a JSON object of "
                   "user-mapping options or, with `source_option`, one option's value.",
               example={"region": "eu-west-1", "allowed_ids": "/prod/analytics/*"}),
    SourceType("file_directory", (Option("directory", example="/run/secrets/duckdb"),
                                  Option("allowed_ids", LIST, example="s3-reader,lake-*"), Option("ttl", DURATION)),
               ("directory", "allowed_ids"), defaults={"ttl": 60, "max_stale": 0}, superuser_only=True,
               doc="A directory of files on the server (a Kubernetes secret volume, `/run/secrets`): the file "
                   "named by `source_id`. Symbolic links inside the directory are followed (Kubernetes swaps "
                   "`..data` on rotation); a path that resolves outside it is refused. Servers of superusers only.",
               example={"directory": "/run/secrets/duckdb", "allowed_ids": "*"}),
)}

# What stage 1 of validation accepts on servers and in user mappings for sources.
SOURCE_SERVER_OPTIONS = frozenset(o for s in SOURCES.values() for o in s.server_options)
SOURCE_MAPPING_OPTIONS = frozenset(o for s in SOURCES.values() for o in s.mapping_options)
# A change of a source changes the secrets whose user mappings name it.
LINKED_TYPES = LINKED_TYPES | frozenset(SOURCES)
