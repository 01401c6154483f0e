"""What the current role may do: one immutable RolePolicy a sync works with.

It holds who the role is (superuser, file access), the administrator's caps and
settings (configuration files only), whose servers count as an administrator's,
which URL prefixes its engine may name and which hosts it may reach; and the
rules that decide which secrets it takes (server_refusal, secret_refusal,
table_problem). A full sync makes it from the fingerprint row and the
administrator's settings (RolePolicy.of; a patch keeps it: the same role,
settings and memberships); opened() completes it with what the role's
secrets open, once per sync. Engine start-up (engine.Engine), the statement
check (statements.check), the egress proxy (its rules: reach) and masking
(masking.engine_masks) read it; a change of key() means a new engine.
"""

import re

from . import catalog, storage, validation
from .errors import INVALID_PARAMETER_VALUE, PgError

DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_THREADS = 1
# The administrator's caps (configuration files only; a role's SET, and a
# superuser's, may lower the engine's settings, never exceed these).
DEFAULT_MAX_MEMORY_LIMIT = "1GB"
DEFAULT_MAX_THREADS = 1
DEFAULT_MAX_SPILL = "1GB"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000 ** 2, "mib": 1024 ** 2, "gb": 1000 ** 3,
               "gib": 1024 ** 3, "tb": 1000 ** 4, "tib": 1024 ** 4}


def parse_size(value, setting):
    """'1GB', '512MiB', '1000000' (bytes) -> bytes; 22023 naming the setting otherwise."""
    m = _SIZE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise PgError(INVALID_PARAMETER_VALUE, f'invalid value for parameter "{setting}": "{str(value)[:40]}"',
                      hint="Use a size such as 512MB or 2GB.")
    # DuckDB reads 'GB' as 1000^3 bytes and 'GiB' as 1024^3, as here.
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def capped_memory(requested, cap):
    limit = parse_size(cap or DEFAULT_MAX_MEMORY_LIMIT, "duckdb.max_memory_limit")
    want = parse_size(requested, "duckdb.memory_limit") if requested else limit
    return f"{max(min(want, limit) // 1024, 1)}KiB"


def capped_threads(requested, cap):
    limit = _threads(cap or DEFAULT_MAX_THREADS, "duckdb.max_threads")
    return min(_threads(requested or DEFAULT_THREADS), limit)


def _threads(value, setting="duckdb.threads"):
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise PgError(INVALID_PARAMETER_VALUE, f'invalid value for parameter "{setting}"',
                      hint="Use a positive integer.")
    return n


_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def parse_engine_settings(text):
    """duckdb.engine_settings: 'name=value; name=value' -> [(name, value)]."""
    out = []
    for item in (text or "").split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or not _SETTING_NAME.match(name):
            raise PgError(INVALID_PARAMETER_VALUE, 'invalid value for parameter "duckdb.engine_settings"',
                          detail="Each item must be name=value, separated by semicolons.")
        out.append((name, value.strip()))
    return out


# URL prefixes a non-superuser's engine may name: the default scopes of the
# object-store types whose extension the engine has loaded (a prefix of a
# scheme DuckDB does not know yet is taken for a local path), plus http(s)
# only under the scope of an http secret the role holds, or a prefix an
# administrator lists in duckdb.allowed_url_prefixes (postgresql.conf / ALTER
# SYSTEM only). Which hosts a request may reach is the egress proxy's part.
def object_store_prefixes(extensions):
    return {p for t in catalog.TYPES.values() if t.extension in extensions
            for p in t.default_scope if "://" in p}


# Engine settings of the administrator's that name a host requests go to.
_ENDPOINT_SETTINGS = {"s3_endpoint": "s3_use_ssl"}


def _egress():
    """The egress proxy's module: non-superusers' engines only."""
    from . import egress
    return egress


def _listed(text):
    return [p.strip() for p in (text or "").split(",") if p.strip()]


