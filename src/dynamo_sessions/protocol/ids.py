"""Session ids and the item key they map to: the id policy, in one place."""

from __future__ import annotations

import hashlib
import re
import secrets

_SESSION_ID = re.compile(r"[A-Za-z0-9_\-.,~:]{1,256}")


def new_session_id() -> str:
    """A fresh session id: 256 bits from ``secrets``, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def is_valid_session_id(session_id: object) -> bool:
    """True for a str of 1..256 characters from ``[A-Za-z0-9_-.,~:]`` (PHP's ids included)."""
    return isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id) is not None


def log_id(session_id: str) -> str:
    """What logs and metrics show for a session: a short hash, never the id itself."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


def item_key(session_name: str, session_id: str, hashed: bool) -> str:
    """The hash key value for a session id: ``<session_name>_<id>`` (or its SHA-256 when
    ``hashed``, the ``hash_session_ids`` option)."""
    if not is_valid_session_id(session_id):
        raise ValueError(
            "session id must be 1..256 characters of [A-Za-z0-9_-.,~:]; "
            "use new_session_id() to make one"
        )
    if hashed:
        return f"{session_name}_{hashlib.sha256(session_id.encode()).hexdigest()}"
    return f"{session_name}_{session_id}"
