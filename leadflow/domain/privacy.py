"""Keeping personal data out of logs, alerts and error texts."""

from __future__ import annotations

import re

from leadflow.domain.spam import mask_email

# Error messages may quote an input row: never let an address reach an alert or a log.
_EMAIL = re.compile(r"[^\s@<>\"',;:()\[\]]+@[^\s@<>\"',;:()\[\]]+")


def mask_addresses(text: str) -> str:
    """The text with every e-mail address in it masked."""
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
