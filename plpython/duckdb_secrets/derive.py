"""What DuckDB gets for each secret the role may use: the catalogue's hooks.

A secret type's catalogue entry names the hooks that turn a validated spec
into what DuckDB gets (catalog.SecretType.derive: HOOKS, applied in order) and
when a secret DuckDB holds must be created anew (.renew: RENEWALS). A hook
takes the Step (the session's caches, the settings, the role's other secrets,
the time) and a spec, and returns the spec DuckDB gets, or None: DuckDB gets
no copy. fill() derives a sync's secrets and the facts that follow from each
(Facts: the values to mask, the extensions, the hosts it reaches).
"""

import datetime
import re
from collections import namedtuple

from . import aws, catalog, validation
from .errors import FDW_INVALID_ATTRIBUTE_VALUE, INVALID_PARAMETER_VALUE, PgError
from .masking import sensitive_values, shown_values

# What DuckDB gets for a desired secret (SyncState.exported), and a secret
# DuckDB holds no copy of (SyncState.not_in_engine: rds).
Exported = namedtuple("Exported", "digest source spec out")
Held = namedtuple("Held", "server spec")


def digest(spec):
    """Identifies a secret's content within this backend (never stored or shown)."""
    return hash(repr((spec["type"], spec["provider"], spec["scope"], sorted(spec["params"].items()),
                      spec.get("attach"))))


class Digests:
    """digest() remembered per spec object: validated specs are memoised and
    never modified, so one sync can reuse the previous sync's digests."""

    def __init__(self, previous=None):
        self.previous = previous or {}
        self.current = {}

    def __call__(self, spec):
        hit = self.previous.get(id(spec))
        if hit is None or hit[0] is not spec:
            hit = (spec, digest(spec))
        self.current[id(spec)] = hit
        return hit[1]


class Facts:
    """What follows from an exported spec alone: its sensitive values, the
    values DuckDB shows, the extensions it needs, the hosts it reaches."""
    __slots__ = ("sensitive", "shown", "extensions", "reach")

    def __init__(self, spec):
        self.sensitive = sensitive_values(spec)
        self.shown = shown_values(spec)
        self.extensions = frozenset(catalog.extensions_for([spec]))
        self.reach = {}         # trusted -> egress rules

    def reach_rules(self, spec, trusted):
        rules = self.reach.get(trusted)
        if rules is None:
            rules = self.reach[trusted] = catalog.reach(spec, trusted)
        return rules


class Derived:
    """Facts by spec digest, remembered from one sync to the next."""

    def __init__(self, previous=None):
        self.previous = previous or {}
        self.current = {}

    def __call__(self, digest, spec):
        facts = self.current.get(digest)
        if facts is None:
            facts = self.current[digest] = self.previous.get(digest) or Facts(spec)
        return facts


# --- lock timeouts -------------------------------------------------------------

DEFAULT_LOCK_TIMEOUT = "5s"
_TIMEOUT = re.compile(r"^\s*(\d{1,9})\s*(ms|s|min)?\s*$")


def lock_timeout(value):
    """duckdb.attach_lock_timeout -> a PostgreSQL lock_timeout value ('0' turns it off)."""
    m = _TIMEOUT.match(DEFAULT_LOCK_TIMEOUT if value is None or not value.strip() else value)
    if not m:
        raise PgError(INVALID_PARAMETER_VALUE, 'invalid value for parameter "duckdb.attach_lock_timeout"',
                      hint="Use a duration such as 5s, 500ms or 1min; 0 turns the limit off.")
    return m.group(1) + (m.group(2) or "ms")


