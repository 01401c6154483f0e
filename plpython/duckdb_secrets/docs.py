"""Renders docs/secret-types.md from the catalogue (make docs; a test keeps it current)."""

import sys

from . import catalog


def _example(t, p):
    server = dict(t.example) if p.name == t.default_provider else {}
    mapping = dict(t.example_mapping) if p.name == t.default_provider else {}
    if p.name != t.default_provider:
        server = {"provider": p.name}
        for req in p.required:
            name = req[0] if isinstance(req, tuple) else req
            target = mapping if name in catalog.SENSITIVE else server
            target[name] = p.options[name].example or "..."
    server_sql = ", ".join(f"{k} '{v}'" for k, v in server.items())
    lines = [f"CREATE SERVER my_{t.name} TYPE '{t.name}' FOREIGN DATA WRAPPER duckdb"
             + (f"\n  OPTIONS ({server_sql})" if server_sql else "") + ";"]
    if mapping:
        lines.append(f"CREATE USER MAPPING FOR CURRENT_USER SERVER my_{t.name}\n  OPTIONS ("
                     + ", ".join(f"{k} '{v}'" for k, v in mapping.items()) + ");")
    return "\n".join(lines)


def _option_rows(t, p):
    rows = []
    aliases = {c: a for a, c in t.aliases.items()}
    for name in sorted(p.options):
        o = p.options[name]
        kind = catalog.KIND_DOC[o.kind]
        if o.choices:
            kind = ("one or more of " if o.sep else "one of ") + ", ".join(f"`{c}`" for c in o.choices) \
                   + (f" (separated by `{o.sep}`)" if o.sep else "")
        notes = []
        if name in aliases:
            notes.append(f"alias `{aliases[name]}`")
        if o.needs:
            notes.append("needs " + ", ".join(f"`{n}`" for n in o.needs))
        if name in t.excludes:
            ex = t.excludes[name]
            notes.append("not with any other option" + (f" but `{'`, `'.join(ex[1:])}`" if ex[1:] else "")
                         if ex and ex[0] == "*" else "not with " + ", ".join(f"`{x}`" for x in ex))
        where = "USER MAPPING (sensitive)" if o.sensitive else "SERVER or USER MAPPING"
        rows.append(f"| `{name}` | {kind} | {where} | {'; '.join(notes)} |")
    return rows


def _attach_doc(t):
    """The attach_as paragraph of a type (catalog.Attach)."""
    how = t.attach
    if how.path_option is not None:
        path = f"'<{how.path_option}>'"
    elif how.path is catalog.Attach.SCOPE_PATH:
        path = "'<scope>'"
    else:
        path = "'" + how.path.format(secret="<server>") + "'"
    parts = ([f"TYPE {how.db_type}"] if how.db_type else []) + (["SECRET <server>"] if how.secret else [])
    keys = []
    for name in how.keys:
        o = how.options[name]
        kind = ("one of " + ", ".join(f"`{c}`" for c in o.choices)) if o.choices else catalog.KIND_DOC[o.kind]
        keys.append(f"`{name}` ({'the path, required' if name == how.path_option else kind})")
    return (f"`attach_as 'name'` (SERVER only): every engine that gets the secret runs "
            f"`ATTACH {path} AS name" + (f" ({', '.join(parts)}, ...)" if parts else " (...)")
            + "` the first time its SQL refers to `name`. `attach_options` (comma-separated `key=value`, a boolean "
            "key alone means true) takes: " + ", ".join(keys) + ".")


