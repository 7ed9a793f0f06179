"""The data contract's field limits are what the CRM columns hold: a row that passes intake fits the database."""

from __future__ import annotations

import pytest

from leadflow.crm.schema import Lead, LeadSubmission
from leadflow.domain.contract import FIELD_LIMITS

COLUMNS = {
    "email": Lead, "first_name": Lead, "last_name": Lead, "job_title": Lead, "company": Lead,
    "company_size": Lead, "industry": Lead, "source": LeadSubmission, "external_id": LeadSubmission,
    "utm_source": LeadSubmission, "utm_medium": LeadSubmission, "utm_campaign": LeadSubmission,
}


@pytest.mark.parametrize(("field", "model"), COLUMNS.items())
def test_field_limit_matches_the_column(field, model):
    assert FIELD_LIMITS[field] == model.__table__.c[field].type.length

