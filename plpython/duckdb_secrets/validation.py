"""Validation of duckdb SERVERs and USER MAPPINGs, driven by catalog.TYPES.

Stage 1 (validate_options) runs as the FDW validator, which PostgreSQL gives
only the option list and the catalog it is for. Stage 2 (secret_spec) runs
from the ddl_command_end event trigger, knows the server's TYPE and name, and
turns a server + user mapping into the exact secret the engine will create.
Nothing here ever puts an option *value* into a message.
"""

import re

from . import catalog
from .errors import (
    DUPLICATE_OBJECT,
    FDW_INVALID_ATTRIBUTE_VALUE,
    FDW_INVALID_OPTION_NAME,
    FEATURE_NOT_SUPPORTED,
    INSUFFICIENT_PRIVILEGE,
    WRONG_OBJECT_TYPE,
    MissingMapping,
    PgError,
)

# pg_catalog OIDs the validator receives as its second argument.
FDW_CATALOG = 2328          # pg_foreign_data_wrapper
SERVER_CATALOG = 1417       # pg_foreign_server
MAPPING_CATALOG = 1418      # pg_user_mapping

_SIMPLE_WORD = re.compile(r"^[a-z0-9_]{1,63}$")


def simple_word(word):
    """' "word"' for a message if word is a plain lowercase word, else '': a TYPE,
    PROVIDER or chain member that is not one may carry anything, and is not echoed."""
    return f' "{word}"' if _SIMPLE_WORD.match(word) else ""


_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


def shown(name):
    """An option or type name as it may appear in a message (never a value)."""
    name = "".join(c if c.isprintable() else "?" for c in str(name))
    return name if len(name) <= 63 else name[:60] + "..."


def parse_options(options):
    """PostgreSQL's "name=value" option array -> list of (name, value)."""
    out = []
    for item in options or ():
        name, _, value = item.partition("=")
        out.append((name, value))
    return out


def normalise(pairs, where):
    """Lowercase option names; refuse the same option twice in any spelling."""
    out = {}
    for name, value in pairs:
        key = name.lower()
        if key in out:
            raise PgError(DUPLICATE_OBJECT, f'option "{shown(key)}" provided more than once{where}',
                          hint="Option names are case-insensitive: \"SECRET\" and secret are the same option.")
        out[key] = value
    return out


def _hint_list(names):
    return ", ".join(sorted(names)) if names else "<none>"