def with_lock_timeout(params, timeout):
    """A postgres secret's params with lock_timeout added to the connection's options.

    DuckDB's connection is another session: if this backend holds a lock the
    query needs (or has uncommitted rows it would update), it would wait
    forever. An explicit lock_timeout already in options is kept."""
    if int(re.match(r"\d+", timeout).group()) == 0:
        return params
    setting = f"-c lock_timeout={timeout}"
    params = dict(params)
    if "uri" in params:
        uri = params["uri"]
        if "lock_timeout" not in uri and "options=" not in uri:
            encoded = setting.replace(" ", "%20").replace("=", "%3D")
            params["uri"] = uri + ("&" if "?" in uri else "?") + "options=" + encoded
        return params
    existing = params.get("options") or ""
    if "lock_timeout" not in existing:
        params["options"] = (existing + " " + setting).strip()
    return params


# --- the hooks -------------------------------------------------------------------

class Step:
    """One secret's derivation: its type and server, the session (caches of
    resolved credentials and tokens), the role's desired secrets (name ->
    (server, spec)), the settings (aws.Settings with lock_timeout), the time;
    due: when what the hooks made must be made anew (None: never)."""
    __slots__ = ("stype", "server", "sess", "desired", "settings", "now", "due")

    def __init__(self, stype, server, sess, desired, settings, now):
        self.stype, self.server, self.sess, self.desired = stype, server, sess, desired
        self.settings, self.now, self.due = settings, now, None

    def renew_by(self, when):
        if when is not None:
            self.due = when if self.due is None else min(self.due, when)


def credentials(sess, server, spec, settings, now):
    """Resolved AWS credentials for a credential_chain spec, cached until due."""
    key = digest(spec)
    cached = sess.resolved.get(server)
    if cached is not None and cached[0] == key:
        due = settings.due(cached[1])
        if due is None or now < due:
            return cached[1]
    creds = aws.resolve(spec["params"], server, settings)
    sess.resolved[server] = (key, creds)
    return creds


def token_source(step, spec):
    """A source of tokens for other secrets (rds): DuckDB needs no copy."""
    return None


def aws_chain(step, spec):
    """A credential_chain resolved here (boto3): DuckDB gets provider config with the keys."""
    if spec["provider"] != "credential_chain":
        return spec
    creds = credentials(step.sess, step.server, spec, step.settings, step.now)
    config = step.stype.providers["config"].options
    params = {k: v for k, v in spec["params"].items() if k in config}
    if creds is not None:
        params.update(creds.params())
    step.renew_by(step.settings.due(creds))
    return {"type": step.stype.name, "provider": "config", "scope": spec["scope"], "params": params}


def rds_password(step, spec):
    """The IAM token of the rds server its rds_token_option names as the password,
    generated anew before duckdb.rds_token_max_age has passed."""
    option = step.stype.rds_token_option
    if option not in spec["params"]:
        return spec
    sess, settings, now = step.sess, step.settings, step.now
    rds_name = validation.engine_name(spec["params"][option])
    # it must name a token source (a type DuckDB gets no copy of: rds)
    if rds_name not in step.desired or catalog.TYPES[step.desired[rds_name][1]["type"]].exported:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'server "{validation.shown(spec["params"][option])}" named by '
                      f"{option} is not an rds secret this role may use")
    rds_server, rds_spec = step.desired[rds_name]
    key = digest(rds_spec)
    cached = sess.tokens.get(step.server)
    if cached is not None and cached[0] == key and now < cached[2] + settings.rds_token_max_age:
        token, generated = cached[1], cached[2]
    else:
        creds = credentials(sess, rds_server, rds_spec, settings, now)
        token, generated = aws.rds_token(rds_spec["params"], creds, rds_server), now
        sess.tokens[step.server] = (key, token, generated)
    params = {k: v for k, v in spec["params"].items() if k != option}
    params["password"] = token
    step.renew_by(generated + settings.rds_token_max_age)
    return {**spec, "params": params}


def attach_lock_timeout(step, spec):
    """duckdb.attach_lock_timeout in the connection's options."""
    return {**spec, "params": with_lock_timeout(spec["params"], step.settings.lock_timeout)}


HOOKS = {f.__name__: f for f in (token_source, aws_chain, rds_password, attach_lock_timeout)}

