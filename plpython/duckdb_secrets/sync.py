"""Export: keep the engine's secrets in line with the catalog, for the current role.

ensure() runs before each engine use, stage by stage: observe (the fingerprint,
fingerprint.py: one query); nothing to do if it is unchanged; else the
administrator's settings and the role's policy (Context, on a full sync),
which servers to re-read (all, or only those the generations since the last
sync changed: _patch), collect server and table secrets (collect.py), derive
what DuckDB gets (derive.py: credential chains, tokens, lock timeouts), prepare
the engine (the policy completed with what the secrets open, extensions,
masks), apply (create, replace or drop only the secrets that changed),
remember (SyncState).
"""

from . import aws, catalog, collect, crypto, derive, extensions, fingerprint, interrupts, masking
from .engine import Engine, RemoteError, quote_ident, secret_sql
from .engine_sql import attach_sql
from .errors import INSUFFICIENT_PRIVILEGE, PgError, from_duckdb
from .policy import RolePolicy
from .session import Loaded, session
from .validation import shown


class Context:
    """The administrator's settings (configuration files only) a sync works
    with, and the role's policy before its secrets open anything; made by a
    full sync, kept by patches (same role, settings and memberships)."""
    __slots__ = ("conf", "settings", "keys", "policy", "rolname")

    def __init__(self, conf, row):
        self.conf = conf
        self.settings = aws.Settings.from_conf(conf)
        self.settings.lock_timeout = derive.lock_timeout(row["alt"])
        self.keys = crypto.Keyring(conf)
        self.policy = RolePolicy.of(row, conf)
        self.rolname = row["rolname"]       # the engine's process title shows it


class SyncState:
    """What one sync worked out; the next one patches it when only some servers changed.

    servers: server oid -> collect.ServerSecret; desired: engine name -> (source,
    spec); origins, trusted: engine name -> where from / an administrator's;
    skipped: engine name -> (server, type, why, scopes it would cover, catalog); exported: engine name ->
    derive.Exported; not_in_engine: engine name -> derive.Held; facts: engine
    name -> derive.Facts; refresh_at: when something must be renewed."""
    __slots__ = ("servers", "desired", "origins", "trusted", "skipped", "exported", "not_in_engine", "facts",
                 "refresh_at", "prefixes", "needed", "from_table")

    def __init__(self):
        self.servers, self.desired, self.origins, self.trusted, self.skipped = {}, {}, {}, {}, {}
        self.exported, self.not_in_engine, self.facts, self.refresh_at = {}, {}, {}, None
        self.prefixes, self.needed = None, None     # worked out by _prepare_engine
        self.from_table = False                     # a secret table's row is among them

    def copy(self):
        other = SyncState()
        for slot in self.__slots__:
            value = getattr(self, slot)
            setattr(other, slot, dict(value) if isinstance(value, dict) else value)
        return other

    def add_server(self, srv):
        name = srv.name
        if srv.source:
            return              # a source of values for others (sources.py), no secret itself
        if srv.spec is None:
            self.skipped[name] = (srv.srvname, srv.srvtype, srv.why, srv.scopes, srv.catalog)
            return
        self.desired[name] = (srv.srvname, srv.spec)
        self.origins[name] = "server"
        self.trusted[name] = srv.trusted

    def forget(self, name):
        for d in (self.desired, self.origins, self.trusted, self.skipped, self.exported, self.not_in_engine,
                  self.facts):
            d.pop(name, None)


def ensure(plpy, GD, row=None):
    """The engine for the current role, with its secrets in line. Returns the Session.
    row: the fingerprint row an entry point read for this statement (fingerprint.read), if any."""
    sess = session(GD)
    obs = fingerprint.observe(plpy, sess, row if row is not None else fingerprint.read(plpy, sess))
    now = aws.now()
    if (sess.engine is not None and obs.key == sess.fingerprint and sess.engine.usable()
            and (sess.refresh_at is None or now < sess.refresh_at)):
        return sess
    only = fingerprint.changed_servers(sess, obs, now)
    state, touched = (_patch(plpy, GD, sess, obs, only, now) if only is not None else (None, None))
    if state is None:           # everything: the first sync, or a change a patch does not follow
        sess.context = Context(sess.admin_conf(plpy), obs.row)
        _ignored_check(plpy, sess)
        state, touched = _full(plpy, GD, sess, obs, now), None
    engine = sess.engine
    _prepare_engine(plpy, GD, sess, state, sess.state if touched is not None else None, touched)
    if sess.engine is not engine:
        touched = None          # a new engine holds nothing yet: every secret goes in
    try:
        warnings = _apply(plpy, sess, state.exported, state.origins, touched)
    except BaseException:
        sess.recycle()          # stopped or failed half way: what the engine holds is not known
        raise
    for text in warnings:
        plpy.warning(text)
    _attachables(plpy, sess, state.exported)
    sess.state = state
    sess.not_in_engine, sess.origins, sess.skipped = state.not_in_engine, state.origins, state.skipped
    refresh_at = state.refresh_at
    if sess.token_due:
        due = min(sess.token_due.values())
        refresh_at = due if refresh_at is None else min(refresh_at, due)
    sess.refresh_at = refresh_at
    sess.fingerprint, sess.seen, sess.tentative = obs.key, obs.row["n"], obs.writing
    if sess.engine is not engine:
        interrupts.release_free_memory()
    return sess