def server_context_options():
    return (catalog.ALL_OPTIONS | catalog.SOURCE_SERVER_OPTIONS) - catalog.SENSITIVE


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control(value):
    """Whether a value (text, or a map's or list's keys and values) holds a control character."""
    if isinstance(value, dict):
        return any(_has_control(k) or _has_control(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_control(v) for v in value)
    return value is not None and bool(_CONTROL.search(str(value)))


def raise_server_only(name):
    detail = ("A role with USAGE on a server can write its own user mapping: a proxy named there would carry "
              "its engine's requests around the egress proxy." if name in catalog.PROXY_ADDRESS else None)
    raise PgError(FDW_INVALID_OPTION_NAME, f'option "{name}" cannot be set in a user mapping', detail=detail,
                  hint=f"Set {name} on the server: ALTER SERVER ... OPTIONS (ADD {name} '...').")


def mapping_context_options():
    return (catalog.ALL_OPTIONS - catalog.SERVER_ONLY - catalog.PROXY_ADDRESS) | catalog.REFERENCE


def validate_options(options, catalog_oid):
    """Stage 1: option names only, per context. Raises PgError."""
    pairs = parse_options(options)
    if catalog_oid == FDW_CATALOG:
        if pairs:
            raise PgError(FDW_INVALID_OPTION_NAME, f'invalid option "{shown(pairs[0][0])}"',
                          hint="The duckdb foreign-data wrapper takes no options; "
                               "set them on a SERVER or USER MAPPING.")
        return
    if catalog_oid == SERVER_CATALOG:
        opts = normalise(pairs, "")
        for name in opts:
            if name in catalog.SENSITIVE:
                raise_sensitive_on_server(name)
            if name not in catalog.ALL_OPTIONS and name not in catalog.SOURCE_SERVER_OPTIONS:
                raise_unknown(name, server_context_options())
        return
    if catalog_oid == MAPPING_CATALOG:
        opts = normalise(pairs, "")
        for name in opts:
            if name in catalog.REFERENCE or name in catalog.SOURCE_MAPPING_OPTIONS:
                continue        # a reference to a source; a source's own credentials (provider)
            if name in catalog.SERVER_ONLY or name in catalog.PROXY_ADDRESS:
                raise_server_only(name)
            if name not in catalog.ALL_OPTIONS:
                raise_unknown(name, mapping_context_options())
        return
    # Foreign tables and anything else: the duckdb wrapper has none.
    if pairs:
        raise PgError(FDW_INVALID_OPTION_NAME, f'invalid option "{shown(pairs[0][0])}"',
                      hint="The duckdb foreign-data wrapper has no foreign tables.")


def raise_unknown(name, candidates):
    """Stage 1 does not know the TYPE yet: suggest a near name rather than list ~100."""
    if name in catalog.WITHHELD:
        hint = f"DuckDB's {name} option is not offered: it {catalog.WITHHELD[name]}."
    else:
        import difflib  # only for a suggestion in an error
        close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
        hint = (f'Perhaps you meant the option "{close[0]}".' if close else
                "Valid options depend on the server's TYPE; docs/secret-types.md lists them.")
    raise PgError(FDW_INVALID_OPTION_NAME, f'invalid option "{shown(name)}"', hint=hint)


def raise_sensitive_on_server(name):
    raise PgError(INSUFFICIENT_PRIVILEGE,
                  f'option "{name}" is sensitive and cannot be set on a server',
                  detail="Server options are readable by every role.",
                  hint=f"Put {name} in a USER MAPPING: CREATE USER MAPPING FOR ... SERVER ... "
                       f"OPTIONS ({name} '...').")


def _bool(name, value):
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{name}" requires a Boolean value',
                  hint="Use true or false.")


def _int(name, value):
    try:
        return int(value.strip(), 10)
    except ValueError:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'option "{name}" requires an integer value') from None


def _list(name, value):
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'option "{name}" requires a comma-separated list of non-empty values')
    return items


def _map(name, value):
    out = {}
    for item in value.split(","):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                          f'option "{name}" requires comma-separated key=value pairs')
        out[k.strip()] = v.strip()
    return out


_CONVERT = {catalog.BOOL: _bool, catalog.INT: _int, catalog.LIST: _list, catalog.MAP: _map,
            catalog.TEXT: lambda name, value: value}


def secret_type_name(server_name, srvtype):
    """The catalogue type for a server's TYPE string, or PgError."""
    if srvtype is None or not srvtype.strip():
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'server "{shown(server_name)}" has no TYPE',
                      hint="Name the DuckDB secret type: CREATE SERVER ... TYPE 's3' "
                           "FOREIGN DATA WRAPPER duckdb. Valid types are: "
                           + _hint_list(catalog.TYPES) + "; sources: " + _hint_list(catalog.SOURCES))
    t = srvtype.strip().lower()
    if t in catalog.SOURCES:
        raise PgError(WRONG_OBJECT_TYPE, f'server "{shown(server_name)}" is a source of values, not a secret',
                      hint="User mappings of other servers name it: OPTIONS (source '...', source_id '...').")
    if t in catalog.REFUSED_TYPES:
        raise PgError(FEATURE_NOT_SUPPORTED, f"secrets of TYPE '{t}' are not supported",
                      detail=f"The {t} type is refused: {catalog.REFUSED_TYPES[t]}.")
    if t not in catalog.TYPES:
        what = simple_word(t)
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'invalid TYPE{what} for server "{shown(server_name)}"',
                      detail=None if what else "The TYPE is not a plain type name; it is not shown.",
                      hint="Valid types are: " + _hint_list(catalog.TYPES) + "; sources: "
                           + _hint_list(catalog.SOURCES))
    return t


