"""Ids Peerway mints (resources, audit events) are random version 4 UUIDs in their usual text."""

from __future__ import annotations

import uuid

from service.app.clock import new_id


def test_new_ids_are_distinct_version_4_uuids_in_canonical_text() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    # every bit outside the version and variant varies
    varying = 0
    for text in ids:
        varying |= uuid.UUID(text).int ^ uuid.UUID(ids[0]).int
    assert varying == ((1 << 128) - 1) & ~(0xF << 76) & ~(0x3 << 62)
