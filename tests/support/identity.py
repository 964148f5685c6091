"""Tokens for tests that take Peerway's real path: a registered issuer and person for people, a registered
system client and a Peerway-signed token for EHRs — no development shortcut.

`TestIdentities.headers(role, subject, site=, org=)` registers what the token needs in the test's database (the
test issuer, bound to the site or organization; the person, or the EHR's client) the first time it is asked,
then returns an Authorization header. Registration runs on its own connection in a worker thread, so it works
whichever way the test then calls Peerway (ASGI client, schemathesis, a live server). The test issuer's keys are
pinned in its row, so nothing is fetched; tests/api/test_sign_in.py covers discovery with a real provider.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import warnings
from datetime import UTC, datetime
from typing import Any

import asyncpg
import authlib.deprecate
from sqlalchemy.engine import make_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt

from service.auth import Role
from service.auth.keys import SigningKeys
from service.auth.scopes import SCOPES

TEST_ISSUER = "https://idp.peerway.test/people"
TEST_ISSUER_ID = "test-idp"
EHR_SCOPES = " ".join(sorted(SCOPES))
_PEOPLE_KEY = JsonWebKey.generate_key("RSA", 2048, is_private=True)
_PEOPLE_JWK: dict[str, Any] = {**_PEOPLE_KEY.as_dict(is_private=False), "kid": "test-people", "alg": "RS256"}


def people_jwks() -> dict[str, Any]:
    return {"keys": [_PEOPLE_JWK]}


def person_token(subject: str, *, lifetime: int = 600, **claims: Any) -> str:
    """An access token of the test issuer for `subject` (RS256), as an OpenID provider would issue it."""
    now = int(time.time())
    body = {"iss": TEST_ISSUER, "aud": "peerway", "sub": subject, "iat": now, "exp": now + lifetime, **claims}
    token: bytes = jwt.encode({"alg": "RS256", "kid": "test-people", "typ": "at+jwt"}, body, _PEOPLE_KEY)
    return token.decode()


class TestIdentities:
    """Registers test callers in one test database and mints their tokens."""

    __test__ = False

    def __init__(self, database_url: str, base_url: str, signing_keys: SigningKeys) -> None:
        self._database_url = database_url
        self._base_url = base_url
        self._keys = signing_keys
        self._known: set[tuple[str, ...]] = set()

    def headers(
        self, role: Role, subject: str = "tester", *, site: str = "default", org: str | None = None, **extra: str
    ) -> dict[str, str]:
        ehr = role is Role.EHR_SYSTEM
        token = self.system_token(site) if ehr else self.person(role, subject, site=site, org=org)
        return {"Authorization": f"Bearer {token}", **extra}

    def person(self, role: Role, subject: str, *, site: str = "default", org: str | None = None) -> str:
        if role is Role.PEER:
            sub = f"peer:{subject}"
        elif role is Role.ORGANIZATION_COORDINATOR:
            sub = f"{role.value}:{org}:{subject}"
        else:
            sub = f"{role.value}:{site}:{subject}"
        key = ("person", role.value, sub)
        if key not in self._known:
            self._run(self._register_person(role, sub, subject, site, org))
            self._known.add(key)
        elif role is Role.PEER:
            self._run([self._bind_peer_organization(subject)])  # the peer may have moved organization since
        return person_token(sub)

    def system_token(self, site: str, scopes: str = EHR_SCOPES) -> str:
        client_id = f"test-ehr-{site}"
        key = ("client", client_id)
        if key not in self._known:
            self._run(self._register_client(client_id, site))
            self._known.add(key)
        now = int(time.time())
        return self._keys.sign(
            {
                "iss": f"{self._base_url}/auth",
                "aud": self._base_url,
                "sub": client_id,
                "client_id": client_id,
                "scope": scopes,
                "iat": now,
                "exp": now + 600,
                "jti": f"{client_id}-{now}",
            }
        )

    # --- registration, on its own connection ------------------------------------------------------------------

    def _run(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        url = make_url(self._database_url)
        if url.get_backend_name() == "sqlite":
            connection = sqlite3.connect(url.database or "", timeout=30)
            try:
                with connection:
                    for sql, args in statements:
                        connection.execute(sql.replace("$", "?"), _sqlite(args))
            finally:
                connection.close()
            return
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        failure: list[BaseException] = []

        async def apply() -> None:
            connection = await asyncpg.connect(dsn)
            try:
                async with connection.transaction():
                    for sql, args in statements:
                        await connection.execute(_numbered(sql), *args)
            finally:
                await connection.close()

        def worker() -> None:
            try:
                asyncio.run(apply())
            except BaseException as exc:  # handed to the test's thread
                failure.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    def _issuer(self) -> list[tuple[str, tuple[Any, ...]]]:
        now = datetime.now(UTC)
        return [
            (
                "INSERT INTO identity_issuer (id, issuer, jwks_json, sites, organizations, status, created_at,"
                " updated_at) VALUES ($, $, $, '', '', 'active', $, $) ON CONFLICT (id) DO NOTHING",
                (TEST_ISSUER_ID, TEST_ISSUER, json.dumps(people_jwks()), now, now),
            )
        ]

    def _bind(self, column: str, value: str) -> tuple[str, tuple[Any, ...]]:
        # The test issuer speaks for whatever site or organization a test signs in for.
        return (
            f"UPDATE identity_issuer SET {column} = TRIM({column} || ' ' || $) WHERE id = $"  # noqa: S608
            f" AND (' ' || {column} || ' ') NOT LIKE $",
            (value, TEST_ISSUER_ID, f"% {value} %"),
        )

    def _bind_peer_organization(self, peer_id: str) -> tuple[str, tuple[Any, ...]]:
        """A peer's issuer speaks for the peer's organization, whatever it is by now."""
        organization = "COALESCE((SELECT organization_id FROM peer_supporter WHERE id = $), '')"
        return (
            f"UPDATE identity_issuer SET organizations = TRIM(organizations || ' ' || {organization})"  # noqa: S608
            f" WHERE id = $ AND (' ' || organizations || ' ') NOT LIKE ('% ' || {organization} || ' %')",
            (peer_id, TEST_ISSUER_ID, peer_id),
        )

    def _register_person(
        self, role: Role, sub: str, subject: str, site: str, org: str | None
    ) -> list[tuple[str, tuple[Any, ...]]]:
        now = datetime.now(UTC)
        statements = self._issuer()
        peer_id = subject if role is Role.PEER else None
        if role is Role.COORDINATOR:
            statements.append(self._bind("sites", site))
        elif role is Role.ORGANIZATION_COORDINATOR:
            statements.append(self._bind("organizations", org or "default"))
        elif role is Role.PEER:
            statements.append(self._bind_peer_organization(subject))
        statements.append(
            (
                "INSERT INTO person (id, issuer_id, subject, role, site, organization_id, peer_id, name, status,"  # noqa: S608
                " created_at, updated_at) SELECT $, $, $, $, $, $, $, $, 'active', $, $"
                + (" WHERE EXISTS (SELECT 1 FROM peer_supporter WHERE id = $)" if peer_id else "")
                + " ON CONFLICT (issuer_id, subject) DO NOTHING",
                (
                    f"person-{sub}"[:64],
                    TEST_ISSUER_ID,
                    sub,
                    role.value,
                    site if role is Role.COORDINATOR else None,
                    org if role is Role.ORGANIZATION_COORDINATOR else None,
                    peer_id,
                    subject[:200],
                    now,
                    now,
                    *((peer_id,) if peer_id else ()),
                ),
            )
        )
        return statements

    def _register_client(self, client_id: str, site: str) -> list[tuple[str, tuple[Any, ...]]]:
        now = datetime.now(UTC)
        return [
            (
                "INSERT INTO system_client (client_id, kind, site, organization_id, jwks_json, jwks_url, scopes,"
                " status, created_at, updated_at) VALUES ($, 'ehr', $, NULL, $, NULL, $, 'active', $, $)"
                " ON CONFLICT (client_id) DO NOTHING",
                (client_id, site, json.dumps(people_jwks()), EHR_SCOPES, now, now),
            )
        ]


def _numbered(sql: str) -> str:
    """`$` placeholders as asyncpg's `$1, $2...`."""
    parts = sql.split("$")
    return "".join(part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))


def _sqlite(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Timestamps as SQLAlchemy stores them in SQLite (naive UTC text)."""
    return tuple(
        a.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ") if isinstance(a, datetime) else a for a in args
    )