def secret_spec(server_name, srvtype, server_options, mapping_options=None):
    """Stage 2: the secret the engine will create for this server + mapping.

    server_options / mapping_options: PostgreSQL option arrays (or None).
    Returns dict(type, provider, scope, params) with typed values.
    """
    type_name = secret_type_name(server_name, srvtype)
    stype = catalog.TYPES[type_name]
    server = normalise(parse_options(server_options), f' for server "{shown(server_name)}"')
    mapping = normalise(parse_options(mapping_options), " in the user mapping")

    for name in server:
        if name in catalog.SENSITIVE:
            raise_sensitive_on_server(name)
    check_embedded_credentials(server)
    attach_raw = {name: server.pop(name) for name in list(server) if name in catalog.ATTACH}
    for name in mapping:
        if name in catalog.SERVER_ONLY or name in catalog.PROXY_ADDRESS:
            raise_server_only(name)
        if name in server:
            raise PgError(DUPLICATE_OBJECT,
                          f'option "{shown(name)}" is set on both server "{shown(server_name)}" '
                          "and its user mapping",
                          hint="Set each option in one place.")

    provider_name = server.get(catalog.PROVIDER, stype.default_provider).strip().lower()
    if provider_name not in stype.providers:
        what = simple_word(provider_name)
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f"invalid PROVIDER{what} for a server of TYPE '{type_name}'",
                      hint="Valid providers are: " + _hint_list(stype.providers))
    provider = stype.providers[provider_name]
    valid = catalog.options_for(type_name, provider_name)

    params = {}
    scope = None
    for source, opts in (("server", server), ("user mapping", mapping)):
        for name, value in opts.items():
            opt = valid.get(name)
            if opt is None:
                here = set(valid) - (catalog.SERVER_ONLY if source != "server" else set())
                import difflib
                close = difflib.get_close_matches(name, sorted(here), n=1, cutoff=0.75)
                raise PgError(FDW_INVALID_OPTION_NAME, f'invalid option "{shown(name)}"',
                              hint=(f'Perhaps you meant the option "{close[0]}". ' if close else "")
                                   + f"Valid options for a server of TYPE '{type_name}' with PROVIDER "
                                   f"'{provider_name}' are: " + _hint_list(here))
            if name == catalog.PROVIDER:
                continue
            if _has_control(value):
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                              f'option "{shown(name)}" must not contain control characters',
                              detail="A carriage return, line feed or other control character could add HTTP "
                                     "headers or requests to what DuckDB sends.")
            converted = _CONVERT[opt.kind](name, value)
            if opt.choices:
                converted = _check_choices(opt, converted)
            if name == catalog.SCOPE:
                scope = converted
                continue
            canonical = stype.aliases.get(name, name)
            if canonical in params:
                raise PgError(DUPLICATE_OBJECT,
                              f'option "{name}" is another name for "{canonical}"; give only one of them')
            params[canonical] = converted

    # before the rules: a server that waits for its mapping's values is checked too
    attach = attach_spec(stype, attach_raw, scope)
    _check_rules(stype, provider, params)
    spec = {"type": type_name, "provider": provider_name, "scope": scope, "params": params}
    if attach is not None:
        spec["attach"] = attach
    return spec


# --- attach_as / attach_options ------------------------------------------------

_CATALOG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def attach_name(value):
    """A server's attach_as as the engine uses it (DuckDB's catalog names are
    case-insensitive: lowercased), or PgError."""
    name = value.strip()
    if not _CATALOG_NAME.match(name):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{catalog.ATTACH_AS}" requires a plain identifier',
                      hint="A letter or underscore, then letters, digits or underscores (at most 63): the name "
                           "DuckDB SQL uses for the catalog, e.g. attach_as 'lake'.")
    name = name.lower()
    if name in catalog.RESERVED_CATALOGS:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{catalog.ATTACH_AS}" cannot be "{name}"',
                      detail="DuckDB reserves the names " + ", ".join(catalog.RESERVED_CATALOGS) + ".",
                      hint="Choose another name.")
    return name


