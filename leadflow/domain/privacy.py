"""Keeping personal data out of logs, alerts and error texts."""

from __future__ import annotations

import hmac
import re
from hashlib import sha256

from leadflow.domain.spam import mask_email

# Error messages may quote an input row: never let an address reach an alert or a log.
_EMAIL = re.compile(r"[^\s@<>\"',;:()\[\]]+@[^\s@<>\"',;:()\[\]]+")


def mask_addresses(text: str) -> str:
    """The text with every e-mail address in it masked."""
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)


def keyed_hash(value: str, key: str) -> str:
    """HMAC-SHA256 of a value under a secret key, as hex: a bare hash of an address is reversible from a list."""
    if not key:
        raise ValueError("a keyed hash needs a non-empty key")
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), sha256).hexdigest()
