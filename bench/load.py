"""Load against a real server over real sockets, cheap enough that the server, not the load, is measured.

httpx costs 1.0-1.6 ms of the load's CPU per request (bench/load_bench.py), so one load core could not send more
than 650-950 requests a second, fewer than a bare FastAPI endpoint answers (0.2-0.3 ms of server CPU each).
Here each connection is an asyncio Protocol on uvloop speaking HTTP/1.1 with keep-alive: every request of a
window is built as bytes before the window starts (fresh ids in each, from one Counter), sent with one write,
and its answer read only as far as the status line and the body's framing (Content-Length or chunked).
No coroutine, future or header dict per request.

- closed loop (the peak): each of N connections sends its next request when the last one is answered;
- open loop at a fixed rate: request k is due at start + k / rate; a due request goes out (at most about 1 ms
  late: the timers' resolution) on an idle connection or waits for the next one to free up, and its latency
  counts from when it was due, so a stalled server is not hidden by a client that stopped sending (coordinated
  omission). What is still waiting when the window ends is MISSED: counted, and slower than any answer in p99.

Target and baseline are alternated A B A B in windows of equal length; each side's samples, request count and
CPU (the server's, when its pid is known, and the load's own) are pooled over its windows, so drift in the
machine (another process, a warming cache) hits both alike."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

T = TypeVar("T")

# One request: given its sequence number (no other request has it), the whole HTTP/1.1 request as bytes.
Make = Callable[[int], bytes]


def pin_to(cpus: set[int]) -> None:
    """Run this process (the load) on `cpus` when the machine has them; the server runs on the others."""
    available = os.sched_getaffinity(0)
    if cpus <= available and len(available) > 1:
        os.sched_setaffinity(0, cpus)


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop (installed with uvicorn[standard]) when it is there: less than half the load's CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(main)
    return uvloop.run(main)


def request(method: str, url: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """One HTTP/1.1 keep-alive request as bytes; `url` gives the Host header."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseError(Exception):
    """An answer this reader cannot frame (no Content-Length, not chunked): the connection is given up."""


class ResponseParser:
    """HTTP/1.1 responses from a byte stream split anywhere: `feed` returns the status of each completed one.

    Only the framing is read: the status code, then Content-Length bytes or the chunks up to the last one and
    its trailers. 1xx, 204 and 304 answers have no body."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._status = 0
        self._remaining = -1  # body bytes still to skip; -1: reading the head; -2: reading a chunk-size line
        self._chunked = False
        self._trailers = False

    def feed(self, data: bytes) -> list[int]:
        buffer = self._buffer
        buffer += data
        done: list[int] = []
        at = 0
        while True:
            if self._remaining >= 0:  # inside a body or a chunk (with its CRLF)
                available = len(buffer) - at
                if available < self._remaining:
                    self._remaining -= available
                    at = len(buffer)
                    break
                at += self._remaining
                self._remaining = -2 if self._chunked else -1
                if not self._chunked:
                    done.append(self._status)
                continue
            if self._remaining == -2:  # a chunk-size line, or the trailers after the last chunk
                end = buffer.find(b"\r\n", at)
                if end < 0:
                    break
                line = bytes(buffer[at:end])
                at = end + 2
                if self._trailers:
                    if not line:  # the empty line that ends the trailers: the response is complete
                        self._trailers = self._chunked = False
                        self._remaining = -1
                        done.append(self._status)
                    continue
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    self._trailers = True
                else:
                    self._remaining = size + 2  # the chunk and its CRLF
                continue
            end = buffer.find(b"\r\n\r\n", at)
            if end < 0:
                break
            head = bytes(buffer[at:end]).lower()
            at = end + 4
            self._status = int(head[9:12])
            if self._status < 200 or self._status in (204, 304):
                if self._status >= 200:
                    done.append(self._status)
                continue  # 1xx: the real answer follows
            length = head.find(b"\r\ncontent-length:")
            if length >= 0:
                self._remaining = int(head[length + 17 : head.find(b"\r\n", length + 2) % (len(head) + 1)])
            elif b"\r\ntransfer-encoding:" in head and b"chunked" in head:
                self._chunked = True
                self._remaining = -2
            else:
                raise ResponseError(f"an answer without Content-Length or chunks: {head[:200]!r}")
        del buffer[:at]
        return done


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process (all its threads), of its children that ended (cutime, cstime: PostgreSQL's
    backends come and go) and of its living descendants (uvicorn's worker processes), from /proc; 0 for a
    process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.update(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total + sum(process_cpu_seconds(child) for child in children)


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine spent busy (anything but idle and iowait), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Target:
    """What a window loads: a name for the report, the server's URL, how to build request number i, and the
    server's pid when its CPU per request is to be reported. `peak` (req/s, learnt from earlier windows and the
    warm-up) sizes how many requests a closed-loop window builds in advance."""

    name: str
    url: str
    make: Make
    pid: int | None = None
    peak: float = 500.0


@dataclass
class Samples:
    name: str
    latencies_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # failing status (0: connection lost) -> count
    server_cpu: float | None = None  # seconds, over the windows, when the server's pid is known
    load_cpu: float = 0.0  # this process's CPU seconds over the windows
    built_late: int = 0  # requests built inside a window because the advance estimate fell short
    missed: int = 0  # open loop: requests due but not yet sent when the window ended (slower than later)
    database_cpu: float | None = None  # seconds of the database server's CPU over the windows, when measured

    @property
    def rate(self) -> float:
        return len(self.latencies_ns) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """In ms; a request missed (never sent in its window) counts as slower than any answered: inf."""
        ordered = sorted(self.latencies_ns)
        total = len(ordered) + self.missed
        if not total:
            return float("nan")
        at = min(total - 1, int(total * q))
        return ordered[at] / 1e6 if at < len(ordered) else float("inf")

    @property
    def p50_ms(self) -> float:
        return self.percentile(0.5)

    @property
    def requests(self) -> int:
        return len(self.latencies_ns) + self.failures

    def server_ms_per_request(self) -> float | None:
        return self.server_cpu / self.requests * 1000 if self.server_cpu is not None and self.requests else None

    def line(self) -> str:
        failed = f"  FAILED {self.failures} {self.statuses}" if self.failures else ""
        late = f"  ({self.built_late} built in the window)" if self.built_late else ""
        late += f"  MISSED {self.missed} (due, not sent by the end)" if self.missed else ""
        server = self.server_ms_per_request()
        cpu = f"  server {server:.2f} ms CPU/req" if server is not None else ""
        due = self.requests + self.missed  # an open loop also spends on the schedule of what it missed
        load = self.load_cpu / due * 1000 if due else float("nan")
        return (
            f"  {self.name:<58} {self.rate:>7.0f} req/s  p50 {self.p50_ms:>6.1f} ms"
            f"  p99 {self.percentile(0.99):>6.1f} ms  n={len(self.latencies_ns)}{cpu}  load {load:.3f} ms/req"
            f"{failed}{late}"
        )


class Counter:
    """Sequence numbers shared by every connection of a run: each request gets ids no other request had."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def next(self) -> int:
        self.value += 1
        return self.value