def attach_spec(stype, raw, scope):
    """{"name", "options"} for a server's attach_as and attach_options (typed,
    allowlisted per type: catalog.Attach), None without attach_as, or PgError."""
    if not raw:
        return None
    how = stype.attach
    where = f"a server of TYPE '{stype.name}'"
    if how is None:
        name = next(iter(sorted(raw)))
        raise PgError(FDW_INVALID_OPTION_NAME, f'invalid option "{name}" for {where}',
                      hint="attach_as and attach_options are for servers of TYPE "
                           + ", ".join(f"'{t}'" for t in catalog.ATTACH_TYPES) + ".")
    if catalog.ATTACH_AS not in raw:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'option "{catalog.ATTACH_OPTIONS}" requires option "{catalog.ATTACH_AS}" in {where}')
    name = attach_name(raw[catalog.ATTACH_AS])
    options = attach_options(stype, raw.get(catalog.ATTACH_OPTIONS, ""))
    if how.path_option is not None and how.path_option not in options:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'option "{catalog.ATTACH_OPTIONS}" of {where} requires the key "{how.path_option}"',
                      hint=f"It names what to attach: attach_options '{how.path_option}=...'.")
    if how.path is catalog.Attach.SCOPE_PATH and (not scope or len(scope) != 1):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'option "{catalog.ATTACH_AS}" of {where} requires a scope of one address',
                      hint=f"The scope is what the engine attaches, e.g. scope '{stype.example.get('scope', '...')}'.")
    return {"name": name, "options": options}


def attach_options(stype, value):
    """attach_options 'key=value, flag, ...' -> {key: typed value}; a bare key
    is a boolean set to true (READ_ONLY). Keys are case-insensitive."""
    how = stype.attach
    out = {}
    if _has_control(value):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'option "{catalog.ATTACH_OPTIONS}" must not contain control characters')
    for item in value.split(","):
        if not item.strip():
            if value.strip():
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{catalog.ATTACH_OPTIONS}" requires '
                              "comma-separated keys or key=value pairs")
            continue
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        opt = how.options.get(key)
        if opt is None:
            raise PgError(FDW_INVALID_OPTION_NAME,
                          f'invalid key "{shown(key)}" in option "{catalog.ATTACH_OPTIONS}"',
                          hint=f"Valid keys for a server of TYPE '{stype.name}' are: " + _hint_list(how.options))
        if key in out:
            raise PgError(DUPLICATE_OBJECT, f'key "{key}" given more than once in option "{catalog.ATTACH_OPTIONS}"')
        what = f"{catalog.ATTACH_OPTIONS} {key}"
        if not sep:
            if opt.kind != catalog.BOOL:
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'key "{key}" of option "{catalog.ATTACH_OPTIONS}" '
                              "requires a value", hint=f"Write {key}=...")
            out[key] = True
            continue
        converted = _CONVERT[opt.kind](what, raw.strip())
        if opt.kind == catalog.TEXT and not converted:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'key "{key}" of option "{catalog.ATTACH_OPTIONS}" '
                          "requires a non-empty value")
        if opt.choices:
            converted = _check_choices(opt, converted)
        out[key] = converted
    return out


def _check_choices(opt, value):
    members = [m.strip().lower() for m in value.split(opt.sep)] if opt.sep else [value.strip().lower()]
    for m in members:
        if m not in opt.choices:
            what = simple_word(m)
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'invalid value{what} for option "{opt.name}"',
                          hint="Valid values are: " + ", ".join(opt.choices)
                               + (f" (several separated by '{opt.sep}')" if opt.sep else ""))
    return opt.sep.join(members) if opt.sep else members[0]


