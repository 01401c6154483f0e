"""AWS credentials resolved inside the backend with boto3/botocore.

A credential_chain secret is resolved here -- honouring its chain, profile,
region, assume_role_arn, external_id and session_name -- and the engine gets
concrete keys, refreshed before they expire. An rds secret yields IAM auth
tokens for the postgres servers that name it in aws_rds_secret.

Where credentials come from for the server process: the postmaster's
environment (AWS_ACCESS_KEY_ID, ...), the postgres OS user's ~/.aws files, or
files named by the settings duckdb.aws_config_file and
duckdb.aws_shared_credentials_file (postgresql.conf / ALTER SYSTEM).
The instance-metadata endpoint is used only when a chain names "instance".
"""

import datetime
import os

from .errors import FDW_INVALID_ATTRIBUTE_VALUE, INVALID_AUTHORIZATION, UNABLE_TO_CONNECT, PgError

# DuckDB chain member -> botocore credential provider METHODs, in order.
CHAIN_PROVIDERS = {
    "env": ("env",),
    "config": ("assume-role", "shared-credentials-file", "config-file"),
    "sso": ("sso",),
    "process": ("custom-process",),
    "web_identity": ("assume-role-with-web-identity",),
    "sts": ("assume-role",),
    "instance": ("container-role", "iam-role"),
}
# Without a chain: everything but instance metadata, which must be asked for.
DEFAULT_CHAIN = ("env", "config", "sso", "process", "web_identity")

NO_CREDENTIALS = INVALID_AUTHORIZATION
DEFAULT_SESSION_NAME = "duckdb_secrets"


# The clock that credentials and tokens expire by: the sync measures every
# expiry and refresh with now(). Tests move it forward in one backend instead
# of waiting: ADVANCE, set from a plpython3u DO block (tests/conftest.py,
# advance_clock). Untrusted PL/Python is for superusers only, who can run any
# code as the server anyway: no other role has a way to change it.
ADVANCE = datetime.timedelta(0)


def now():
    return datetime.datetime.now(datetime.timezone.utc) + ADVANCE


class Resolved:
    """Concrete credentials and when they stop working (None: never)."""

    __slots__ = ("key_id", "secret", "token", "expires")

    def __init__(self, key_id, secret, token=None, expires=None):
        self.key_id, self.secret, self.token, self.expires = key_id, secret, token, expires

    def params(self):
        out = {"key_id": self.key_id, "secret": self.secret}
        if self.token:
            out["session_token"] = self.token
        return out


class Settings:
    """AWS settings, read only from postgresql.conf / ALTER SYSTEM (a file path a
    role could SET would let it run a credential_process as the server)."""

    def __init__(self, config_file=None, credentials_file=None, role_duration=None,
                 refresh_margin=300, rds_token_max_age=600):
        self.config_file = config_file or None
        self.credentials_file = credentials_file or None
        self.role_duration = int(role_duration) if role_duration else None
        self.refresh_margin = datetime.timedelta(seconds=int(refresh_margin))
        self.rds_token_max_age = datetime.timedelta(seconds=int(rds_token_max_age))

    @classmethod
    def from_conf(cls, conf):
        def get(name, default=None):
            v = conf.get(f"duckdb.{name}")
            return v if v not in (None, "") else default
        return cls(get("aws_config_file"), get("aws_shared_credentials_file"), get("aws_assume_role_duration"),
                   get("aws_refresh_margin", 300), get("rds_token_max_age", 600))

    def due(self, creds):
        """When credentials must be refreshed (None: never)."""
        return creds.expires - self.refresh_margin if creds is not None and creds.expires else None