class _Connection(asyncio.Protocol):
    def __init__(self, window: _Window) -> None:
        self.window = window
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.started = 0.0  # when the request in flight was due (open loop) or sent (closed loop)
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it, but does its part

    def send(self, data: bytes, started: float) -> None:
        assert self.transport is not None
        self.started = started
        self.busy = True
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            statuses = self.parser.feed(data)
        except (ResponseError, ValueError):
            self.window.lost(self)
            return
        for status in statuses:
            if not self.busy:  # an answer to no request (a 408 before closing an idle connection)
                continue
            self.busy = False
            self.window.answered(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.window.lost(self)


class _Window:
    """One window's connections and requests; all callbacks, so a request costs a write and a parse."""

    def __init__(self, target: Target, into: Samples, requests: list[bytes], counter: Counter) -> None:
        self.target = target
        self.into = into
        self.requests = requests
        self.counter = counter
        self.next = 0
        self.build_more = True  # a timed window builds more when its advance falls short; a burst does not
        self.open_loop = False
        self.end = float("inf")
        self.due: deque[float] = deque()  # open loop: due times of requests not yet sent
        self.idle: deque[_Connection] = deque()
        self.connections: list[_Connection] = []
        self.in_flight = 0
        self.closing = False  # no request will be started any more but those already due
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def take(self) -> bytes | None:
        if self.next >= len(self.requests):
            if not self.build_more:
                return None
            self.requests.append(self.target.make(self.counter.next()))
            self.into.built_late += 1
        data = self.requests[self.next]
        self.next += 1
        return data

    def proceed(self, connection: _Connection) -> None:
        """A connection is free: give it its next request, or let it rest."""
        if self.open_loop:
            if self.due:
                data = self.take()
                assert data is not None  # an open-loop window builds one request per due time
                self.in_flight += 1
                connection.send(data, self.due.popleft())
                return
        else:
            now = time.perf_counter()
            data = self.take() if now < self.end else None
            if data is not None:
                self.in_flight += 1
                connection.send(data, now)
                return
        self.idle.append(connection)
        self.check_finished()

    def check_finished(self) -> None:
        if self.closing and self.in_flight == 0 and not self.due and not self.finished.done():
            self.finished.set_result(None)

    def answered(self, connection: _Connection, status: int) -> None:
        now = time.perf_counter()
        self.in_flight -= 1
        if 200 <= status < 300:
            self.into.latencies_ns.append(int((now - connection.started) * 1e9))
        else:
            self.into.failures += 1
            self.into.statuses[status] = self.into.statuses.get(status, 0) + 1
        self.proceed(connection)

    def lost(self, connection: _Connection) -> None:
        """The server closed a connection (or answered what cannot be framed): its request in flight failed;
        another connection takes its place unless the window is over."""
        if connection not in self.connections:
            return
        self.connections.remove(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.busy:
            connection.busy = False
            self.in_flight -= 1
            self.into.failures += 1
            self.into.statuses[0] = self.into.statuses.get(0, 0) + 1
        if connection.transport is not None and not connection.transport.is_closing():
            connection.transport.abort()
        if self.closing and not self.due:
            self.check_finished()
        else:
            asyncio.get_running_loop().create_task(self.reopen())

    async def open(self) -> _Connection:
        url = urlsplit(self.target.url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        _, connection = await asyncio.get_running_loop().create_connection(lambda: _Connection(self), host, port)
        self.connections.append(connection)
        return connection

    async def reopen(self) -> None:
        try:
            connection = await self.open()
        except OSError:
            self.check_finished()
            return
        self.proceed(connection)


def _build(target: Target, counter: Counter, count: int) -> list[bytes]:
    return [target.make(counter.next()) for _ in range(count)]


async def window(
    target: Target,
    into: Samples,
    counter: Counter,
    *,
    connections: int,
    seconds: float | None = None,
    rate: float | None = None,
    requests: int | None = None,
) -> None:
    """Load for `seconds` on `connections` connections (or, closed loop, until `requests` are answered):
    closed loop, or open loop at `rate` requests a second. The requests are built and the connections opened
    before the clock starts."""
    if rate is not None and seconds is not None:
        count = int(seconds * rate) + 1
    elif requests is not None and rate is None:
        count = requests
    elif seconds is not None and rate is None:
        count = int(target.peak * seconds * 1.5) + connections
    else:
        raise ValueError("a window needs seconds, or requests in a closed loop")
    run = _Window(target, into, _build(target, counter, count), counter)
    run.build_more = requests is None
    run.open_loop = rate is not None
    for _ in range(connections):
        await run.open()
    server_before = process_cpu_seconds(target.pid) if target.pid is not None else None
    load_before = own_cpu_seconds()
    start = time.perf_counter()
    if seconds is not None:
        run.end = start + seconds
    if rate is None:
        run.closing = requests is not None  # a burst ends when its requests are answered
        for connection in list(run.connections):
            run.proceed(connection)
        if seconds is not None:
            await asyncio.sleep(max(0.0, run.end - time.perf_counter()))
    else:
        run.idle.extend(run.connections)
        k = 0
        while k < count and (due := start + k / rate) < run.end:
            now = time.perf_counter()
            if due > now:
                # Sleep to the next due time, at least a millisecond: uvloop's timers have that resolution, and
                # waking earlier only spins. A request goes out at most about 1 ms late; it counts from when due.
                await asyncio.sleep(max(due - now, 0.001))
                now = time.perf_counter()
            while k < count and (due := start + k / rate) <= now and due < run.end:
                run.due.append(due)
                k += 1
            while run.due and run.idle:
                run.proceed(run.idle.popleft())
        # What the server could not take in time is missed, not waited for: a window stays its length even
        # when the rate is far above what the server can do.
        into.missed += len(run.due)
        run.due.clear()
    run.closing = True
    run.check_finished()
    await run.finished
    into.seconds += time.perf_counter() - start
    into.load_cpu += own_cpu_seconds() - load_before
    if server_before is not None and target.pid is not None:
        into.server_cpu = (into.server_cpu or 0.0) + process_cpu_seconds(target.pid) - server_before
    if rate is None and seconds is not None:
        target.peak = max(50.0, len(into.latencies_ns) / into.seconds)
    for connection in list(run.connections):
        if connection.transport is not None:
            connection.transport.close()


async def alternate(
    target: Target,
    baseline: Target,
    *,
    pairs: int,
    connections: int,
    seconds: float,
    counter: Counter,
    rate: float | None = None,
) -> tuple[Samples, Samples]:
    """A B A B ... (`pairs` of each)."""
    a, b = Samples(target.name), Samples(baseline.name)
    for _ in range(pairs):
        await window(target, a, counter, connections=connections, seconds=seconds, rate=rate)
        await window(baseline, b, counter, connections=connections, seconds=seconds, rate=rate)
    return a, b


async def warm(target: Target, counter: Counter, requests: int = 30, connections: int = 4) -> None:
    """A few requests first: imports, pools and caches filled before anything is counted; the pace they went
    at is the first estimate of the target's peak. Fails loudly when the target does not answer 2xx."""
    samples = Samples(f"warm-up of {target.name}")
    await window(target, samples, counter, connections=connections, requests=requests)
    if samples.failures:
        raise RuntimeError(
            f"{target.name}: {samples.failures} of {requests} warm-up requests failed {samples.statuses}"
        )
    target.peak = max(100.0, samples.rate * 2)