def _check_rules(stype, provider, params):
    where = f"a server of TYPE '{stype.name}'"
    for option, excluded in stype.excludes.items():
        if option not in params:
            continue
        if excluded and excluded[0] == "*":
            others = sorted(k for k in params if k != option and k not in excluded[1:])
        else:
            others = sorted(k for k in params if k in excluded)
        if others:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                          f'option "{option}" cannot be combined with "{others[0]}" in {where}',
                          hint=("A uri carries the whole connection; put the other settings into it."
                                if option == "uri" else
                                "The IAM token from the rds server is the password."
                                if option == "aws_rds_secret" else None))
    for name in params:
        opt = provider.options.get(name)
        for needed in (opt.needs if opt else ()):
            if needed not in params:
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                              f'option "{name}" requires option "{needed}" in {where}')
    for req in provider.required:
        group = req if isinstance(req, tuple) else (req,)
        if not any(r in params for r in group):
            names = " or ".join(f'"{r}"' for r in group)
            # A sensitive option can only come from a user mapping.
            cls = MissingMapping if any(r in catalog.SENSITIVE for r in group) else PgError
            raise cls(FDW_INVALID_ATTRIBUTE_VALUE,
                      f"{where} with PROVIDER '{provider.name}' requires option {names}",
                      hint="Set it in the user mapping." if cls is MissingMapping else None)


def engine_name(server_name):
    """DuckDB lowercases secret names, even quoted ones."""
    return server_name.lower()


def check_name_collision(server_name, other_server_names):
    mine = engine_name(server_name)
    for other in other_server_names:
        if other != server_name and engine_name(other) == mine:
            raise PgError(DUPLICATE_OBJECT,
                          f'server name "{shown(server_name)}" collides with server "{shown(other)}" '
                          "inside DuckDB",
                          detail="DuckDB secret names are case-insensitive.",
                          hint="Rename one of the servers.")


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Options that hold a URL or address, where a password or token may hide (user:pw@, ?token=).
_URL_OPTIONS = frozenset({"endpoint", "oauth2_server_uri", "scope", "data_path", "http_proxy", "proxy",
                          "attach_options"})


def check_embedded_credentials(server):
    """A server's options are readable by every role: no credential inside an
    option that is not itself sensitive (server: name -> raw value)."""
    for name, value in server.items():
        if name in ("extra_http_headers", "metadata_parameters"):
            for item in value.split(","):
                header, sep, entry = item.partition("=")
                header = header.strip()
                if (not sep and item.strip()) or not _PLAIN_KEY.match(header):
                    # Not key=value: the "key" may hold a value; never echo it.
                    if catalog.credential_value(item) or catalog.embedded_password(item) \
                            or catalog.credential_key(name, header):
                        raise PgError(INSUFFICIENT_PRIVILEGE,
                                      f'option "{name}" carries a credential and cannot be set on a server',
                                      detail="Server options are readable by every role.",
                                      hint=f"Put {name} in a USER MAPPING (it is encrypted there when "
                                           "duckdb.encryption_key_file is set).")
                    continue        # the value-kind check below says what is wrong, without values
                if catalog.credential_key(name, header) or catalog.credential_value(entry) \
                        or (name == "metadata_parameters" and catalog.embedded_password(entry)):
                    raise PgError(INSUFFICIENT_PRIVILEGE,
                                  f'key "{shown(header)}" of option "{name}" carries a credential '
                                  "and cannot be set on a server",
                                  detail="Server options are readable by every role.",
                                  hint=f"Put {name} in a USER MAPPING (it is encrypted there when "
                                       "duckdb.encryption_key_file is set).")
        elif (name in catalog.MAY_CARRY_CREDENTIALS or name in _URL_OPTIONS) and catalog.embedded_password(value):
            raise PgError(INSUFFICIENT_PRIVILEGE,
                          f'option "{name}" carries a password and cannot be set on a server',
                          detail="Server options are readable by every role.",
                          hint="Give the password as the password option of a USER MAPPING.")


# --- secrets read from a duckdb_secrets table -------------------------------

