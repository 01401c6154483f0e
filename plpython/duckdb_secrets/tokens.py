"""One-time tokens: how the package's own code calls its SECURITY DEFINER
helpers, and nothing else can.

The caller leaves (nonce, payload...) in GD (PL/Python's per-backend
dictionary, which SQL cannot reach), passes the nonce as the helper's
argument, and takes the token back when the call returns; the helper redeems
it once: a direct call from SQL, another role, or a second call gets nothing.
"""

import contextlib
import os

CALLER = "duckdb_secrets.caller"    # _role_secrets, _store_mapping_options: (role oid, ...)


@contextlib.contextmanager
def issued(GD, key, *payload):
    """A token under `key` for the duration of the block; yields its nonce."""
    nonce = os.urandom(16).hex()
    GD[key] = (nonce, *payload)
    try:
        yield nonce
    finally:
        GD.pop(key, None)


def redeem(GD, key, nonce):
    """The token's payload (a tuple) if `nonce` is the one issued under `key`;
    None otherwise. Either way the token is gone."""
    token = GD.pop(key, None)
    if token is None or nonce is None or token[0] != nonce:
        return None
    return token[1:]
