"""Limits a hostile client cannot get around, checked against a real `peerway serve` with raw sockets and no
token: a huge request head is refused at once without the server's memory growing; a client sending its head
or body slowly is cut off after the deadline; connections past the cap get 503; and the server's own log is
JSON without query strings or tokens.

The limits live in the HTTP layer, so the server runs on a fresh SQLite database whatever PEERWAY_TEST_DB says.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.support.server import LiveServer, live_server, read_all

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 6
MIB = 1 << 20
MAX_HEAD_BYTES = 32768  # PEERWAY_MAX_HEADER_BYTES's default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(
        tmp_path_factory.mktemp("serve"),
        header_timeout_seconds=HEADER_TIMEOUT,
        body_timeout_seconds=BODY_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
        log_format="json",
        log_level="DEBUG",
    ) as running:
        yield running


def send_big_header(server: LiveServer, size: int) -> tuple[bytes, float]:
    """A request whose one header is `size` bytes; what came back (or the error) and how long it took."""
    started = time.monotonic()
    with server.connect(timeout=30) as conn:
        try:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: peerway\r\nX-Filler: " + b"a" * size + b"\r\n\r\n")
            answer = read_all(conn)
        except OSError:  # reset while we were still sending: refused as early as it gets
            answer = b""
    return answer, time.monotonic() - started


def until_closed(server: LiveServer, head: bytes, drip: bytes) -> tuple[bytes, float]:
    """Send `head`, then one byte of `drip` every 0.2 s until the server closes; its answer and the time taken."""
    started = time.monotonic()
    answer = b""
    with server.connect(timeout=0.2) as conn:
        conn.sendall(head)
        for byte in drip:
            try:
                conn.sendall(bytes([byte]))
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            answer += chunk
            if not chunk:
                break
    return answer, time.monotonic() - started


def test_a_1_mib_header_is_refused_at_once(server: LiveServer) -> None:
    answer, seconds = send_big_header(server, MIB)
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:100]
    assert seconds < 5
    assert server.get("/healthz").startswith(b"HTTP/1.1 200")


def test_a_head_just_inside_the_bound_is_served(server: LiveServer) -> None:
    request_line_and_host = len(b"GET /healthz HTTP/1.1\r\nHost: peerway\r\nX-Filler: \r\n\r\n")
    answer, _ = send_big_header(server, MAX_HEAD_BYTES - request_line_and_host)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]


def test_a_head_sent_in_small_pieces_is_refused_once_past_the_bound(server: LiveServer) -> None:
    with server.connect(timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: peerway\r\nX-Filler: ")
        sent = 0
        try:
            while sent < 4 * MAX_HEAD_BYTES:  # 1 KiB a time, each its own chunk on the server's side
                conn.sendall(b"a" * 1024)
                sent += 1024
        except OSError:  # refused (and reset) while we were still sending
            pass
        answer = read_all(conn)
    refused = (b"HTTP/1.1 400", b"HTTP/1.1 431")
    assert answer == b"" or answer.startswith(refused), answer[:100]  # not the 408 of a head left waiting


def test_a_body_larger_than_the_head_bound_arriving_with_its_head_is_no_head(server: LiveServer) -> None:
    body = b"grant_type=client_credentials&x=" + b"a" * MIB  # read in many chunks, the first with the head
    head = (
        b"POST /auth/token HTTP/1.1\r\nHost: peerway\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with server.connect(timeout=10) as conn:
        conn.sendall(head + body)
        answer = read_all(conn)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 401")), answer[:100]  # the token endpoint's own answer


def test_pipelined_and_kept_alive_requests_are_each_answered(server: LiveServer) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: peerway\r\n\r\n"
    closing = b"GET /healthz HTTP/1.1\r\nHost: peerway\r\nConnection: close\r\n\r\n"
    with server.connect(timeout=10) as conn:
        conn.sendall(request * 3)  # three in one write: the parser meets them in one chunk
        conn.sendall(closing)
        answer = read_all(conn)
    assert answer.count(b"HTTP/1.1 200") == 4, answer[:300]


def test_eight_30_mib_headers_leave_the_servers_memory_where_it_was(server: LiveServer) -> None:
    before = server.memory_kib()
    threads = [threading.Thread(target=send_big_header, args=(server, 30 * MIB)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = server.memory_kib("VmHWM")
    assert peak - before < 32 * 1024, f"peak {peak // 1024} MiB after {before // 1024} MiB"  # was +316 MiB
    assert server.get("/healthz").startswith(b"HTTP/1.1 200")


def test_a_client_sending_its_headers_slowly_is_cut_off_with_408(server: LiveServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: peerway\r\n"
    answer, seconds = until_closed(server, head, b"X-Slow: " + b"a" * 200)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert HEADER_TIMEOUT <= seconds < HEADER_TIMEOUT + 4


def test_a_connection_that_says_nothing_is_closed(server: LiveServer) -> None:
    started = time.monotonic()
    with server.connect(timeout=10) as conn:
        answer = read_all(conn)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < HEADER_TIMEOUT + 4


def test_a_slow_upload_is_cut_off_with_408(server: LiveServer) -> None:
    head = (
        b"POST /auth/token HTTP/1.1\r\nHost: peerway\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    answer, seconds = until_closed(server, head, b"a" * 200)  # 40 s of body at this pace
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert BODY_TIMEOUT <= seconds < BODY_TIMEOUT + 4


def test_connections_past_the_cap_get_503_until_some_close(server: LiveServer) -> None:
    with ExitStack() as idle:
        for _ in range(MAX_CONNECTIONS):
            idle.enter_context(server.connect())
        assert server.get("/healthz").startswith(b"HTTP/1.1 503")
    deadline = time.monotonic() + 10
    while not server.get("/healthz").startswith(b"HTTP/1.1 200"):
        assert time.monotonic() < deadline, "the server kept refusing after the idle connections closed"
        time.sleep(0.05)


def test_the_log_is_json_lines_without_query_strings_or_tokens(server: LiveServer) -> None:
    answer = server.get(
        "/fhir/Consent?patient=Patient/mrn-445566&_id=abc", "Authorization: Bearer secret-token-7f9a3c\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 401")
    request_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in answer.split(b"\r\n")
        if line.lower().startswith(b"x-request-id:")
    )
    deadline = time.monotonic() + 10
    while f'"request_id": "{request_id}"' not in server.log():  # written just after the answer
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.05)
    entries = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert entries
    assert all({"timestamp", "level", "logger", "request_id", "message"} <= entry.keys() for entry in entries)
    [access] = [e for e in entries if e["logger"] == "peerway.access" and e["request_id"] == request_id]
    assert access["message"].startswith("GET /fhir/Consent 401 ")
    assert (access["method"], access["route"], access["status"]) == ("GET", "/fhir/Consent", 401)
    log = server.log()
    assert "mrn-445566" not in log
    assert "_id=" not in log
    assert "secret-token-7f9a3c" not in log


def test_serve_announces_the_limits_it_applies(server: LiveServer) -> None:
    assert f"headers {MAX_HEAD_BYTES} B in {HEADER_TIMEOUT:g} s" in server.log()
    assert f"body 5000000 B in {BODY_TIMEOUT:g} s, {MAX_CONNECTIONS} connections" in server.log()


def test_endless_trailers_after_a_chunked_body_are_refused_without_memory_growing(server: LiveServer) -> None:
    before = server.memory_kib("VmHWM")
    head = b"POST /healthz HTTP/1.1\r\nHost: peerway\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    with server.connect(timeout=10) as conn:
        conn.sendall(head)
        try:
            for _ in range(8 * MIB // 65536):  # 8 MiB of trailer fields
                conn.sendall(b"a:b\r\n" * (65536 // 5))
        except OSError:  # refused (and reset) while we were still sending
            pass
        answer = read_all(conn)
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
    peak = server.memory_kib("VmHWM")
    assert peak - before < 32 * 1024, f"peak {peak // 1024} MiB after {before // 1024} MiB"


def test_the_body_of_an_upgrade_request_is_never_read_as_another_request(server: LiveServer) -> None:
    # Blank lines first: a parser that takes the body for another protocol's bytes skips them and then reads on.
    body = b"\r\n" * 75_000 + b"GET /fhir/metadata HTTP/1.1\r\nHost: peerway\r\n\r\n"
    head = (
        b"POST /healthz HTTP/1.1\r\nHost: peerway\r\nConnection: upgrade\r\nUpgrade: foo\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with server.connect(timeout=10) as conn:
        conn.sendall(head + body)
        conn.shutdown(1)  # nothing more comes from us
        answer = read_all(conn)
    assert b"CapabilityStatement" not in answer, answer[:300]
    assert answer.count(b"HTTP/1.1 ") <= 1, answer[:300]
