"""Values of user mappings fetched from a source: AWS Secrets Manager, SSM
Parameter Store, a directory of files (catalog.SOURCES).

A user mapping that says OPTIONS (source 'vault', source_id 'prod/x') holds
no value: at each sync (collect.servers) the references of the role's servers
are checked (check: the source server's owner, the role's USAGE on it,
allowed_ids), then fetched, one request per source and batch of ids (fetch).
What a source holds lives in the backend's memory (Session.source_cache) and
the engine only, fetched again once its ttl has passed, at once after a query
failed authentication with it (invalidate), or by duckdb.refresh_secrets().
A source that cannot be reached keeps the last good value for max_stale.
Nothing here puts a value in a message.
"""

import datetime
import os

from . import aws, validation
from .errors import PgError

# Errors of a source that answered: the value is not there or not ours to
# read. Anything else (a connection, a timeout, throttling, a 5xx) is "cannot be
# reached", when the last good value is kept for max_stale.
_ANSWERED = {"ResourceNotFoundException", "ParameterNotFound", "AccessDeniedException", "AccessDenied",
             "DecryptionFailure", "InvalidRequestException", "ValidationException", "UnrecognizedClientException",
             "InvalidSignatureException", "ParameterVersionNotFound", "InvalidParameterException",
             "IncompleteSignature", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredTokenException",
             "NotFound", "KMSDisabledException", "KMSInvalidStateException"}
MAX_FILE = validation.MAX_SOURCE_VALUE
# How soon a source that failed is tried again.
RETRY = 30


class NoCredentials(Exception):
    """The server's credential chain found nothing to reach a source with."""


class Entry:
    """One fetched id: the value (None: never fetched well), when it was last
    fetched and last fetched well, and why the last fetch failed (or None)."""
    __slots__ = ("value", "fetched", "good", "why")

    def __init__(self, value, fetched, good, why=None):
        self.value, self.fetched, self.good, self.why = value, fetched, good, why


class Source:
    """A source server as the role reaches it: its row and validated spec."""
    __slots__ = ("oid", "name", "spec", "key")

    def __init__(self, oid, name, spec):
        self.oid, self.name, self.spec = oid, name, spec
        import hashlib
        import json
        # the cache's key: the server and what reaching it takes (credentials
        # included), as a digest: the key itself is never a value
        self.key = (name, hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest())

    @property
    def ttl(self):
        return datetime.timedelta(seconds=self.spec["params"]["ttl"])

    @property
    def max_stale(self):
        return datetime.timedelta(seconds=self.spec["params"].get("max_stale", 0))


def check(ref, source, trusted, superuser_owner, role_super):
    """Why the role may not use this reference (None: it may). source: a
    Source, or None when the role has no USAGE on a source of that name."""
    name = validation.shown(ref["source"])
    if source is None:
        return f'source server "{name}" does not exist, or the role has no USAGE on it'
    stype = validation.source_type(source.name, source.spec["type"])
    if stype.superuser_only and not superuser_owner:
        return f'source server "{name}" of TYPE \'{stype.name}\' is not owned by a superuser'
    if not trusted:
        return (f'source server "{name}" is owned by a role that is not an administrator '
                "(a superuser or one of duckdb.trusted_server_owners)")
    if stype.name == "file_directory":
        problem = validation.file_id_problem(ref["id"])
        if problem is not None:
            return problem
    if not validation.id_allowed(source.spec, ref["id"]):
        return f'source_id is not among the allowed_ids of source server "{name}"'
    return None


def due(source, entry):
    """When an id must be fetched again: after its ttl; after a failure, after RETRY."""
    if entry.why is not None:
        return entry.fetched + datetime.timedelta(seconds=RETRY)
    return entry.fetched + source.ttl


CONNECT_TIMEOUT, READ_TIMEOUT = 2.0, 3.0


def _timeouts(sess):
    """(connect, read, all requests) timeouts of a fetch: at most CONNECT_TIMEOUT,
    READ_TIMEOUT and their sum, and within the statement's statement_timeout (a
    cancel is not seen while boto3 waits)."""
    import time
    left = None if sess.deadline is None else sess.deadline - time.time()
    if left is None:
        return CONNECT_TIMEOUT, READ_TIMEOUT, CONNECT_TIMEOUT + READ_TIMEOUT
    left = max(0.5, round(left * 2) / 2)      # in half seconds: a few clients, not one per statement
    return min(CONNECT_TIMEOUT, left), min(READ_TIMEOUT, left), min(CONNECT_TIMEOUT + READ_TIMEOUT, left)


