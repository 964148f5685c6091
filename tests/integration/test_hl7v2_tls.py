"""The MLLP listener over TLS with client certificates: an engine with a certificate from the configured CA is
served; one without a certificate, or with one from another CA, is turned away and the listener goes on."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.hl7v2 import END, START, Feed, adt, running_feed, stored
from tests.support.tls import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "good")


@pytest.fixture
async def feed(settings: Settings, pki: Pki) -> AsyncIterator[Feed]:
    tls = {
        "mllp_tls_cert_file": str(pki.server_cert),
        "mllp_tls_key_file": str(pki.server_key),
        "mllp_tls_client_ca_file": str(pki.ca),
    }
    async with running_feed(settings.model_copy(update=tls)) as running:
        yield running


def client_context(pki: Pki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


async def exchange(port: int, context: ssl.SSLContext, text: str) -> bytes:
    """Send one framed message; answer the ACK block, or b"" when the server closes the connection instead."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(START + text.encode() + END)
        await writer.drain()
        try:
            return await reader.readuntil(END)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_a_client_with_a_certificate_from_the_ca_is_served(feed: Feed, pki: Pki) -> None:
    ack = await exchange(feed.port, client_context(pki, pki.client_cert, pki.client_key), adt("A01", "TLS-1"))
    assert b"MSA|AA|TLS-1" in ack
    assert len((await stored(feed.sessions))[0]) == 1


async def test_clients_without_a_good_certificate_are_turned_away(feed: Feed, pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", "Another CA")
    for cert, key in ((None, None), (other.client_cert, other.client_key)):
        try:
            answer = await exchange(feed.port, client_context(pki, cert, key), adt("A01", "TLS-2"))
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b""
    assert await stored(feed.sessions) == ([], [], 0)
    good = client_context(pki, pki.client_cert, pki.client_key)
    assert b"MSA|AA|TLS-3" in await exchange(feed.port, good, adt("A01", "TLS-3"))
