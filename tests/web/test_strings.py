"""Every word a page shows comes from service/web/strings.py: a key a template names but the dictionary lacks
would show the key itself to a coordinator or a peer."""

from __future__ import annotations

import re

from consent.categories import DataCategory
from service.app.desk import TODAY_KEYS
from service.app.desk_alerts import RESOLVE_CHOICES
from service.domain.safety import KINDS
from service.domain.vocabulary import ContactKind, PeerStatus
from service.web.pages import HERE
from service.web.strings import EN, translator

LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_.-]+)["']""")


def test_every_key_a_template_names_is_in_the_english_strings() -> None:
    found = {key for path in (HERE / "templates").glob("*.html") for key in LITERAL_KEY.findall(path.read_text())}
    named = {key for key in found if not key.endswith(".")}  # "category." ~ code: the test below
    assert len(named) > 50, "the templates name no strings?"
    assert sorted(named - EN.keys()) == []


def test_every_composed_key_is_in_the_english_strings() -> None:
    """Keys built from a code (category.<code>, kind.<code>, today.<key>, status.<code>, state.<state>)."""
    composed = (
        {f"category.{c.value}" for c in DataCategory}
        | {f"kind.{k.value}" for k in ContactKind}
        | {f"today.{k}" for k in TODAY_KEYS}
        | {f"status.{s.value}" for s in PeerStatus}
        | {"state.on-ward", "state.in-community"}
        | {f"alerts.kind.{k}" for k in KINDS}
        | {f"alerts.state.{s}" for s in ("open", "acknowledged", "resolved")}
        | {f"alerts.resolution.{r}" for r in ("condition-ended", "coordinator", "episode-ended", "rematched")}
        | {f"alerts.how.{c.partition(':')[0]}" for c in RESOLVE_CHOICES}
        | {f"health.{h}" for h in ("ok", "waiting", "gap", "silent", "error")}
        | {f"timeline.{w}" for w in ("admitted", "readmitted", "discharged", "assigned", "assignment-ended",
                                      "contact", "contact-cancelled", "ended")}
    )  # fmt: skip
    assert sorted(composed - EN.keys()) == []


def test_a_language_without_a_string_falls_back_to_english() -> None:
    t = translator("fr")
    assert t("peer.log") == "Log contact"
    assert t("nav.signed_in_as", name="Alex") == "Signed in as Alex"
