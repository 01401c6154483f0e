"""Encryption at rest of user-mapping values (duckdb.encryption_key_file).

A sensitive option's value is stored as

    dsenc1:<key id>:<base64url(nonce + AES-256-GCM ciphertext and tag)>

The key file, named only in the configuration files, holds one key per line
(64 hexadecimal characters): the first encrypts, every line decrypts. The key
id is derived from the key, so a value tells which line opens it; the
associated data binds a value to its server, its mapping's role and its
option, so a ciphertext copied anywhere else does not open.

cryptography is imported only when a value is sealed or opened: without a key
file nothing here costs anything.
"""

import base64
import os
import stat

from .errors import CONFIG_FILE_ERROR, PgError

PREFIX = "dsenc1:"
SETTING = "duckdb.encryption_key_file"
_NONCE = 12


class KeyProblem(Exception):
    """A value cannot be opened; the message names the file, never a key.
    foreign: the key is there but the value does not belong where it is."""

    def __init__(self, message, foreign=False):
        super().__init__(message)
        self.foreign = foreign


def is_sealed(value):
    return isinstance(value, str) and value.startswith(PREFIX)


def _key_id(key):
    import hashlib  # only with a key configured
    return hashlib.sha256(b"duckdb_secrets key id\0" + key).hexdigest()[:8]


def _binding(server, role, option):
    """Where a value belongs: server name, role name ('public' for PUBLIC), option."""
    return "\0".join(("duckdb_secrets/v1", server, role, option.lower())).encode()


class Keys:
    """The keys of one key file: current (first line) and all by id."""

    def __init__(self, path, keys):
        self.path = path
        self.current = keys[0]
        self.current_id = _key_id(keys[0])
        self.by_id = {}
        for k in keys:
            self.by_id.setdefault(_key_id(k), k)

    def seal(self, value, server, role, option):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        nonce = os.urandom(_NONCE)
        ct = AESGCM(self.current).encrypt(nonce, value.encode(), _binding(server, role, option))
        return f"{PREFIX}{self.current_id}:" + base64.urlsafe_b64encode(nonce + ct).decode().rstrip("=")

    def open(self, value, server, role, option):
        """The plaintext, or raises KeyProblem saying why (never with a value)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        _, key_id, body = value.split(":", 2) if value.count(":") >= 2 else (None, "", "")
        key = self.by_id.get(key_id)
        if key is None:
            raise KeyProblem(f"its key (id {key_id[:8] if key_id.isalnum() else '?'}) is not in {self.path}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if len(raw) < _NONCE + 16:
                raise ValueError
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], _binding(server, role, option)).decode()
        except (ValueError, InvalidTag, UnicodeDecodeError):
            raise KeyProblem(f'the encrypted value of option "{option}" does not belong to this user mapping '
                             "(copied from another mapping or option, or damaged; or the role was renamed)",
                             foreign=True) from None


_cache = {}     # path -> ((mtime_ns, size, ino), Keys)


def load(path, data_directory=None):
    """The Keys of the key file at path (cached while the file is unchanged).

    Raises KeyProblem: the file is missing, unreadable, inside the data
    directory, open to other users, or has a line that is not a key."""
    if not path:
        raise KeyProblem(f"{SETTING} is not set")
    if not os.path.isabs(path):
        raise KeyProblem(f"{SETTING} must be an absolute path")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyProblem(f'key file "{path}" does not exist') from None
    except OSError as e:
        raise KeyProblem(f'could not access key file "{path}": {e.strerror}') from None
    sig = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _cache.get(path)
    if hit is not None and hit[0] == sig:
        return hit[1]
    if not stat.S_ISREG(st.st_mode):
        raise KeyProblem(f'key file "{path}" is not a regular file')
    if data_directory:
        real, data = os.path.realpath(path), os.path.realpath(data_directory)
        if real == data or real.startswith(data.rstrip("/") + "/"):
            raise KeyProblem(f'key file "{path}" is inside the data directory, which backups copy')
    # As PostgreSQL asks of ssl_key_file: no access for others; group read
    # only when root owns the file.
    if st.st_mode & (0o077 if st.st_uid != 0 else 0o037):
        raise KeyProblem(f'key file "{path}" has group or world access')
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 16)
    except OSError as e:
        raise KeyProblem(f'could not read key file "{path}": {e.strerror}') from None
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            if len(line) != 64:
                raise ValueError
            keys.append(bytes.fromhex(line.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            raise KeyProblem(f'line {n} of key file "{path}" is not a key of 64 hexadecimal characters') from None
    if not keys:
        raise KeyProblem(f'key file "{path}" holds no key')
    k = Keys(path, keys)
    _cache[path] = (sig, k)
    return k


HINT = (f"{SETTING} names a file outside the data directory, readable only by the server's OS user, with "
        "one key per line (64 hexadecimal characters, e.g. from openssl rand -hex 32); see docs/security.md.")


class Keyring:
    """The keys the configuration files name, loaded when first needed.

    conf: the administrator's duckdb.* settings (configuration files only).
    The data directory is the backend's working directory."""

    def __init__(self, conf):
        self.path = (conf.get(SETTING) or "").strip()
        self._keys = None
        self._problem = None

    @property
    def configured(self):
        return bool(self.path)

    def keys(self):
        """Keys, or raises KeyProblem."""
        if self._keys is None and self._problem is None:
            try:
                self._keys = load(self.path, os.getcwd())
            except KeyProblem as e:
                self._problem = e
        if self._problem is not None:
            raise KeyProblem(str(self._problem), self._problem.foreign)
        return self._keys

    def sealing(self):
        """Keys to seal new values with, None without the setting; a
        configured but unusable key file is an error (never store in clear
        because the key broke)."""
        if not self.configured:
            return None
        try:
            return self.keys()
        except KeyProblem as e:
            raise PgError(CONFIG_FILE_ERROR, f"cannot encrypt secret values: {e}", hint=HINT) from None

    def open(self, options, server, role):
        """options with every sealed value opened; raises KeyProblem."""
        if not any(is_sealed(item.partition("=")[2]) for item in options or ()):
            return options
        if role is None:
            raise KeyProblem("its values are encrypted and the extension's SQL objects predate encryption "
                             "(ALTER EXTENSION duckdb_secrets UPDATE)")
        try:
            keys = self.keys()
        except KeyProblem as e:
            raise KeyProblem(f"its values are encrypted and {e}") from None
        out = []
        for item in options:
            name, _, value = item.partition("=")
            if is_sealed(value):
                value = keys.open(value, server, role, name)
            out.append(f"{name}={value}")
        return out


def seal_options(keys, options, server, role, sensitive):
    """options ("name=value" list) with every sensitive value sealed; sealed
    ones are kept as they are. Returns (options, how many were sealed)."""
    out, n = [], 0
    for item in options or ():
        name, _, value = item.partition("=")
        if name.lower() in sensitive and not is_sealed(value):
            value = keys.seal(value, server, role, name)
            n += 1
        out.append(f"{name}={value}")
    return out, n