def fetch(sess, wanted, now, settings, force=False):
    """{(source key, id): (value or None, why or None, stale)} for wanted
    {source key: (Source, set of ids)}, and when the next fetch is due.
    Cached values within their ttl are not asked for again (force: all are)."""
    cache = sess.source_cache
    out, next_due = {}, None
    for key, (source, ids) in wanted.items():
        stale = sorted(i for i in ids if force or (key, i) not in cache or now >= due(source, cache[(key, i)]))
        if stale:
            got = _fetch_ids(source, stale, settings, _timeouts(sess))
            done = aws.now()        # after the requests: a slow source's retry waits from here
            for i, (value, why) in got.items():
                old = cache.get((key, i))
                if why is None:
                    cache[(key, i)] = Entry(value, done, done)
                    sess.sources_fetched += 1
                elif why[1] and old is not None and old.value is not None and done < old.good + source.max_stale:
                    cache[(key, i)] = Entry(old.value, done, old.good, why[0])    # unreachable: the last good one
                else:
                    cache[(key, i)] = Entry(None, done, old.good if old else None, why[0])
        for i in ids:
            entry = cache[(key, i)]
            out[(key, i)] = (entry.value, entry.why, entry.why is not None and entry.value is not None)
            when = due(source, entry)
            if entry.value is not None and entry.why is not None:
                when = min(when, entry.good + source.max_stale)
            next_due = when if next_due is None else min(next_due, when)
    return out, next_due


# A failed authentication makes the values be fetched again at most this often:
# a role repeating a failing query does not hammer the source.
AGAIN = datetime.timedelta(seconds=10)
_EPOCH = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def invalidate(sess):
    """A query failed authentication: every value is asked for again at the next sync."""
    now = aws.now()
    if now - sess.sources_invalidated < AGAIN:
        return
    sess.sources_invalidated = now
    for entry in sess.source_cache.values():
        entry.fetched = _EPOCH
    sess.refresh_at = now


def _fetch_ids(source, ids, settings, timeouts):
    """{id: (value, None) or (None, (why, unreachable))}."""
    kind = source.spec["type"]
    if kind == "file_directory":
        return {i: _read_file(source.spec["params"]["directory"], i) for i in ids}
    try:
        client = _client(source, settings, timeouts)
    except NoCredentials as e:
        return {i: (None, (str(e), False)) for i in ids}
    except Exception as e:      # noqa: BLE001 - any failure to build a client: said, never raised
        why = getattr(e, "message", None) or type(e).__name__
        return {i: (None, (f"cannot reach the source: {why}", True)) for i in ids}
    service = validation.source_type(source.name, kind)
    out = {}

    def requests():
        for start in range(0, len(ids), service.batch):
            chunk = ids[start:start + service.batch]
            try:
                got = (_secrets_manager if kind == "aws_secrets_manager" else _ssm)(client, chunk)
            except Exception as e:  # noqa: BLE001
                why = _aws_error(e)
                got = {i: (None, why) for i in chunk}
            out.update(got)

    # A source that answers one byte at a time never trips a read timeout: the
    # requests run in a thread the backend waits for at most the whole budget
    # (left behind after it, the thread ends with its socket's next timeout).
    import threading
    worker = threading.Thread(target=requests, name="duckdb_secrets source", daemon=True)
    worker.start()
    worker.join(timeouts[2])
    done = dict(out)
    for i in ids:
        done.setdefault(i, (None, (f"cannot reach the source: no answer within {timeouts[2]:g} s", True)))
    return done