def _table_value(opt, name, value):
    """A value DuckDB deserialized -> the typed value secret_spec would give, or PgError."""
    bad = PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{shown(name)}" has a value of the wrong type')
    if opt.kind == catalog.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _bool(name, value)
        raise bad
    if opt.kind == catalog.INT:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _int(name, value)
        raise bad
    if opt.kind == catalog.LIST:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, str):
            return _list(name, value)
        raise bad
    if opt.kind == catalog.MAP:
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return value
        raise bad
    if not isinstance(value, str):
        raise bad
    return value


def table_spec(secret):
    """A secret decoded from a duckdb_secrets row (serialized.Secret) -> spec, or PgError.

    The same rules as for servers: known type and provider, only the
    catalogue's options with values of the right kind, choices and combination
    rules; options the extension withholds (refresh) are refused.
    """
    type_name = (secret.type or "").lower()
    if type_name not in catalog.TYPES:
        what = simple_word(type_name)
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f"unknown secret type{what}",
                      hint="Valid types are: " + _hint_list(catalog.TYPES))
    stype = catalog.TYPES[type_name]
    provider_name = (secret.provider or stype.default_provider).lower()
    if provider_name not in stype.providers:
        what = simple_word(provider_name)
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f"invalid provider{what} for a secret of type '{type_name}'")
    provider = stype.providers[provider_name]
    valid = catalog.options_for(type_name, provider_name)
    params = {}
    for name, value in secret.params.items():
        key = str(name).lower()
        opt = valid.get(key)
        if opt is None or key in catalog.SERVER_ONLY:
            raise PgError(FDW_INVALID_OPTION_NAME, f'invalid option "{shown(key)}"',
                          hint=f"Valid options for a secret of type '{type_name}' with provider "
                               f"'{provider_name}' are: " + _hint_list(set(valid) - catalog.SERVER_ONLY))
        if value is None:
            continue
        if _has_control(value):
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{shown(key)}" must not contain control characters')
        converted = _table_value(opt, key, value)
        if opt.choices:
            converted = _check_choices(opt, converted)
        canonical = stype.aliases.get(key, key)
        if canonical in params:
            raise PgError(DUPLICATE_OBJECT, f'option "{shown(key)}" is another name for "{canonical}"')
        params[canonical] = converted
    scope = [s for s in secret.scope if isinstance(s, str) and s]
    _check_rules(stype, provider, params)
    return {"type": type_name, "provider": provider_name,
            "scope": scope if scope and list(scope) != list(stype.default_scope) else None,
            "params": params}


def needs_server_environment(spec):
    """Why a secret would act with the server's own identity or files, or None."""
    if spec["provider"] in catalog.SERVER_ENVIRONMENT_PROVIDERS:
        return f"provider '{spec['provider']}' uses the server's own credentials"
    files = sorted(k for k in spec["params"] if k in catalog.SERVER_FILE_OPTIONS)
    if files:
        return f'option "{files[0]}" names a file on the server'
    if catalog.TYPES[spec["type"]].superuser_only:
        return f"type '{spec['type']}' opens database connections from the server"
    return None


# --- sources (catalog.SOURCES) and references to them --------------------------

_DURATION = re.compile(r"^\s*(\d{1,9})\s*(s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hour|hours|d|day|days)?"
                       r"\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(name, value):
    """Seconds of a duration option ('30s', '5min', '1h', '1d', '300')."""
    m = _DURATION.match(str(value))
    if not m:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{name}" requires a duration',
                      hint="For example 30s, 5min (or 5m), 1h or 1d; a bare number is seconds.")
    unit = (m.group(2) or "s").lower()
    return int(m.group(1)) * _DURATION_UNITS["m" if unit.startswith("m") else unit[0]]


_CONVERT[catalog.DURATION] = duration
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,2048}$")


def source_type(server_name, srvtype):
    """The catalog.SourceType of a server's TYPE, or None when it is not a source."""
    return catalog.SOURCES.get((srvtype or "").strip().lower())


