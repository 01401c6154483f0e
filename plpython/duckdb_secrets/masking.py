"""Every way a value is hidden, in one place.

- Masks (Scrubber): known values, and their URL-encoded forms, replaced by MASK.
  An engine's mask holds the sensitive values of the secrets it holds and, for
  a role that is not a superuser, the server's paths (engine_masks); the
  session's mask passes over every message an entry point returns, and over a
  non-superuser's result cells. A PgError carries masks of its own (a helper's
  arguments, the literals of a role's SQL: errors.PgError.masked).
- Connection strings: passwords in libpq keyword strings and URIs (scrub_conninfo).
- Listings (duckdb.secrets()): sensitive options redacted (redacted, redact_listed).
- A role's DuckDB SQL that failed: whether a literal or word of it may be a
  credential (value_carries, names_credential), the pieces to mask (credentials_in).
"""

import os
import re

from . import catalog

MASK = "********"
_MIN_SCRUB_LEN = 3


class Scrubber:
    """Replaces known secret values (and their URL-encoded forms) in text.

    The pattern is built on first use: most engine syncs never produce a
    message to scrub, and with thousands of secrets building it costs tens of
    milliseconds."""

    def __init__(self, values=(), hex_forms=False):
        self.values = tuple(sorted({str(v) for v in values
                                    if v is not None and len(str(v)) >= _MIN_SCRUB_LEN}))
        self.hex_forms = hex_forms      # result cells: bytea's hex text of each value too
        self._pattern = None
        self._forms = ()
        self._hex = {}                  # hex form -> the hex of as many '*' bytes (still bytea)
        self._built = not self.values

    def _build(self):
        import urllib.parse  # only when there is something to mask
        forms = set()
        for v in self.values:
            forms.update({v, urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v)})
            forms.update(p for p in v.splitlines() if len(p) >= _MIN_SCRUB_LEN)
            if self.hex_forms:
                raw = v.encode()
                self._hex[raw.hex().upper()] = "2A" * len(raw)
                self._hex[raw.hex()] = "2a" * len(raw)
        forms.update(self._hex)
        # Longest first, so a value that contains another is masked whole.
        self._forms = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in self._forms))
        self._built = True

    def _mask(self, m):
        return self._hex.get(m.group(0), MASK)

    def __call__(self, text):
        if text is None:
            return text
        if not self._built:
            self._build()
        if self._pattern is None:
            return text
        text = str(text)
        # A long text (a chunk of result rows) is searched for each form first:
        # str's search is many times faster than the alternation's.
        if len(text) > 4096 and not any(f in text for f in self._forms):
            return text
        return self._pattern.sub(self._mask, text) if self._hex else self._pattern.sub(MASK, text)


NO_SCRUB = Scrubber()


def then(first, second):
    """One mask after the other (None: no mask)."""
    if first is None:
        return second
    if second is None:
        return first
    return lambda text: second(first(text))


# --- connection strings --------------------------------------------------------

# DuckDB's postgres and mysql extensions print the whole connection string
# when a connection fails, including a password given in ATTACH itself.
_CONNINFO_SECRET = re.compile(
    r"\b(password|sslpassword|oauth_client_secret|scram_client_key|scram_server_key)(\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|[^\s\"]*)", re.IGNORECASE)
# (the password runs to the last '@' before the host: one may hold an '@' of its own)
_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"]*:)([^\s\"/]*)(@)", re.IGNORECASE)


def scrub_conninfo(text):
    """Masks passwords in libpq-style connection strings and URIs inside text."""
    if not text:
        return text
    text = _CONNINFO_SECRET.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return _URI_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)


# --- an engine's masks -----------------------------------------------------------

def sensitive_values(spec):
    """Every value of a sensitive option in a spec, and of credential headers
    (for scrubbing messages)."""
    out = [v for k, v in spec["params"].items() if k in catalog.SENSITIVE and isinstance(v, str)]
    for option in ("extra_http_headers", "metadata_parameters"):
        entries = spec["params"].get(option)
        if isinstance(entries, dict):
            out += [str(v) for k, v in entries.items() if catalog.credential_entry(option, k, v)]
    params = spec["params"]
    if params.get("client_id") and params.get("client_secret"):
        # OAuth2 client credentials travel as Basic base64(id:secret); a token
        # endpoint's error may echo that header.
        import base64
        pair = f"{params['client_id']}:{params['client_secret']}".encode()
        out += [base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()]
    return out


