"""A disclosure's AuditEvent rendered once per decided summary is, on every read, the very text the whole event
serialises to: same members, same order, the read's own id and instant."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from hypothesis import given
from hypothesis import strategies as st

from consent import DataCategory
from service.fhir import build
from service.fhir.audit_text import AuditEventText

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DISCLOSURE = build.Disclosure(
    audit_id="template",
    client_id="client-1",
    actor_reference="Practitioner/peer-1",
    actor_name='Zoë "Z" O\'Neil\n\u2028',
    purpose="COC",
    disclosed=frozenset({DataCategory.PREFERRED_NAME, DataCategory.RECOVERY_GOALS}),
    withheld=frozenset({DataCategory.CONTACT_DETAILS}),
    consent_ids=frozenset({"consent-1", "consent-2"}),
    recorded_at=NOW - timedelta(days=3),
    items=(
        build.DisclosedItem("Goal/g-1", DataCategory.RECOVERY_GOALS, True, (("http://x/labels", "R"),)),
        build.DisclosedItem("Goal/g-2", DataCategory.RECOVERY_GOALS, False),
    ),
)


@pytest.mark.parametrize(
    "moment", [NOW, NOW.replace(microsecond=123456), NOW.astimezone(timezone(timedelta(hours=-5)))]
)
def test_each_read_renders_the_whole_event_with_its_own_id_and_moment(moment: datetime) -> None:
    text = AuditEventText.of(build.disclosure_audit_event(DISCLOSURE))
    rendered = text.render("audit-7", moment)
    whole = build.disclosure_audit_event(replace(DISCLOSURE, audit_id="audit-7", recorded_at=moment))
    assert rendered == build.to_json(whole)
    assert json.loads(rendered)["id"] == "audit-7"
    assert text.outcome == whole["outcome"] == "0"
    AuditEvent.model_validate(json.loads(rendered))


def test_a_refusal_keeps_its_outcome() -> None:
    refused = replace(DISCLOSURE, disclosed=frozenset(), items=())
    text = AuditEventText.of(build.disclosure_audit_event(refused))
    assert text.outcome == "4"
    whole = build.disclosure_audit_event(replace(refused, audit_id="a", recorded_at=NOW))
    assert text.render("a", NOW) == build.to_json(whole)


@given(name=st.text(), client=st.text(min_size=1), audit_id=st.text())
def test_any_name_and_id_render_as_the_whole_event(name: str, client: str, audit_id: str) -> None:
    chosen = replace(DISCLOSURE, actor_name=name, client_id=client)
    text = AuditEventText.of(build.disclosure_audit_event(chosen))
    whole = build.disclosure_audit_event(replace(chosen, audit_id=audit_id, recorded_at=NOW))
    assert text.render(audit_id, NOW) == build.to_json(whole)


def test_an_event_without_an_id_before_its_moment_is_refused() -> None:
    event = build.disclosure_audit_event(DISCLOSURE)
    moved = {"recorded": event.pop("recorded"), **event}
    with pytest.raises(ValueError, match="no id before"):
        AuditEventText.of(moved)
