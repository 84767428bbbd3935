"""Who is calling: the owner of the streams a request may see.

With API keys configured, a request needs ``Authorization: Bearer <key>`` and its owner is
a digest of the key (the key itself is never stored with a stream). With none configured,
every caller is the one anonymous owner, whatever token an SDK sends.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from quart import request

from .errors import ApiError

ANONYMOUS = "anonymous"


def owner_of_request(keys: Sequence[str]) -> str:
    if not keys:
        return ANONYMOUS
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        for key in keys:
            if hmac.compare_digest(key.encode(), token.encode()):
                return "key:" + hashlib.sha256(key.encode()).hexdigest()[:24]
    raise ApiError(401, "unauthorized", "a valid API key is required "
                   "(send it as 'Authorization: Bearer <key>')",
                   headers={"WWW-Authenticate": "Bearer"})