# An iceberg secret with OAuth2 client credentials gets its token when DuckDB
# creates it; the secret is created anew (a new token) when 80% of the token's
# lifetime has passed, so a catalog never sees an expired one.
_EXPIRES_IN = re.compile(r"(?:^|;)expires_in=(\d+)")
DEFAULT_TOKEN_LIFETIME = 3600


def oauth2_token(secret_string, name, spec, now):
    """When a secret whose token DuckDB fetched must be created anew (None: it fetched none).
    secret_string(name): how DuckDB lists the secret it holds."""
    if "token" in spec["params"] or "client_secret" not in spec["params"]:
        return None
    m = _EXPIRES_IN.search(secret_string(name) or "")
    lifetime = int(m.group(1)) if m else DEFAULT_TOKEN_LIFETIME
    return now + datetime.timedelta(seconds=max(1.0, lifetime * 0.8))


RENEWALS = {f.__name__: f for f in (oauth2_token,)}

_UNKNOWN = sorted({h for t in catalog.TYPES.values() for h in t.derive if h not in HOOKS}
                  | {t.renew for t in catalog.TYPES.values() if t.renew is not None and t.renew not in RENEWALS})
if _UNKNOWN:
    raise RuntimeError(f"the catalogue names hooks derive.py does not have: {', '.join(_UNKNOWN)}")


def exported(sess, server, spec, desired, settings, now):
    """(the spec DuckDB gets or None, when it must be renewed or None)."""
    stype = catalog.TYPES[spec["type"]]
    step = Step(stype, server, sess, desired, settings, now)
    for name in stype.derive:
        spec = HOOKS[name](step, spec)
        if spec is None:
            return None, None
    return spec, step.due


def renewal(secret_string, name, out, now):
    """When the secret DuckDB now holds as name must be created anew, or None."""
    hook = catalog.TYPES[out["type"]].renew
    return None if hook is None else RENEWALS[hook](secret_string, name, out, now)


# --- a sync's secrets -------------------------------------------------------------

def fill(plpy, sess, state, desired, now):
    """What DuckDB gets for each of `desired` (credential chains resolved,
    tokens, lock timeouts) into state.exported / not_in_engine / facts.
    Returns the digests to remember (a full sync keeps only these)."""
    digests = Digests(sess.digests)
    derived = Derived(sess.derived)
    for name, (server, spec) in desired.items():
        try:
            out, due = exported(sess, server, spec, state.desired, sess.context.settings, now)
        except PgError as e:
            plpy.warning(f'skipping DuckDB secret {label(server, state.origins[name])}: {e.message}')
            continue
        if due is not None:
            state.refresh_at = due if state.refresh_at is None else min(state.refresh_at, due)
        if out is None:
            state.not_in_engine[name] = Held(server, spec)
        else:
            # A spec exported as is keeps its digest from the last sync; a
            # derived one (resolved keys, a token, a lock timeout) is new each time.
            spec_digest = digests(out) if out is spec else digest(out)
            state.exported[name] = Exported(spec_digest, server, spec, out)
            state.facts[name] = derived(spec_digest, out)
    sess.derived.update(derived.current)
    sess.digests.update(digests.current)
    return digests.current


def default_secrets(superuser, state, settings):
    """A superuser's ATTACHes without SECRET get the lock timeout too: DuckDB's
    default secret of each lock-timeout type among the role's secrets (options
    only; the ATTACH string supplies the rest)."""
    if not superuser:
        return
    for type_name in sorted({spec["type"] for _, spec in state.desired.values()}):
        name = f"__default_{type_name}"
        if catalog.TYPES[type_name].lock_timeout and name not in state.desired:
            state.desired[name] = (name, {"type": type_name, "provider": "config", "scope": None,
                                          "params": with_lock_timeout({}, settings.lock_timeout)})
            state.origins[name] = "default"


def label(name, origin):
    """How a warning names a secret: its server, or its name and where it is from."""
    if origin == "server":
        return f'for server "{validation.shown(name)}"'
    return f'"{validation.shown(name)}" from {origin}'
