"""Encryption at rest of user-mapping values (duckdb.encryption_key_file).

A sensitive option's value is stored as

    dsenc1:<key id>:<base64url(nonce + AES-256-GCM ciphertext and tag)>

The key file, named only in the configuration files, holds one key per line:
64 hexadecimal characters, or kms:<KMS key id or ARN>:<base64 CiphertextBlob>,
a data key wrapped by AWS KMS (GenerateDataKey, AES_256) that the backend
unwraps with KMS Decrypt once and keeps in its memory only. The first line
encrypts, every line decrypts. The key id is derived from the (plain) key, so
a value tells which line opens it, and a key keeps its id when it is wrapped
by KMS; the associated data binds a value to its server, its mapping's role
and its option, so a ciphertext copied anywhere else does not open.

cryptography (and botocore, for a kms line) is imported only when a value is
sealed or opened: without a key file nothing here costs anything.
"""

import base64
import binascii
import os
import re
import stat
import time

from .errors import CONFIG_FILE_ERROR, PgError

PREFIX = "dsenc1:"
SETTING = "duckdb.encryption_key_file"
_NONCE = 12

KMS_PREFIX = b"kms:"
# A dead or slow KMS must not hang a backend: each Decrypt gets these, and a
# failed one is not tried again by this backend for KMS_RETRY_AFTER seconds.
KMS_CONNECT_TIMEOUT = 3
KMS_READ_TIMEOUT = 5
KMS_ATTEMPTS = 2
KMS_RETRY_AFTER = 60


class KeyProblem(Exception):
    """A value cannot be opened; the message names the file, never a key.
    foreign: the key is there but the value does not belong where it is.
    shared: a problem of the key file itself (the same for every value it
    touches), which a sync reports once rather than once per server."""

    def __init__(self, message, foreign=False, shared=False):
        super().__init__(message)
        self.foreign = foreign
        self.shared = shared


def is_sealed(value):
    return isinstance(value, str) and value.startswith(PREFIX)


def _key_id(key):
    import hashlib  # only with a key configured
    return hashlib.sha256(b"duckdb_secrets key id\0" + key).hexdigest()[:8]


def _binding(server, role, option):
    """Where a value belongs: server name, role name ('public' for PUBLIC), option."""
    return "\0".join(("duckdb_secrets/v1", server, role, option.lower())).encode()


class Keys:
    """The keys of one key file: current (first line) and all by id.

    entries: (line number, key, problem) in the file's order; key is None for
    a kms line that could not be unwrapped, problem then says why. Such a
    line's values do not open; the other lines' values do. A current key that
    is None seals nothing (Keyring.sealing)."""

    def __init__(self, path, entries):
        self.path = path
        _, self.current, self.current_problem = entries[0]
        self.current_id = _key_id(self.current) if self.current is not None else None
        self.failed = [problem for _, key, problem in entries if key is None]
        self.by_id = {}
        for _, k, _ in entries:
            if k is not None:
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
            shown = key_id[:8] if key_id.isalnum() else "?"
            if self.failed:
                # It may be the key of the line that failed: nothing tells.
                raise KeyProblem(f"its key (id {shown}) is on no usable line: " + "; ".join(self.failed),
                                 shared=True)
            raise KeyProblem(f"its key (id {shown}) is not in {self.path}")
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
# KMS-wrapped lines, by (KMS key id, wrapped key): unwrapped once per backend
# (this process's memory only, never written anywhere), or the last failure
# and when (monotonic), tried again after KMS_RETRY_AFTER seconds.
_unwrapped = {}
_kms_failed = {}

_KMS_CODE = re.compile(r"[^A-Za-z0-9_.-]")


def _kms_region(kms_id, sess):
    """The region of a KMS key: its ARN's, else AWS_REGION, else AWS_DEFAULT_REGION or the config file's."""
    if kms_id.startswith("arn:"):
        parts = kms_id.split(":")
        if len(parts) >= 6 and parts[2] == "kms" and parts[3]:
            return parts[3]
    return os.environ.get("AWS_REGION") or sess.get_config_variable("region")


def _kms_decrypt(kms_id, wrapped, settings):
    """The plain data key of a wrapped one through KMS Decrypt with the
    server's AWS credential chain (aws._session: duckdb.aws_config_file and
    duckdb.aws_shared_credentials_file count; instance metadata only where
    AWS_EC2_METADATA_DISABLED is set to false). The endpoint is botocore's
    own: AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, else AWS's.
    Returns (key, None) or (None, error code)."""
    import botocore.config
    import botocore.exceptions

    from . import aws
    try:
        sess = aws._session({}, settings if settings is not None else aws.Settings())
        region = _kms_region(kms_id, sess)
        if not region:
            return None, "NoRegionError (give the key's ARN, or set AWS_REGION)"
        client = sess.create_client("kms", region_name=region, config=botocore.config.Config(
            connect_timeout=KMS_CONNECT_TIMEOUT, read_timeout=KMS_READ_TIMEOUT,
            retries={"total_max_attempts": KMS_ATTEMPTS, "mode": "standard"}))
        plain = client.decrypt(CiphertextBlob=wrapped, KeyId=kms_id)["Plaintext"]
    except botocore.exceptions.ClientError as e:
        code = _KMS_CODE.sub("", str(e.response.get("Error", {}).get("Code") or "ClientError"))[:64]
        return None, f"HTTP {code}" if code.isdigit() else code      # an answer that is not KMS's JSON
    except (botocore.exceptions.BotoCoreError, PgError, ValueError, OSError, KeyError, TypeError) as e:
        return None, type(e).__name__
    if len(plain) != 32:
        return None, f"not an AES-256 key ({len(plain)} bytes; generate it with --key-spec AES_256)"
    return plain, None