def _full(plpy, GD, sess, obs, now):
    """The SyncState from scratch: every server the role may use, the secret
    table's rows, the default secrets, what DuckDB gets for each."""
    state = SyncState()
    for srv in collect.servers(plpy, GD, sess, obs.row["role"], None):
        state.servers[srv.oid] = srv
        state.add_server(srv)
    _sources_due(sess, state)
    collect.table_secrets(plpy, sess.context.policy, obs.table, state)
    derive.default_secrets(sess.context.policy.superuser, state, sess.context.settings)
    sess.digests = derive.fill(plpy, sess, state, state.desired, now)
    # Remembered for the next sync: the facts of what the engine holds now, no more.
    sess.derived = {state.exported[name].digest: facts for name, facts in state.facts.items()}
    return state


def _patch(plpy, GD, sess, obs, only, now):
    """(the last SyncState with the servers in `only` read again, the engine
    names touched), or (None, None) when a changed server is one others depend on."""
    old = sess.state
    if any(_linked(old.servers[o]) for o in only if o in old.servers):
        return None, None
    fresh = collect.servers(plpy, GD, sess, obs.row["role"], sorted(only))
    if any(_linked(srv) for srv in fresh):
        return None, None
    state = old.copy()
    _sources_due(sess, state)
    touched = {old.servers[o].name for o in only if o in old.servers}
    for o in only:
        state.servers.pop(o, None)
    for name in touched:
        state.forget(name)
    for srv in fresh:
        state.servers[srv.oid] = srv
        state.forget(srv.name)
        state.add_server(srv)
        touched.add(srv.name)
    derive.fill(plpy, sess, state, {n: state.desired[n] for n in touched if n in state.desired}, now)
    return state, touched


def _linked(srv):
    return (srv.srvtype or "").strip().lower() in catalog.LINKED_TYPES


def _sources_due(sess, state):
    """Values fetched from sources are fetched again when their ttl has passed."""
    due = sess.sources_due
    if due is not None:
        state.refresh_at = due if state.refresh_at is None else min(state.refresh_at, due)


def _prepare_engine(plpy, GD, sess, state, old=None, touched=None):
    """An engine whose policy, extensions and masks fit state.exported.
    A patch (old: the previous state, touched: the names read again) works
    out again only what the touched secrets can change."""
    policy = sess.context.policy
    exported, facts = state.exported, state.facts
    if policy.capped != sess.capped:
        # a role's setting above the administrator's cap: said once, not cut silently
        sess.capped = policy.capped
        for setting, asked, cap, used in policy.capped:
            plpy.notice(f'{setting} "{asked}" is above {cap}: the engine uses {used}',
                        hint=f"An administrator sets {cap} in the configuration files.")
    if old is None or any(d.get(n) is not None and catalog.TYPES[d[n][1]["type"]].opens_prefixes
                          for n in touched for d in (old.desired, state.desired)):
        state.prefixes = policy.url_prefixes(exported, state.origins, state.trusted)
    else:
        state.prefixes = old.prefixes
    # A superuser's engine has no egress rules: its reach is not worked out.
    reach = () if policy.superuser else policy.reach_of(
        [(facts[name], out, state.trusted.get(name, False)) for name, (_, _, _, out) in exported.items()],
        state.prefixes)
    policy = policy.opened(state.prefixes, reach)
    if old is None:
        needed = set().union(*{f.extensions for f in facts.values()})
    else:       # a superset is enough: an extension no longer needed stays loaded
        needed = set(old.needed or ()).union(*{facts[n].extensions for n in touched if n in facts})
    state.needed = needed
    if (sess.engine is None or sess.engine.policy.key() != policy.key()
            or not needed <= sess.engine.extensions or not sess.engine.usable()):
        sess.recycle()
        if policy.superuser:        # and what duckdb.autoload_extension() asks for
            needed |= extensions.autoloaded(plpy, GD)
        sess.engine = Engine(policy, needed, name=sess.context.rolname)
        _sandbox_check(plpy, sess)
        _habits_check(plpy)
        old = None                  # a new engine: its masks are worked out again
    if old is None or not all(_same_masks(old.facts.get(n), facts.get(n)) for n in touched):
        sess.scrub, sess.cell_scrub = masking.engine_masks(policy, facts.values(), sess.scrub)


