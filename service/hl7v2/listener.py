"""The MLLP listener: one asyncio server per registered port (python-hl7's MLLP streams), one message at a
time per connection, the ACK written only once the message's transaction has committed.

A connection survives what a sender may get wrong: bytes before a start block are dropped up to the next end
block, a message it cannot read gets AR; a block over the size limit or a half-sent block at EOF closes the
connection cleanly. A database outage sends no ACK and closes the connection, so the interface engine resends;
any other failure of ours is answered AE (ERR code 207, application internal error) and counted against the
feed, since a resend would fail the same way and block the feed. Logs name the port, the feed, the ACK code and
an error's type only: never content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence

from hl7.mllp import InvalidBlockError, start_hl7_server
from hl7.mllp.streams import HL7StreamReader, HL7StreamWriter

from service.app.feeds import internal_error, take_message
from service.hl7v2.ack import ack_for
from service.settings import Settings
from service.store.db import SessionFactory, is_outage

log = logging.getLogger("service.hl7v2")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for the listener when a certificate is configured; client certificates required when a CA is."""
    if not settings.mllp_tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.mllp_tls_cert_file, settings.mllp_tls_key_file)
    if settings.mllp_tls_client_ca_file:
        context.load_verify_locations(settings.mllp_tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def decode(block: bytes) -> tuple[str, str]:
    """The text and the codec read it: UTF-8 when it is; otherwise Latin-1, which every byte string is (MSH-18 is
    rarely sent and often wrong). The ACK goes back in the same codec."""
    try:
        return block.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return block.decode("latin-1"), "latin-1"


class MllpListener:
    def __init__(self, sessions: SessionFactory, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, ports: Sequence[int]) -> None:
        context = tls_context(self._settings)
        for port in ports:
            server = await start_hl7_server(
                self._callback(port),
                self._settings.mllp_host,
                port,
                limit=self._settings.mllp_max_message_bytes,
                ssl=context,
            )
            self._servers.append(server)
            log.info("MLLP listening on %s:%s%s", self._settings.mllp_host, port, " (TLS)" if context else "")

    def _callback(self, port: int):  # type: ignore[no-untyped-def]
        def connected(reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
            task = asyncio.create_task(self._serve(port, reader, writer))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

        return connected

    async def _serve(self, port: int, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        try:
            while True:
                try:
                    block = await reader.readblock()
                except InvalidBlockError:
                    log.warning("MLLP port %s: bytes outside a start block dropped", port)
                    continue
                except ValueError:
                    log.warning("MLLP port %s: a block over the size limit; connection closed", port)
                    return
                except asyncio.IncompleteReadError:
                    return  # the sender closed (mid-block or between messages)
                text, codec = decode(block)
                try:
                    answer = await take_message(
                        self._sessions,
                        port,
                        text,
                        self._settings.expected_discharge_extension,
                        self._settings.hl7_processing_id,
                    )
                except Exception as error:
                    name = type(error).__name__
                    if is_outage(error):  # ours and passing: no ACK, so the engine resends the same message
                        log.error("MLLP port %s: not processed (%s); no ACK, connection closed", port, name)
                        return
                    # Any other failure would recur on every resend and block the feed: answer AE 207 instead.
                    log.error("MLLP port %s: not processed (%s); answered AE 207", port, name)
                    answer = internal_error()
                log.info("MLLP port %s: %s%s", port, answer.ack.value, " (replay)" if answer.replayed else "")
                writer.writeblock(ack_for(text, answer, encoding=codec))
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for server in self._servers for sock in server.sockets]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


async def serve(sessions: SessionFactory, settings: Settings, ports: Sequence[int], stop: asyncio.Event) -> None:
    """Listen on `ports` until `stop` is set."""
    listener = MllpListener(sessions, settings)
    await listener.start(ports)
    try:
        await stop.wait()
    finally:
        await listener.close()