def shown_values(spec):
    """The values DuckDB itself shows in clear (duckdb_secrets())."""
    return [v for k, v in spec["params"].items() if k in catalog.DUCKDB_SHOWS]


def server_paths():
    """Paths of the server a role that is not a superuser does not see: the data
    directory (PostgreSQL shows it to privileged roles only; DuckDB names it in
    its spill directory and allowed_directories), the server's OS user's home
    (DuckDB's default directories) and where the package is installed (the
    engine's extension and secret directories name it)."""
    paths = [os.getcwd()]
    home = os.path.expanduser("~")
    if home not in ("", "/", "~"):
        paths.append(home)
    paths.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    return paths


def engine_masks(policy, facts, current=NO_SCRUB):
    """(the mask for messages, the mask for result cells or None) of an engine
    whose secrets' facts (derive.Facts) are given, under the role's policy. The
    current mask is kept when its values are the same (its pattern is built)."""
    values = [v for f in facts for v in f.sensitive]
    if not policy.superuser:
        values += server_paths()
    scrub = Scrubber(values)
    if scrub.values == current.values:
        scrub = current
    # A non-superuser's result cells too: whatever its query read (a store that
    # serves its own state, say), the exact values of its secrets do not come out,
    # as text or as a bytea's hex.
    if policy.superuser:
        return scrub, None
    return scrub, Scrubber(values, hex_forms=True)


# --- listings --------------------------------------------------------------------

def redacted(spec):
    """A secret's options as duckdb.secrets() lists them, sensitive ones redacted."""
    parts = []
    for k, v in sorted(spec["params"].items()):
        if k in catalog.SENSITIVE:
            v = "redacted"
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, dict):
            v = "{" + ", ".join(f"{a}={'redacted' if catalog.credential_entry(k, a, b) else b}"
                                for a, b in v.items()) + "}"
        parts.append(f"{k}={v}")
    return ";".join(parts)


_REDACT_KV = re.compile(r"(^|;)(" + "|".join(sorted(catalog.SENSITIVE)) + r")=[^;]*", re.IGNORECASE)


def redact_listed(secret_string):
    """DuckDB's own secret_string of a secret the package did not make, redacted."""
    return _REDACT_KV.sub(r"\1\2=redacted", secret_string or "")


# --- a role's DuckDB SQL ---------------------------------------------------------
#
# Whether a failing statement's text may reach the log is decided on DuckDB's
# tokens of it (statements.carries_credentials, in the engine's process): the
# words of its identifiers and keywords, and each string literal's value, are
# judged here. Never a pattern over the statement's text.

# Word stems that name a credential wherever they occur in a word
# (sslpassword, x_auth_token, client_secret, AccessKeySecret) ...
_CREDENTIAL_STEMS = ("secret", "passw", "passphrase", "passcode", "pwd", "token", "credential", "bearer", "jwt",
                     "signature", "authoriz", "authent", "cookie", "assertion")
# ... and words that do as a whole word (key_id, X-Api-Key, sig, SAS), or as a
# word's end (AccountKey, accesskey) or start (session_token, SessionId).
_CREDENTIAL_WORDS = frozenset({"key", "keys", "sig", "sas", "sid", "auth", "private", "pass", "pat", "pw"})
# Query-string settings of DuckDB's S3 URLs that are never credentials (an
# allowlist: any other name's value is masked, and makes the statement quiet).
_SHOWN_QUERY_NAMES = frozenset({"s3_endpoint", "s3_region", "s3_use_ssl", "s3_url_style",
                                "s3_url_compatibility_mode"})


def words(value):
    """The words of a value, lowercased: runs of letters and runs of digits,
    also split where a lower-case letter meets an upper-case one (AccountKey)."""
    out, cur, prev = [], [], ""
    for ch in value:
        if ch.isalnum():
            if cur and ((prev.islower() and ch.isupper()) or prev.isdigit() != ch.isdigit()):
                out.append("".join(cur))
                cur = []
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
        prev = ch
    if cur:
        out.append("".join(cur))
    return [w.lower() for w in out]


