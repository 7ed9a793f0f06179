"""Keeping personal data out of logs, alerts and error texts, and formulas out of the CSV files we write."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterator
from hashlib import sha256
from typing import Any

import pandas as pd

from leadflow.domain.spam import mask_email

# Error messages may quote an input row: never let an address reach an alert or a log.
_EMAIL = re.compile(r"[^\s@<>\"',;:()\[\]]+@[^\s@<>\"',;:()\[\]]+")

# OWASP "CSV Injection": a cell starting with one of these is read as a formula by Excel, LibreOffice and Sheets.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def mask_addresses(text: str) -> str:
    """The text with every e-mail address in it masked."""
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)


def _neutral(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        # A leading single quote makes the spreadsheet show the cell as text instead of evaluating it.
        return "'" + value
    return value


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of frame whose text cells cannot start a spreadsheet formula (numbers, None and NaN stay as they are)."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
                or pd.api.types.is_datetime64_any_dtype(series)):
            continue
        out[column] = series.map(_neutral, na_action="ignore").astype(series.dtype)
    return out


def keyed_hash(value: str, key: str) -> str:
    """HMAC-SHA256 of a value under a secret key, as hex: a bare hash of an address is reversible from a list."""
    if not key:
        raise ValueError("a keyed hash needs a non-empty key")
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), sha256).hexdigest()


def keyed_hashes(values: pd.Series, key: str | bytes) -> pd.Series:
    """`keyed_hash` of each value as it stands (NA stays NA), for a whole column at once."""
    secret = key.encode("utf-8") if isinstance(key, str) else key
    if not secret:
        raise ValueError("a keyed hash needs a non-empty key")
    # One keyed state copied per value skips re-deriving the key's inner and outer pads each time.
    base = hmac.new(secret, digestmod=sha256)
    digests = []
    for value in values.astype("string").tolist():
        if value is pd.NA or value is None:
            digests.append(None)
            continue
        mac = base.copy()
        mac.update(value.encode("utf-8"))
        digests.append(mac.hexdigest())
    return pd.Series(digests, index=values.index, dtype="string")


# What an erased person's quarantined row keeps instead of its payload: the keyed hash that recognized them.
ERASED_HASH_FIELD = "erased_email_hash"


def erased_row_payload(email_hash: str) -> dict[str, str]:
    """The payload an erased person's re-imported row is quarantined with: their keyed hash, nothing they sent."""
    return {ERASED_HASH_FIELD: email_hash}


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (a payload stored as JSON text is opened first)."""
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError:
            yield value
            return
        if isinstance(inner, str):
            yield inner
        else:
            yield from _strings(inner)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def payload_carries(payload: Any, email: str) -> bool:
    """Whether any field of a payload holds this (normalized) address, alone or inside text, in any case."""
    for text in _strings(payload):
        if email in text.lower():
            found = {a.strip(" <>\"'`,;.").lower() for a in _EMAIL.findall(text)}
            if email in found or any(a.removeprefix("mailto:") == email for a in found):
                return True
    return False