def _aws_error(e):
    """(why, unreachable) of a botocore exception, without any value."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        code = validation.shown(response.get("Error", {}).get("Code", "error"))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code not in _ANSWERED and (status >= 500 or "Throttl" in code):
            return f"cannot reach the source: {code}", True
        return f"the source refused: {code}", False
    return f"cannot reach the source: {type(e).__name__}", True


# botocore clients by source key: making one costs ~40 ms (a botocore session,
# its service model). A client made with the server's credential chain is
# made anew before those credentials expire (or after CHAIN_CLIENT_AGE).
_clients = {}
CHAIN_CLIENT_AGE = datetime.timedelta(minutes=15)


def _client(source, settings, timeouts):
    now = aws.now()
    hit = _clients.get((source.key, timeouts[:2]))
    if hit is not None and (hit[1] is None or now < hit[1]):
        return hit[0]
    client, until = _new_client(source, settings, now, timeouts)
    _clients[(source.key, timeouts[:2])] = (client, until)
    return client


def _new_client(source, settings, now, timeouts):
    import botocore.config
    params, creds = source.spec["params"], source.spec["credentials"]
    until = None
    sess = aws._session({"region": params.get("region"), "profile": params.get("profile")}, settings)
    if source.spec["provider"] == "credential_chain":
        try:
            found = aws.resolve({k: params[k] for k in ("chain", "profile", "region") if params.get(k)},
                                source.name, settings)
        except PgError as e:
            raise NoCredentials(e.message) from None
        if found is None:
            raise NoCredentials("no AWS credentials found in the server's credential chain (provider "
                                "'credential_chain': the postmaster's environment, the postgres OS user's ~/.aws "
                                "files, duckdb.aws_shared_credentials_file; docs/aws.md)")
        creds = {"key_id": found.key_id, "secret": found.secret, "session_token": found.token}
        until = min(x for x in (now + CHAIN_CLIENT_AGE, settings.due(found)) if x is not None)
    # one attempt: a source that does not answer costs a query at most connect + read timeout
    config = botocore.config.Config(connect_timeout=timeouts[0], read_timeout=timeouts[1],
                                    retries={"total_max_attempts": 1, "mode": "standard"})
    service = validation.source_type(source.name, source.spec["type"]).service
    return sess.create_client(service, region_name=params.get("region") or "us-east-1",
                              endpoint_url=params.get("endpoint"), config=config,
                              aws_access_key_id=creds.get("key_id"), aws_secret_access_key=creds.get("secret"),
                              aws_session_token=creds.get("session_token") or None), until


def _secrets_manager(client, ids):
    if len(ids) == 1:
        try:
            got = client.get_secret_value(SecretId=ids[0])
        except Exception as e:  # noqa: BLE001
            return {ids[0]: (None, _aws_error(e))}
        return {ids[0]: _secret_string(got)}
    got = client.batch_get_secret_value(SecretIdList=list(ids))
    out = {}
    for v in got.get("SecretValues", ()):
        for i in ids:
            if i in (v.get("Name"), v.get("ARN")):
                out[i] = _secret_string(v)
    for err in got.get("Errors", ()):
        i = err.get("SecretId")
        if i in ids and i not in out:
            code = str(err.get("ErrorCode", "error"))
            out[i] = (None, (f"the source refused: {validation.shown(code)}", code not in _ANSWERED))
    for i in ids:
        out.setdefault(i, (None, ("the source did not return it", False)))
    return out


def _secret_string(got):
    if got.get("SecretString") is None:
        return None, ("the secret has no SecretString (binary secrets are not supported)", False)
    return got["SecretString"], None


def _ssm(client, ids):
    got = client.get_parameters(Names=list(ids), WithDecryption=True)
    out = {}
    for p in got.get("Parameters", ()):
        for i in ids:
            if i in (p.get("Name"), p.get("ARN")):
                out[i] = (p.get("Value", ""), None)
    for i in got.get("InvalidParameters", ()):
        if i in ids:
            out[i] = (None, ("the source refused: ParameterNotFound", False))
    for i in ids:
        out.setdefault(i, (None, ("the source did not return it", False)))
    return out


def _read_file(directory, name):
    """(text, None) of a file in the directory, or (None, (why, unreachable))."""
    problem = validation.file_id_problem(name)
    if problem is not None:
        return None, (problem, False)
    real_dir = os.path.realpath(directory)
    real = os.path.realpath(os.path.join(directory, name))
    if not real.startswith(real_dir.rstrip("/") + "/"):
        return None, ("source_id resolves to a path outside the directory", False)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, ("no such file in the directory", False)
    except OSError as e:
        return None, (f"could not open the file: {e.strerror}", True)
    try:
        import stat
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, ("it is not a regular file", False)
        data = os.read(fd, MAX_FILE + 1)
    except OSError as e:
        return None, (f"could not read the file: {e.strerror}", True)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, ("the file is not UTF-8 text", False)