def _unwrap(n, path, kms_id, wrapped, settings):
    """(key, None) for a kms line, or (None, why): once per backend."""
    sig = (kms_id, wrapped)
    key = _unwrapped.get(sig)
    if key is not None:
        return key, None
    failed = _kms_failed.get(sig)
    if failed is None or time.monotonic() - failed[0] >= KMS_RETRY_AFTER:
        key, code = _kms_decrypt(kms_id, wrapped, settings)
        if key is not None:
            _unwrapped[sig] = key
            _kms_failed.pop(sig, None)
            return key, None
        failed = (time.monotonic(), code)
        _kms_failed[sig] = failed
    return None, (f'line {n} of key file "{path}" (a kms line) could not be unwrapped: '
                  f"KMS Decrypt failed: {failed[1]}")


def _kms_line(line):
    """(KMS key id, wrapped key) of a kms:<key id or ARN>:<base64> line; raises ValueError."""
    kms_id, _, blob = line[len(KMS_PREFIX):].decode("ascii").rpartition(":")
    if not kms_id or not blob:
        raise ValueError
    try:
        wrapped = base64.b64decode(blob, validate=True)
    except binascii.Error:
        raise ValueError from None
    if not wrapped:
        raise ValueError
    return kms_id, wrapped


def load(path, data_directory=None, settings=None):
    """The Keys of the key file at path (cached while the file is unchanged
    and every line is usable). settings: aws.Settings for kms lines.

    Raises KeyProblem: the file is missing, unreadable, inside the data
    directory, open to other users, or has a line that is not a key. A kms
    line KMS does not unwrap makes its line unusable (Keys.failed)."""
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
    lines = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            if line.startswith(KMS_PREFIX):
                lines.append((n, _kms_line(line)))
                continue
            if len(line) != 64:
                raise ValueError
            lines.append((n, bytes.fromhex(line.decode("ascii"))))
        except (ValueError, UnicodeDecodeError):
            raise KeyProblem(f'line {n} of key file "{path}" is not a key of 64 hexadecimal characters nor '
                             "kms:<KMS key id or ARN>:<base64 wrapped key>") from None
    if not lines:
        raise KeyProblem(f'key file "{path}" holds no key')
    entries = []
    for n, key in lines:
        if isinstance(key, tuple):
            entries.append((n, *_unwrap(n, path, *key, settings)))
        else:
            entries.append((n, key, None))
    k = Keys(path, entries)
    if not k.failed:
        _cache[path] = (sig, k)
    return k


HINT = (f"{SETTING} names a file outside the data directory, readable only by the server's OS user, with "
        "one key per line (64 hexadecimal characters, e.g. from openssl rand -hex 32, or kms:<KMS key id or "
        "ARN>:<base64 data key wrapped by AWS KMS>); see docs/security.md.")


class Keyring:
    """The keys the configuration files name, loaded when first needed.

    conf: the administrator's duckdb.* settings (configuration files only).
    The data directory is the backend's working directory."""

    def __init__(self, conf):
        self.path = (conf.get(SETTING) or "").strip()
        self.conf = conf
        self._keys = None
        self._loaded = None
        self._problem = None
        self._warned = False

    def new_sync(self):
        """A sync begins: a problem of the key file itself is reported again, once."""
        self._warned = False

    def warning(self, problem, text):
        """The WARNING for a value that did not open (text), or None: a
        problem of the key file itself (problem.shared) is said once per sync,
        not once per server; duckdb.secrets() lists every server it skips."""
        if not problem.shared:
            return text
        if self._warned:
            return None
        self._warned = True
        return text + (" (the same goes for every other server with values this key file cannot open now; "
                       "duckdb.secrets() lists them)")

    @property
    def configured(self):
        return bool(self.path)

    def keys(self):
        """Keys, or raises KeyProblem. Keys with a kms line that failed are
        loaded again (KMS asked again) once KMS_RETRY_AFTER has passed."""
        if self._keys is not None and self._keys.failed and time.monotonic() - self._loaded >= KMS_RETRY_AFTER:
            self._keys = None
        if self._keys is None and self._problem is None:
            from . import aws
            try:
                self._keys = load(self.path, os.getcwd(), aws.Settings.from_conf(self.conf))
                self._loaded = time.monotonic()
            except KeyProblem as e:
                self._problem = e
        if self._problem is not None:
            raise KeyProblem(str(self._problem), self._problem.foreign, shared=True)
        return self._keys

    def sealing(self):
        """Keys to seal new values with, None without the setting; a
        configured but unusable key file is an error (never store in clear
        because the key broke)."""
        if not self.configured:
            return None
        try:
            keys = self.keys()
            if keys.current is None:        # a kms first line KMS did not unwrap
                raise KeyProblem(keys.current_problem)
            return keys
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
            raise KeyProblem(f"its values are encrypted and {e}", shared=True) from None
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