class RolePolicy:
    """What the current role may do in its engine, for one sync; immutable.

    prefixes: the URL prefixes it may name; reach: the (host or '.domain', port)
    pairs its engine may contact (a superuser's engine: no egress rules).
    (_copy only remembers copy_prefixes' answers: nothing of the policy.)"""

    __slots__ = ("role", "superuser", "read_files", "write_files", "memory_limit", "threads", "max_spill",
                 "engine_settings", "prefixes", "reach", "trusted_owners", "admin_prefixes", "capped", "_copy")

    def __init__(self, role, superuser, read_files=False, write_files=False, memory_limit=None, threads=None,
                 conf=None, prefixes=None, reach=()):
        conf = conf or {}
        init = object.__setattr__
        init(self, "role", role)
        init(self, "superuser", bool(superuser))
        init(self, "read_files", bool(read_files))
        init(self, "write_files", bool(write_files))
        init(self, "memory_limit", capped_memory(memory_limit or DEFAULT_MEMORY_LIMIT,
                                                 conf.get("duckdb.max_memory_limit")))
        init(self, "threads", capped_threads(threads, conf.get("duckdb.max_threads")))
        # what a role asked for above the administrator's caps: (setting, asked, cap, used)
        capped = []
        max_mem = conf.get("duckdb.max_memory_limit") or DEFAULT_MAX_MEMORY_LIMIT
        if memory_limit and parse_size(memory_limit, "duckdb.memory_limit") > parse_size(
                max_mem, "duckdb.max_memory_limit"):
            capped.append(("duckdb.memory_limit", str(memory_limit), "duckdb.max_memory_limit", str(max_mem)))
        max_thr = conf.get("duckdb.max_threads") or DEFAULT_MAX_THREADS
        if threads and _threads(threads) > _threads(max_thr, "duckdb.max_threads"):
            capped.append(("duckdb.threads", str(threads), "duckdb.max_threads", str(max_thr)))
        init(self, "capped", tuple(capped))
        spill = conf.get("duckdb.max_temp_directory_size") or DEFAULT_MAX_SPILL
        init(self, "max_spill", f'{parse_size(spill, "duckdb.max_temp_directory_size") // 1024}KiB')
        init(self, "engine_settings", conf.get("duckdb.engine_settings") or "")
        init(self, "trusted_owners", tuple(_listed(conf.get("duckdb.trusted_server_owners"))))
        init(self, "admin_prefixes", tuple(_listed(conf.get("duckdb.allowed_url_prefixes"))))
        self._open(self.admin_prefixes if prefixes is None else prefixes, reach)

    def _open(self, prefixes, reach):
        init = object.__setattr__
        init(self, "prefixes", tuple(sorted(set(prefixes))))
        init(self, "reach", () if self.superuser else _egress().Policy(reach).rules)
        init(self, "_copy", {})

    @classmethod
    def of(cls, row, conf):
        """The policy of the role a fingerprint row describes, before its secrets open anything."""
        return cls(row["role"], row["rolsuper"], row["rd"], row["wr"], row["mem"], row["thr"], conf)

    def opened(self, prefixes, reach):
        """This policy with the URL prefixes and hosts the role's secrets open (url_prefixes, reach_of)."""
        other = object.__new__(RolePolicy)
        for name in self.__slots__:
            object.__setattr__(other, name, getattr(self, name))
        other._open(prefixes, reach)
        return other

    def __setattr__(self, name, value):
        raise AttributeError(f"a RolePolicy does not change ({name})")

    def key(self):
        """What decides an engine's configuration; a change means a new engine."""
        return (self.role, self.superuser, self.read_files, self.write_files, self.memory_limit, self.threads,
                self.prefixes, self.engine_settings, self.reach, self.max_spill)

    # --- the engine and the statement check ---------------------------------

    @property
    def local_files(self):
        """Local files: superusers, and members of both pg_read_server_files and
        pg_write_server_files (DuckDB cannot tell reading from writing a path)."""
        return self.superuser or (self.read_files and self.write_files)

    def allowed(self, extensions):
        """Prefixes for DuckDB's allowed_directories (non-superusers only)."""
        return sorted(object_store_prefixes(extensions) | set(self.prefixes) | ({"/"} if self.local_files else set()))

    def copy_prefixes(self, extensions):
        """What COPY ... TO may name in an engine with these extensions: None for
        roles with file access, else the URL prefixes it may name."""
        if self.local_files:
            return None
        key = frozenset(extensions)
        found = self._copy.get(key)
        if found is None:
            found = self._copy[key] = tuple(self.allowed(extensions))
        return found

    # --- which secrets it takes -----------------------------------------------

    def server_refusal(self, row, trusted):
        """Why a row of duckdb._role_secrets gives the role nothing, before its
        options are read; None: read them. trusted: an administrator owns the server."""
        if self.superuser and not trusted:
            # A less privileged owner must not steer a superuser's engine (the
            # longest scope wins): superusers take administrators' servers only.
            return ("owned by a role that is not an administrator (duckdb.trusted_server_owners): "
                    "a superuser's engine takes administrators' servers only")
        if row.get("others_only"):
            # Its mappings are other roles': not this role's secret, even if the
            # server alone would make one (say, an anonymous one that shadows
            # this role's own for the same scope). Listed, with why.
            return "no user mapping for this role or PUBLIC"
        return None

    def routes_trusted(self, row, trusted):
        """Whether where a server's requests go was said by an administrator. A
        role with USAGE can write its own user mapping: where its requests go is
        said by the server or a PUBLIC mapping (its owner's), not there."""
        if trusted and not self.superuser and row.get("umrole") != "public":
            names = {str(o).split("=", 1)[0].strip().lower() for o in row["umoptions"] or ()}
            return not names & catalog.ROUTING_OPTIONS
        return trusted

    def secret_refusal(self, server, spec, trusted):
        """(why, warning or None) when the validated secret is not for the role; None: it is."""
        if catalog.TYPES[spec["type"]].superuser_only and not self.superuser:
            # database connections from the server: superusers only
            return f"needs a superuser: type {spec['type']} connects from the database server", None
        if not trusted and catalog.PROXY_OPTIONS & set(spec["params"]):
            return ("its proxy options would send requests around the egress proxy, and its owner is not an "
                    "administrator",
                    f'skipping DuckDB secret for server "{validation.shown(server)}": its proxy '
                    "options would send requests around the engine's egress proxy, and its owner is "
                    "not an administrator (docs/security.md)")
        return None

    def table_problem(self, name, spec, servers, scopes):
        """Why a secret table's row may not act for the role, or None.
        servers: the role's secrets from servers; scopes: storage.server_scopes of them."""
        if name in servers:
            return "a server of the same name takes precedence"
        # Whoever can write a row must not act as the server, nor override what
        # an administrator defined.
        problem = validation.needs_server_environment(spec)
        if problem is not None:
            return problem + "; only servers may"
        if catalog.PROXY_OPTIONS & set(spec["params"]):
            return "its proxy options would send requests around the engine's egress proxy; only servers may"
        covering = storage.covering_server(spec, scopes)
        if covering is not None:
            return (f'server "{validation.shown(covering)}" covers its scope '
                    "(a table secret never overrides a server's)")
        return None

    # --- what its secrets open ---------------------------------------------

    def url_prefixes(self, exported, origins, trusted):
        """duckdb.allowed_url_prefixes, and the http(s) scopes of the secrets whose
        type opens them. Only administrators' servers open any: never table rows,
        never servers of other owners (that would get around the configuration files).
        exported: engine name -> derive.Exported; origins, trusted: as SyncState's."""
        return list(self.admin_prefixes) + [
            p for name, (_, _, spec, _) in exported.items() if catalog.TYPES[spec["type"]].opens_prefixes
            and origins.get(name) == "server" and trusted.get(name)
            for p in spec["scope"] or () if p.startswith(("http://", "https://"))]

    def reach_of(self, secrets, prefixes):
        """What a non-superuser's engine may contact: its secrets' endpoints (or
        their types' standard hosts; only the latter for secrets an administrator
        did not define), the hosts of the URL prefixes, and endpoints the
        administrator set in duckdb.engine_settings.
        secrets: [(derive.Facts, spec, trusted)] (the facts remember a spec's rules)."""
        rules = [rule for facts, spec, trusted in secrets for rule in facts.reach_rules(spec, trusted)]
        egress = _egress()
        for prefix in prefixes:
            hp = egress.url_hostport(prefix)
            if hp is not None:
                rules += [(hp[0], p) for p in hp[1]]
        settings = dict(parse_engine_settings(self.engine_settings))
        for name, ssl_setting in _ENDPOINT_SETTINGS.items():
            if settings.get(name):
                plain = settings.get(ssl_setting, "true").strip().lower() in ("false", "0", "off", "no")
                rules += catalog.endpoint_rules(settings[name], (80,) if plain else (443,))
        return rules