def names_credential(value):
    """Whether a word of value names a credential (secret, password, key_id, ...)."""
    for w in words(value):
        if (any(s in w for s in _CREDENTIAL_STEMS) or w in _CREDENTIAL_WORDS
                or w.endswith("key") or w.startswith("session")):
            return True
    return False


def _parameters(piece):
    """The elements of a URL's query string, ;-parameters and fragment: what
    comes after its first '?', ';' or '#', split at '&', ';', '?' and '#' (a
    hive partition, /year=2024/, is a path and not among them)."""
    cut = min((i for i in (piece.find("?"), piece.find(";"), piece.find("#")) if i >= 0), default=-1)
    if cut < 0:
        return []
    rest = piece[cut + 1:]
    return [e for e in rest.replace(";", "&").replace("?", "&").replace("#", "&").split("&") if e]


def _userinfo(piece):
    """The user information of a URL or connection string in piece
    (scheme://user:password@host, scheme://token@host, user:password@host,
    user/password@service), or None."""
    if "@" not in piece:
        return None
    head = piece.rsplit("@", 1)[0]
    if "://" in head:
        info = head.split("://", 1)[1]
        return info if "/" not in info else None
    return head if (":" in head or "/" in head) else None


def _secret_of(info):
    """The password (or token) in user information."""
    for sep in (":", "/"):
        if sep in info:
            return info.split(sep, 1)[1]
    return info


def value_carries(value):
    """Whether a string value of a role's SQL (a literal, a parameter) may be a
    credential or hold one: a word that names one (also once percent-decoded),
    an Authorization-style value (Basic ..., Bearer ..., Digest ..., Token ...),
    a URL's or connection string's user information, a query-string or
    ;-parameter element that is not one of _SHOWN_QUERY_NAMES' settings. None
    (a literal DuckDB read that this package cannot): yes."""
    if value is None:
        return True
    import urllib.parse
    if names_credential(value) or names_credential(urllib.parse.unquote(value)) or catalog.credential_value(value):
        return True
    for piece in value.split():
        if _userinfo(piece) is not None:
            return True
        if any(e.partition("=")[0].lower() not in _SHOWN_QUERY_NAMES or not e.partition("=")[1] or "@" in e
               for e in _parameters(piece)):
            return True
    return False


def url_pieces(value):
    """The pieces of a path or URL that may be credentials: the password (or
    token) of its user information, the values of its query string and
    ;-parameters (and elements with no '=', whole), but for _SHOWN_QUERY_NAMES."""
    import urllib.parse
    out = set()
    for piece in {*value.split(), *urllib.parse.unquote(value).split()}:
        info = _userinfo(piece)
        if info is not None:
            out.add(_secret_of(info))
        for element in _parameters(piece):
            name, eq, val = element.partition("=")
            if not eq:
                out.add(element)
            elif name.lower() not in _SHOWN_QUERY_NAMES or "@" in val:
                out.add(val)
    return {v for v in out if v}


def path_like(value):
    """A path or URL (shown in errors, its credential-looking pieces masked)."""
    return value.startswith(("/", "./", "~/")) or "://" in value[:24]


def every_word(text):
    """Every piece of text between spaces, quotes, brackets and separators
    (what is masked when the literals of a failed statement are not known)."""
    return [w for w in text.translate({ord(c): " " for c in "'\"()[]{}<>,;=&?@:|!*+^$#\\"}).split() if len(w) >= 4]


def credentials_in(values, paths):
    """The pieces of a failed statement that may be credentials, to mask in its
    error: values whole (its string literals and parameter values that are not
    paths) and each of their words, and the credential-looking pieces of both
    (url_pieces: DuckDB may quote a value joined to others, or URL-encoded)."""
    out = set(values)
    for v in values:
        # DuckDB may quote a piece of a literal (a JSON path, a regex group):
        # each piece that is not a plain word (password, host stay readable)
        out.update(w for w in every_word(v) if not w.isalpha())
    for p in set(values) | set(paths):
        out.update(url_pieces(p))
    out.update([v.lower() for v in out])    # ... or lower-case it (a struct key, a function's name)
    return [v for v in out if len(v) >= 4]
