"""FHIR ids (R4 datatypes: `[A-Za-z0-9\\-\\.]{1,64}`), as Peerway accepts them in paths, references and events.

"." and ".." fit the pattern but are path segments to every HTTP server: an id-only read of `Encounter/..`
at the EHR would be a read of its base, and `Encounter/.` a search of every Encounter. No FHIR server hands
them out, so they are refused as ids everywhere.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 64  # FHIR ids are at most 64 characters; so are the columns that keep them
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
NOT_IDS = frozenset({".", ".."})
MAX_IDENTIFIER_LENGTH = 300  # system|value of an identifier Peerway keys on (the columns that keep it)
ID_RULE = "a FHIR id is 1 to 64 of A-Z a-z 0-9 - . (and not '.' or '..')"


def is_fhir_id(value: str) -> bool:
    return FHIR_ID.fullmatch(value) is not None and value not in NOT_IDS