def source_spec(server_name, srvtype, server_options, mapping_options=None, mapping_role="public",
                need_credentials=True):
    """A source server with the user mapping the role reaches it with: dict(type,
    params, credentials). Raises PgError (MissingMapping: credentials needed,
    unless need_credentials is False: the server alone)."""
    stype = source_type(server_name, srvtype)
    where = f" for server \"{shown(server_name)}\""
    server = normalise(parse_options(server_options), where)
    mapping = normalise(parse_options(mapping_options), " in the user mapping")
    params, creds = {}, {}
    for source, opts, valid, out in (("server", server, stype.server_options, params),
                                     ("user mapping", mapping, stype.mapping_options, creds)):
        for name, value in opts.items():
            opt = valid.get(name)
            if opt is None:
                if source == "user mapping" and name in stype.server_options:
                    raise_server_only(name)
                if name in catalog.SENSITIVE and source == "server":
                    raise_sensitive_on_server(name)
                raise PgError(FDW_INVALID_OPTION_NAME, f'invalid option "{shown(name)}"',
                              hint=f"Valid options for a {'server' if source == 'server' else 'user mapping'} of "
                                   f"TYPE '{stype.name}' are: " + _hint_list(valid))
            if _has_control(value):
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{shown(name)}" must not contain control '
                                                           "characters")
            converted = _CONVERT[opt.kind](name, value)
            if opt.choices:
                converted = _check_choices(opt, converted)
            out[name] = converted
    for req in stype.required:
        if req not in params:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f"a server of TYPE '{stype.name}' requires option \"{req}\"",
                          hint=f"For example OPTIONS ({req} '{stype.server_options[req].example or '...'}').")
    for name, default in stype.defaults.items():
        params.setdefault(name, default)
    if params.get("ttl") == 0:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, 'option "ttl" must be at least 1 second')
    if "directory" in params and not str(params["directory"]).startswith("/"):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, 'option "directory" must be an absolute path')
    if "endpoint" in params:
        endpoint = str(params["endpoint"])
        if not re.match(r"^https?://[^/?#@\s]+/?$", endpoint):
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, 'option "endpoint" must be a URL: http(s)://host[:port]',
                          hint="For example https://secretsmanager.eu-west-1.amazonaws.com, or a VPC endpoint.")
    provider = creds.pop(catalog.PROVIDER, None) or params.pop(catalog.PROVIDER, None) or "config"
    params.pop(catalog.PROVIDER, None)
    if stype.service is not None:
        if provider == "credential_chain":
            if creds.keys() & {"key_id", "secret", "session_token"}:
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, "PROVIDER 'credential_chain' takes no key_id, secret "
                                                           "or session_token")
            if mapping_role != "public" and catalog.PROVIDER in mapping:
                raise PgError(INSUFFICIENT_PRIVILEGE,
                              f'a user mapping for one role cannot reach source server "{shown(server_name)}" '
                              "with the server's own AWS identity",
                              detail="A role can change its own user mapping: the server's credential chain "
                                     "would then fetch for it with the server's identity.",
                              hint="Set provider 'credential_chain' on the server, or in its PUBLIC user mapping.")
        elif need_credentials and not ({"key_id", "secret"} <= creds.keys()):
            raise MissingMapping(FDW_INVALID_ATTRIBUTE_VALUE,
                                 f"a source of TYPE '{stype.name}' with PROVIDER 'config' requires options "
                                 '"key_id" and "secret"',
                                 hint="Set them in the user mapping, or set provider 'credential_chain' on the "
                                      "server to use the server's AWS identity.")
    return {"type": stype.name, "provider": provider, "params": params, "credentials": creds}


