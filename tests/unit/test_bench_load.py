"""The benchmarks' load generator (bench/load.py) reads HTTP/1.1 answers however the bytes arrive: a response
counted too early, too late or twice would make every figure of `make bench` wrong without anyone noticing."""

from __future__ import annotations

import asyncio

import pytest

from bench import load

LENGTH = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{"a": "bc"}'
CHUNKED = (
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nServer: x\r\n\r\n"
    b"5\r\nhello\r\n"
    b"A;name=value\r\n0123456789\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
)
NO_BODY = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\n\r\n\r\n"  # a body that looks like a head's end
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
STREAM = LENGTH + CHUNKED + NO_BODY + NOT_FOUND + CONTINUE + LENGTH
STATUSES = [200, 201, 204, 404, 200]


def feed_in_pieces(data: bytes, size: int) -> list[int]:
    parser = load.ResponseParser()
    statuses: list[int] = []
    for at in range(0, len(data), size):
        statuses += parser.feed(data[at : at + size])
    return statuses


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 64, len(STREAM)])
def test_responses_are_counted_once_each_however_the_stream_is_split(size: int) -> None:
    assert feed_in_pieces(STREAM, size) == STATUSES


def test_a_response_is_not_counted_before_its_last_byte() -> None:
    for stream in (LENGTH, CHUNKED):
        parser = load.ResponseParser()
        assert parser.feed(stream[:-1]) == []
        assert parser.feed(stream[-1:]) != []


def test_an_answer_without_framing_is_refused() -> None:
    with pytest.raises(load.ResponseError):
        load.ResponseParser().feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody")


def test_a_request_carries_host_headers_and_body_length() -> None:
    raw = load.request("POST", "http://127.0.0.1:8123", "/fhir/$process-message", {"X-A": "b"}, b"{}")
    assert raw == (
        b"POST /fhir/$process-message HTTP/1.1\r\nHost: 127.0.0.1:8123\r\nX-A: b\r\nContent-Length: 2\r\n\r\n{}"
    )


async def serve_split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive server that answers GET /n with a chunked 200 (odd n) or a 503 with a length (even n),
    written a few bytes at a time."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            number = int(head.split(b" ")[1].strip(b"/"))
            busy = b"HTTP/1.1 503 Busy\r\nContent-Length: 3\r\n\r\nno!"
            answer = CHUNKED.replace(b"201 Created", b"200 OK") if number % 2 else busy
            for at in range(0, len(answer), 9):
                writer.write(answer[at : at + 9])
                await writer.drain()
    except asyncio.IncompleteReadError:  # the client closed the connection
        writer.close()


async def test_a_burst_counts_each_answer_of_a_real_server_by_its_status() -> None:
    server = await asyncio.start_server(serve_split, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        target = load.Target("split answers", url, lambda i: load.request("GET", url, f"/{i}"))
        samples = load.Samples(target.name)
        await load.window(target, samples, load.Counter(), connections=3, requests=40)
    finally:
        server.close()
        await server.wait_closed()
    assert (len(samples.latencies_ns), samples.failures, samples.statuses) == (20, 20, {503: 20})
    assert samples.requests == 40


async def test_an_open_loop_accounts_for_every_request_due_once() -> None:
    """However fast the server, each request due in the window is answered, failed or missed: none is lost
    from the figures or counted twice."""
    server = await asyncio.start_server(serve_split, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        target = load.Target("paced", url, lambda i: load.request("GET", url, f"/{i}"))
        samples = load.Samples(target.name)
        await load.window(target, samples, load.Counter(), connections=2, seconds=0.1, rate=2000)
    finally:
        server.close()
        await server.wait_closed()
    assert len(samples.latencies_ns) + samples.failures + samples.missed == 200
    assert samples.statuses.keys() <= {503}