def _session(params, settings):
    import botocore.exceptions
    import botocore.session
    os.environ["AWS_EC2_METADATA_DISABLED"] = os.environ.get("AWS_EC2_METADATA_DISABLED", "true")
    sess = botocore.session.Session()
    if settings.config_file:
        sess.set_config_variable("config_file", settings.config_file)
    if settings.credentials_file:
        sess.set_config_variable("credentials_file", settings.credentials_file)
    if params.get("profile"):
        sess.set_config_variable("profile", params["profile"])
        try:
            sess.get_scoped_config()
        except botocore.exceptions.ProfileNotFound:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'AWS profile "{params["profile"]}" not found',
                          hint="Profiles are read from the postgres OS user's ~/.aws files or from the files "
                               "named by duckdb.aws_config_file and duckdb.aws_shared_credentials_file.") from None
    if params.get("region"):
        sess.set_config_variable("region", params["region"])
    if params.get("web_identity_token_file"):
        sess.set_config_variable("web_identity_token_file", params["web_identity_token_file"])
    return sess


def _chain(params):
    raw = params.get("chain")
    return tuple(m.strip().lower() for m in raw.split(";") if m.strip()) if raw else DEFAULT_CHAIN


def _base_credentials(sess, params, server):
    if params.get("key_id") and params.get("secret"):
        return Resolved(params["key_id"], params["secret"], params.get("session_token"))
    import botocore.exceptions
    resolver = sess.get_component("credential_provider")
    by_method = {p.METHOD: p for p in resolver.providers}
    chain = _chain(params)
    resolver.providers = [by_method[m] for member in chain for m in CHAIN_PROVIDERS.get(member, ())
                          if m in by_method]
    try:
        creds = resolver.load_credentials()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ValueError, OSError) as e:
        raise PgError(NO_CREDENTIALS, f'could not load AWS credentials for server "{server}"',
                      detail=f"{type(e).__name__}: {e}") from None
    if creds is None:
        return None
    frozen = creds.get_frozen_credentials()
    return Resolved(frozen.access_key, frozen.secret_key, frozen.token, getattr(creds, "_expiry_time", None))


def resolve(params, server, settings):
    """Credentials for a credential_chain secret's params, or None if the chain is empty."""
    sess = _session(params, settings)
    base = _base_credentials(sess, params, server)
    if not params.get("assume_role_arn"):
        return base
    if base is None:
        raise PgError(NO_CREDENTIALS, f'no AWS credentials to assume role for server "{server}"',
                      hint="The chain (" + ";".join(_chain(params)) + ") found nothing to call STS with.")
    import botocore.exceptions
    sts = sess.create_client("sts", region_name=params.get("region") or "us-east-1",
                             aws_access_key_id=base.key_id, aws_secret_access_key=base.secret,
                             aws_session_token=base.token)
    kwargs = {"RoleArn": params["assume_role_arn"],
              "RoleSessionName": params.get("session_name") or DEFAULT_SESSION_NAME}
    if params.get("external_id"):
        kwargs["ExternalId"] = params["external_id"]
    if settings.role_duration:
        kwargs["DurationSeconds"] = settings.role_duration
    try:
        out = sts.assume_role(**kwargs)["Credentials"]
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        raise PgError(NO_CREDENTIALS, f'could not assume role for server "{server}": {err.get("Code", "error")}',
                      detail=err.get("Message")) from None
    except botocore.exceptions.ParamValidationError as e:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'invalid role to assume for server "{server}"',
                      detail=str(e)) from None
    except botocore.exceptions.BotoCoreError as e:
        raise PgError(UNABLE_TO_CONNECT, f'could not reach AWS STS for server "{server}"', detail=str(e)) from None
    return Resolved(out["AccessKeyId"], out["SecretAccessKey"], out.get("SessionToken"), out.get("Expiration"))


def rds_token(params, creds, server):
    """An RDS IAM auth token (a presigned URL) for an rds secret's params."""
    import botocore.exceptions
    import botocore.session
    sess = botocore.session.Session()
    region = params.get("region")
    client = sess.create_client("rds", region_name=region,
                                aws_access_key_id=creds.key_id if creds else None,
                                aws_secret_access_key=creds.secret if creds else None,
                                aws_session_token=creds.token if creds else None)
    try:
        return client.generate_db_auth_token(DBHostname=params["rds_host"], Port=int(params["rds_port"]),
                                             DBUsername=params["rds_user"], Region=region)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ValueError) as e:
        raise PgError(NO_CREDENTIALS, f'could not generate an RDS auth token for server "{server}"',
                      detail=f"{type(e).__name__}") from None