def reference(mapping_options):
    """(the reference a user mapping's options make, the other options): the
    reference is dict(source, id, option) or None. Raises PgError."""
    ref, rest = {}, []
    for item in mapping_options or ():
        name, _, value = str(item).partition("=")
        key = name.strip().lower()
        if key in catalog.REFERENCE:
            ref[key] = value
        else:
            rest.append(item)
    if not ref:
        return None, list(mapping_options or ())
    for needed in (catalog.SOURCE, catalog.SOURCE_ID):
        if not ref.get(needed):
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{needed}" is required with option '
                                                       f'"{next(iter(sorted(ref)))}"',
                          hint="OPTIONS (source '<source server>', source_id '<id>'[, source_option '<option>']).")
    if not _ID.match(ref[catalog.SOURCE_ID]):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, 'option "source_id" must be 1 to 2048 characters without '
                                                   "control characters")
    option = ref.get(catalog.SOURCE_OPTION)
    if option is not None:
        option = option.strip().lower()
        if option in catalog.NOT_FROM_SOURCE or not simple_word(option):
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'source_option "{shown(option)}" cannot come from a source',
                          detail="A source gives a secret's credentials, never where its requests go or what it "
                                 "covers.")
        if option not in catalog.SENSITIVE:
            # whoever writes the mapping chooses the option: a value shown in
            # clear (key_id, region) would show whatever the id holds
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'source_option "{shown(option)}" is not a sensitive option',
                          detail="A plain value from a source fills a sensitive option only (secret, password, "
                                 "token, ...): those are never shown. Other options come in a JSON object, whose "
                                 "keys the source's writer chose, or in the user mapping itself.")
    return {"source": ref[catalog.SOURCE], "id": ref[catalog.SOURCE_ID], "option": option}, rest


def file_id_problem(source_id):
    """Why an id cannot name a file of a file_directory source (None: it can):
    a relative path of names, never ".", ".." or empty components."""
    parts = source_id.split("/")
    if source_id.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in source_id:
        return "source_id must name a file inside the directory: a relative path without \".\", \"..\" or empty parts"
    return None


def id_allowed(source, source_id):
    """Whether source_id is inside the source's allowed_ids (exact ids, or prefixes ending in *)."""
    for pattern in source["params"].get("allowed_ids") or ():
        if pattern.endswith("*") and source_id.startswith(pattern[:-1]):
            return True
        if pattern == source_id:
            return True
    return False


MAX_SOURCE_VALUE = 65536


def _utf8(text):
    """Whether text encodes as UTF-8 (JSON's \\ud800 escapes decode to lone surrogates, which do not)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def source_values(ref, value, where):
    """The user-mapping options a fetched value gives ("name=value" list).
    value: the text the source holds. Never puts the value in a message."""
    if len(value) > MAX_SOURCE_VALUE:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f"the value of {where} is larger than {MAX_SOURCE_VALUE} bytes")
    if not _utf8(value):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f"the value of {where} is not valid UTF-8 text")
    if ref["option"] is not None:
        if ref["option"] in catalog.NOT_FROM_SOURCE:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                          f'source_option "{shown(ref["option"])}" cannot come from a source')
        return [f'{ref["option"]}={value.rstrip(chr(10)).rstrip(chr(13))}']
    import json
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f"the value of {where} is not a JSON object of user-mapping options",
                      hint="Store a JSON object such as {\"key_id\": \"...\", \"secret\": \"...\"}, or name the one "
                           "option a plain value fills with source_option.")
    out, seen = [], set()
    for key, v in obj.items():
        name = str(key).strip().lower()
        if name in seen:
            raise PgError(DUPLICATE_OBJECT, f'the value of {where} gives option "{shown(name)}" more than once')
        seen.add(name)
        if name in catalog.NOT_FROM_SOURCE:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'the value of {where} sets option "{shown(name)}", which a '
                                                       "source may not set",
                          detail="A source gives a secret's credentials, never where its requests go or what it "
                                 "covers: set such options on the server.")
        if not _utf8(name):
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f"a key of the value of {where} is not valid UTF-8 text")
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float, str)):
            v = str(v)
            if not _utf8(v):
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{shown(name)}" in the value of {where} is not '
                                                           "valid UTF-8 text")
        else:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f'option "{shown(name)}" in the value of {where} must be a '
                                                       "string, a number or a boolean")
        out.append(f"{name}={v}")
    return out