def render():
    out = ["# Secret types", "",
           "Generated from `plpython/duckdb_secrets/catalog.py` by `make docs`; a test checks that it is "
           "current. Every option below is accepted by DuckDB 1.5.5 (checked by the test suite).", "",
           "Every server takes `provider` (default below) and `scope` (a comma-separated list of URL "
           "prefixes; DuckDB uses the secret with the longest matching prefix, on a tie the one whose "
           "name sorts first). Option names are case-insensitive. Sensitive options are refused on a "
           "SERVER, whose options every role can read: put them in a USER MAPPING. `duckdb.secrets()` "
           "shows them as `redacted`.", "",
           "Not offered: " + "; ".join(f"`{k}` ({v})" for k, v in catalog.WITHHELD.items()) + ".", "",
           "Sensitive options, everywhere: " + ", ".join(f"`{s}`" for s in sorted(catalog.SENSITIVE)) + ".", "",
           "Options that may carry a credential without being sensitive themselves ("
           + ", ".join(f"`{s}`" for s in sorted(catalog.MAY_CARRY_CREDENTIALS)) + ") are refused on a SERVER "
           "when they do (a credential header or key, a password in a connection string), and are encrypted "
           "at rest in a USER MAPPING.", "",
           "Refused types: " + "; ".join(f"`{k}` ({v})" for k, v in catalog.REFUSED_TYPES.items()) + ".", "",
           "Who gets a secret: a role with `USAGE` on the server; types whose use opens connections to "
           "databases or catalogs from the server are for superusers' engines only (column below).", "",
           "Types that name a database or catalog (" + ", ".join(f"`{t}`" for t in catalog.ATTACH_TYPES)
           + ") also take `attach_as` and `attach_options` on the SERVER: the engine attaches the catalog under "
           "that name when a query first refers to it (docs/reference.md, \"Attached catalogs\").", ""]
    out += ["| type | providers (default first) | default scope | DuckDB extension | engines |",
            "| --- | --- | --- | --- | --- |"]
    for t in catalog.TYPES.values():
        providers = [t.default_provider] + sorted(set(t.providers) - {t.default_provider})
        who = "superusers only" if t.superuser_only else "any role with USAGE"
        out.append(f"| [`{t.name}`](#{t.name}) | {', '.join(providers)} | "
                   f"{', '.join(f'`{s}`' for s in t.default_scope) or 'none'} | {t.extension} | {who} |")
    for t in catalog.TYPES.values():
        out += ["", f"## {t.name}", "", t.doc]
        if t.attach is not None:
            out += ["", _attach_doc(t)]
        for pname in [t.default_provider] + sorted(set(t.providers) - {t.default_provider}):
            p = t.providers[pname]
            out += ["", f"### {t.name} / {pname}" + (" (default)" if pname == t.default_provider else ""), ""]
            if p.extension and p.extension != t.extension:
                out += [f"Needs DuckDB's `{p.extension}` extension (shipped).", ""]
            if p.required:
                req = [" or ".join(f"`{r}`" for r in (g if isinstance(g, tuple) else (g,))) for g in p.required]
                out += ["Required: " + "; ".join(req) + ".", ""]
            if p.options:
                out += ["| option | value | where | notes |", "| --- | --- | --- | --- |"] + _option_rows(t, p)
            else:
                out.append("No options besides `provider` and `scope`.")
            out += ["", "```sql", _example(t, p), "```"]
    return "\n".join(out + _sources()) + "\n"


def _kind(o):
    if o.choices:
        return ("one or more of " if o.sep else "one of ") + ", ".join(f"`{c}`" for c in o.choices)
    return catalog.KIND_DOC[o.kind]


def _sources():
    """The source types (catalog.SOURCES): servers that hold no secret but the values of others' mappings."""
    out = ["", "# Sources", "",
           "Servers of these types are not DuckDB secrets: a user mapping of another server names one "
           "(`source`, `source_id`, and `source_option` when the value is one option's plain text) instead of "
           "holding values, and the values are fetched when the engine takes its secrets (docs/sources.md). A "
           "value never sets " + ", ".join(f"`{o}`" for o in sorted(catalog.NOT_FROM_SOURCE - catalog.REFERENCE))
           + ": where requests go and what a secret covers stay on the server."]
    for t in catalog.SOURCES.values():
        out += ["", f"## {t.name}", "", t.doc, "", "| option | value | where | default |", "| --- | --- | --- | --- |"]
        for name in sorted(t.server_options):
            o = t.server_options[name]
            default = t.defaults.get(name)
            shown = ("required" if name in t.required else
                     f"{default // 60}min" if name in ("ttl", "max_stale") and default and default % 60 == 0 else
                     f"{default}s" if default is not None else "")
            out.append(f"| `{name}` | {_kind(o)} | SERVER | {shown} |")
        for name in sorted(t.mapping_options):
            where = "USER MAPPING (sensitive)" if name in catalog.SENSITIVE else "USER MAPPING"
            out.append(f"| `{name}` | {_kind(t.mapping_options[name])} | {where} | |")
        opts = ", ".join(f"{k} '{v}'" for k, v in t.example.items())
        out += ["", "```sql", f"CREATE SERVER my_{t.name} TYPE '{t.name}' FOREIGN DATA WRAPPER duckdb\n"
                f"  OPTIONS ({opts});", "```"]
    return out


if __name__ == "__main__":
    sys.stdout.write(render())
