"""Per-backend state: the Session kept in GD, its cache of prepared plans, and
who is calling.

api.py, ddl.py and the sync's stages share one Session per backend
(GD["duckdb_secrets.session"]): the engine and what it holds (sync.py), the
fingerprint last seen (fingerprint.py), the masks (masking.py), the caches of
validated specs, resolved credentials and tokens (collect.py, derive.py), and
the pending result of a duckdb.query (api.py, query.py).
"""

import datetime
from collections import namedtuple

from . import crypto, storage
from .masking import NO_SCRUB

# The administrator's settings a sync or a DDL check reads. Only what an
# administrator wrote in the configuration files counts (see
# duckdb._admin_settings): a file path a role could SET would let it run a
# credential_process as the server.
CONF_SETTINGS = ["duckdb.allowed_url_prefixes", "duckdb.engine_settings", "duckdb.trusted_server_owners",
                 "duckdb.max_memory_limit", "duckdb.max_threads", "duckdb.max_temp_directory_size",
                 "duckdb.aws_config_file", "duckdb.aws_shared_credentials_file", "duckdb.aws_assume_role_duration",
                 "duckdb.aws_refresh_margin", "duckdb.rds_token_max_age", "duckdb.require_sandbox",
                 crypto.SETTING]
CONF_SQL = "SELECT name, setting FROM duckdb._admin_settings() WHERE name = ANY($1)"

# What the engine holds for a secret (Session.loaded).
Loaded = namedtuple("Loaded", "digest server spec")

_backend = None


def caller():
    """(current role's oid, the current statement's start): who is calling, in
    which statement. A pending result belongs to both. Read from the backend
    itself (GetUserId, GetCurrentStatementStartTimestamp), without a query."""
    global _backend
    if _backend is None:
        import ctypes
        lib = ctypes.CDLL(None)
        lib.GetUserId.restype = ctypes.c_uint32
        lib.GetCurrentStatementStartTimestamp.restype = ctypes.c_int64
        _backend = (lib.GetUserId, lib.GetCurrentStatementStartTimestamp)
    return (int(_backend[0]()), int(_backend[1]()))


class Session:
    """Per-backend state, kept in GD."""

    # What a recycled engine leaves in place: prepared plans and the scratch
    # engine of DDL checks, the current statement's caller and deadline, the
    # caches of validated specs and their digests and facts (the sync that
    # recycles has just filled them), the administrator's settings and where
    # the secret table is.
    KEPT = ("plans", "scratch", "caller", "deadline", "specs", "digests", "derived", "context", "table_args",
            "orphans", "source_cache", "sources_warned", "sources_force", "sources_invalidated",
            "sources_fetched")

    def __init__(self):
        self.engine = None
        self.fingerprint = None
        self.loaded = {}          # engine secret name -> Loaded(digest, server name, spec)
        self.scrub = NO_SCRUB     # for messages (masking.engine_masks)
        self.cell_scrub = None    # for result cells (values DuckDB itself shows)
        self.scratch = None
        self.plans = {}
        self.pending = None       # result of the running duckdb.query
        self.outer = []           # results of duckdb.query calls this one runs inside (a domain check, ...)
        self.orphans = []         # results closed under their fetch, whose end must raise their error
        self.judged = None        # api.Judged of the current engine call
        self.asked = None         # api._Asked: its judgement asked of the engine, not read yet
        self.statement_judged = None  # (current_query(), may it carry a credential): the last judged
        self.caller = None        # (role oid, statement timestamp) of the current engine use
        self.deadline = None      # the current statement's statement_timeout, as time.time()
        self.resolved = {}        # server -> (spec digest, aws.Resolved)
        self.tokens = {}          # postgres server -> (rds spec digest, token, generated at)
        self.not_in_engine = {}   # managed secrets DuckDB does not hold (rds): name -> (server, spec)
        self.refresh_at = None    # when credentials or tokens need renewing
        self.token_due = {}       # engine secret name -> when its OAuth2 token must be fetched anew
        self.specs = {}           # (server, type, options, mapping) -> validated spec
        self.digests = {}         # id(spec) -> (spec, digest), from the last sync
        self.derived = {}         # digest -> derive.Facts of an exported spec, from the last sync
        self.state = None         # the last sync's SyncState (the next one may patch it)
        self.context = None       # the last full sync's Context (settings from the configuration files)
        self.seen = None          # the generation the last sync saw
        self.tentative = False    # the last sync ran in a transaction that had written (may roll back)
        self.origins = {}         # engine secret name -> 'server', a table's name, or 'default'
        self.ignored_said = set()   # (setting, value) a NOTICE said counts for nothing (sync._ignored_check)
        self.capped = ()          # the settings above their caps the last sync said so of (policy.capped)
        # engine secret name -> (server, type, why, scopes, catalog): not exported, listed by secrets()
        self.skipped = {}
        self.attachables = {}     # catalog name -> what the engine attaches under it (sync._attachables)
        # values of sources (sources.py): (source key, id) -> sources.Entry, in this backend's memory only
        self.source_cache = {}
        self.sources_due = None     # when the last sync's source values must be fetched again
        self.sources_force = False  # the next sync fetches every source value anew (duckdb.refresh_secrets)
        self.sources_fetched = 0    # how many values syncs fetched from sources (duckdb.refresh_secrets)
        self.sources_warned = {}    # server oid -> the WARNING its source failure gave (said once)
        self.sources_invalidated = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
        # (duckdb.secret_storage_table as last seen, [schema] or None, table name or None)
        self.table_args = (None, [storage.DEFAULT_SCHEMA], storage.DEFAULT_TABLE)

    def plan(self, plpy, key, sql, types=()):
        p = self.plans.get(key)
        if p is None:
            p = self.plans[key] = plpy.prepare(sql, list(types))
        return p

    def admin_conf(self, plpy):
        """{setting: value} of CONF_SETTINGS as the configuration files have them."""
        return {r["name"]: r["setting"] for r in plpy.execute(self.plan(plpy, "conf", CONF_SQL, ["text[]"]),
                                                                [CONF_SETTINGS])}

    def push_pending(self, pending):
        """A new result to fetch; one being fetched (this call runs inside its
        fetch: a domain check, a function per row) waits under it, whole."""
        if self.pending is not None:
            self.outer.append(self.pending)
        self.pending = pending

    def pop_pending(self):
        """The result fetched, back to the one it ran inside (if any)."""
        self.pending = self.outer.pop() if self.outer else None

    def drop_pending(self):
        """Forget every pending result (their worker side is closed with them)."""
        for pending in [self.pending, *self.outer]:
            if pending is not None:
                pending.close()
        self.pending, self.outer = None, []

    def recycle(self):
        """Close the engine and start afresh, keeping only KEPT."""
        self.drop_pending()     # a result's stream goes before the engine it reads from
        if self.engine is not None:
            self.engine.close()
        kept = {name: getattr(self, name) for name in self.KEPT}
        self.__init__()
        for name, value in kept.items():
            setattr(self, name, value)


def session(GD):
    s = GD.get("duckdb_secrets.session")
    if s is None:
        s = GD["duckdb_secrets.session"] = Session()
    return s
