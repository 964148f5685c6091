"""Parsed Consents are kept by their stored text: another Consent with the same id and version is never mixed up."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from service.app import consents
from service.app.consents import consent_record
from service.fhir.build import stamped_consent
from tests.support.consents import peer_consent

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def stored(status: str) -> str:
    consent = peer_consent("Patient/c1", ["preferred-name"], actor="Practitioner/p1", status=status)
    return json.dumps(stamped_consent(consent, "same-id", 1, "Patient/c1", NOW))


def test_the_same_id_and_version_with_other_content_is_read_anew() -> None:
    # Two databases (a test's, a restored copy) can each hold version 1 of Consent/same-id, saying different things.
    active, withdrawn = stored("active"), stored("inactive")
    assert consent_record(active).status == "active"
    assert consent_record(withdrawn).status == "inactive"
    assert consent_record(active).status == "active"


def test_the_same_text_is_parsed_once() -> None:
    text = stored("active")
    assert consent_record(text) is consent_record(json.loads(json.dumps(text)))


def test_the_cache_keeps_no_consent_text() -> None:
    # A Consent may carry a large attached form; the cache holds a digest of each version, never its text.
    text = stored("active")
    consent_record(text)
    assert all(isinstance(key, bytes) and len(key) == 32 for key in consents._records)
    assert not any(text in str(key) for key in consents._records)