def _same_masks(before, after):
    if before is None or after is None:
        return before is after
    return before.sensitive == after.sensitive and before.shown == after.shown


def _apply(plpy, sess, exported, origins, names=None):
    """Create, replace or drop the engine's secrets so that they are `exported`
    (only the secrets called `names`, when only those can have changed), in one
    request to the engine; returns the warnings to give."""
    engine = sess.engine
    warnings = []
    ops = []
    for name in [n for n in (sess.loaded if names is None else names) if n in sess.loaded and n not in exported]:
        ops.append((f"DROP TEMPORARY SECRET IF EXISTS {quote_ident(name)}", None))
        del sess.loaded[name]
    now = aws.now()
    for name in [n for n in sess.token_due if n not in exported]:
        del sess.token_due[name]
    todo = exported.items() if names is None else [(n, exported[n]) for n in names if n in exported]
    created = []
    for name, (digest, srvname, spec, out) in todo:
        due = sess.token_due.get(name)
        if name in sess.loaded and sess.loaded[name].digest == digest and (due is None or now < due):
            continue
        sql, params = secret_sql(name, engine.adapt(out))
        created.append((len(ops), name, digest, srvname, spec, out))
        ops.append((sql, params))
    if not ops:
        return warnings
    results = engine.batch(plpy, ops)
    failed = []
    for at, name, digest, srvname, spec, out in created:
        error = results[at].get("error")
        if error is not None:       # the message is scrubbed below
            sess.loaded.pop(name, None)
            failed.append(name)
            err = from_duckdb(RemoteError(str(error.get("kind")), str(error.get("message"))))
            warnings.append(f"skipping DuckDB secret {derive.label(srvname, origins[name])}: "
                            f"{sess.scrub(err.message)}")
            continue
        sess.loaded[name] = Loaded(digest, srvname, spec)
        due = derive.renewal(lambda n: _secret_string(plpy, engine, n), name, out, now)
        if due is not None:
            sess.token_due[name] = due
    if failed:
        engine.batch(plpy, [(f"DROP TEMPORARY SECRET IF EXISTS {quote_ident(n)}", None) for n in failed])
    return warnings


def _attachables(plpy, sess, exported):
    """Tell the engine which catalogs it attaches on first use: those of the
    servers whose secrets it holds that carry attach_as (sorted by secret name:
    the first claims a name). Each one's key changes with what the ATTACH would
    be and with the secrets it uses (its own, and a DuckLake's metadata secret),
    so the engine detaches one whose server changed, or that is gone, and
    attaches it anew at the next use. Sent only when it changed."""
    table = {}
    # (the few secrets with attach_as first: a sync of 10,000 secrets sorts none of the rest)
    for name, (digest, server, spec, _) in sorted((n, e) for n, e in exported.items() if "attach" in e[2]):
        attach = spec["attach"]
        if attach is None or name not in sess.loaded or attach["name"] in table:
            continue
        sql, params = attach_sql(name, spec)
        linked = (spec["params"].get("metadata_parameters") or {})
        used = sorted({v.lower() for k, v in linked.items() if k.lower() == "secret" and isinstance(v, str)})
        # (an OAuth2 token fetched anew: a catalog attached keeps the token it was given)
        key = repr((sql, params, digest, [(u, exported[u].digest if u in exported else None) for u in used],
                    sess.token_due.get(name)))
        table[attach["name"]] = {"server": shown(server), "sql": sql, "params": params, "key": key}
    if table != sess.attachables:
        sess.engine.set_attachables(plpy, table)
        sess.attachables = table


