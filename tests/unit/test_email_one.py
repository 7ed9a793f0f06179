"""The scalar email twins (one live lead at a time) give exactly the vectorized functions' answers."""

from __future__ import annotations

import pandas as pd
import pytest

from leadflow.domain import normalize as nz
from leadflow.domain.inbox import InboxError, check_lead
from tests.unit.test_normalize import EMAILS, INVALID_EMAILS, VALID_EMAILS

MORE = ["Jane Doe <jane@x.com> extra", "mailto:a@b.com?cc=c@d.com", "a@b.test", "a@b.onion", "zoë@例え.jp",
        "Ünïcode@Bücher.DE", "user@xn--bcher-kva.ch", "x@y.arpa", "a\u3000b@c.com", "\u2028jane@x.com\u2029",
        "jane\x85@x.com", "İstanbul@x.com", "ß@straße.de", "a@b.co\u200b", ";,jane@x.com,;"]
VALUES = [raw for raw, _ in EMAILS if isinstance(raw, str)] + VALID_EMAILS + INVALID_EMAILS + MORE


@pytest.mark.parametrize("raw", VALUES)
def test_the_scalar_email_functions_agree_with_the_vectorized_ones(raw):
    normalized = nz.normalize_email(pd.Series([raw], dtype="string")).iloc[0]
    one = nz.normalize_email_one(raw)
    assert (None if pd.isna(normalized) else normalized) == one
    assert bool(nz.is_valid_email(pd.Series([raw], dtype="string")).iloc[0]) is nz.is_valid_email_one(raw)
    if one is not None:
        assert bool(nz.is_valid_email(pd.Series([one], dtype="string")).iloc[0]) is nz.is_valid_email_one(one)


@pytest.mark.parametrize(("payload", "message"), [
    ({"email": "Jane Doe <Jane@Acme.com>"}, None),
    ({"Email Address": "jörg@bücher.de"}, None),
    ({"first_name": "Jane"}, "no email"),
    ({"email": ""}, "no email"),
    ({"email": "jane@localhost"}, "not a valid address"),
    ({}, "non-empty JSON object"),
])
def test_check_lead_refuses_only_leads_without_a_usable_email(payload, message):
    if message is None:
        check_lead(payload)
    else:
        with pytest.raises(InboxError, match=message):
            check_lead(payload)