def _secret_string(plpy, engine, name):
    rows = engine.execute(plpy, "SELECT secret_string FROM duckdb_secrets() WHERE name = ?", [name])
    return rows[0][0] if rows else None


_warned = []


def _sandbox_check(plpy, sess):
    """A kernel that enforces less than the engine's sandbox asks (Landlock
    missing or older than ABI 6): one WARNING per backend naming what is not
    enforced; with duckdb.require_sandbox on, no engine for a role that is not
    a superuser."""
    missing = sess.engine.not_enforced()
    if not missing:
        return
    required = (sess.context.conf.get("duckdb.require_sandbox") or "").strip().lower() in ("on", "true", "1", "yes")
    if required and not sess.engine.policy.superuser:
        sess.recycle()
        raise PgError(INSUFFICIENT_PRIVILEGE, "the kernel cannot sandbox this role's DuckDB engine",
                      detail="Not enforced by this kernel: " + "; ".join(missing) + ".",
                      hint="duckdb.require_sandbox is on: engines of roles that are not superusers need "
                           "Landlock ABI 6 (Linux 6.12 or later) with the landlock LSM enabled "
                           "(docs/security.md).")
    if not _warned:
        _warned.append(True)
        plpy.warning("the DuckDB engine's kernel sandbox is partial on this server: not enforced: "
                     + "; ".join(missing) + " (see duckdb.engine() and docs/security.md)")


# pg_duckdb's settings that mean nothing here (no planner hook, no MotherDuck,
# the engine's configuration is the administrator's): set in a session, they
# get one NOTICE there, at its first engine, instead of silence.
PG_DUCKDB_ONLY = ("duckdb.force_execution", "duckdb.postgres_role", "duckdb.motherduck_enabled",
                  "duckdb.motherduck_token", "duckdb.motherduck_default_database",
                  "duckdb.motherduck_postgres_database", "duckdb.max_workers_per_postgres_scan",
                  "duckdb.allow_unsigned_extensions", "duckdb.autoinstall_known_extensions",
                  "duckdb.autoload_known_extensions", "duckdb.enable_external_access",
                  "duckdb.allow_community_extensions", "duckdb.disabled_filesystems", "duckdb.temporary_directory",
                  "duckdb.extension_directory", "duckdb.convert_unsupported_numeric_to_double",
                  "duckdb.log_pg_explain", "duckdb.unsafe_allow_mixed_transactions")
HABITS_SQL = ("SELECT pg_catalog.array_agg(n ORDER BY n) AS names FROM pg_catalog.unnest($1::text[]) AS n "
              "WHERE pg_catalog.current_setting(n, true) <> ''")
_habits_checked = []

# The session's own values of the settings only the configuration files may set.
SESSION_VALUES_SQL = ("SELECT n AS name, pg_catalog.current_setting(n, true) AS value "
                      "FROM pg_catalog.unnest($1::text[]) AS n")


def _ignored_check(plpy, sess):
    """A setting only the configuration files may set, given another value by
    SET (or ALTER ROLE/DATABASE ... SET), counts for nothing: say so once per
    value, instead of a silent difference between SHOW and what the engine does."""
    from .session import CONF_SETTINGS
    conf = sess.context.conf
    rows = plpy.execute(sess.plan(plpy, "session_values", SESSION_VALUES_SQL, ["text[]"]), [CONF_SETTINGS])
    for r in rows:
        value, name = r["value"], r["name"]
        if not value or value == (conf.get(name) or "") or (name, value) in sess.ignored_said:
            continue
        sess.ignored_said.add((name, value))
        plpy.notice(f"{name} set in this session has no effect: only the configuration files set it",
                    detail="A value a role chose could widen what its engine reaches; SHOW shows the "
                           "session's value, the engine uses the configuration files'.",
                    hint="An administrator writes it in postgresql.conf, or with ALTER SYSTEM (README, \"Settings\").")


def _habits_check(plpy):
    """At each new engine (a session's first use, a role switch, a recycle)
    until it has said it once."""
    if _habits_checked:
        return
    plan = plpy.prepare(HABITS_SQL, ["text[]"])
    names = plpy.execute(plan, [list(PG_DUCKDB_ONLY)])[0]["names"]
    if names:
        _habits_checked.append(True)
        plpy.notice(f"{', '.join(names)} {'has' if len(names) == 1 else 'have'} no effect in duckdb_secrets",
                    hint="These are pg_duckdb settings; docs/migration.md says what takes their place here.")
