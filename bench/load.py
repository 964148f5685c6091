"""Load against a real server over real sockets: N connections (httpx async), closed loop (each connection sends
its next request when the last one is answered: the peak) or open loop at a fixed rate (requests are due on a
schedule and latency counts from when each was due, so a stalled server is not hidden by a stalled client).

Target and baseline are alternated A B A B in windows of equal length; each side's samples and request count
are pooled over its windows, so drift in the machine (another process, a warming cache) hits both alike."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

# One request: given a client and the request's sequence number, send it and return the status code.
Send = Callable[[httpx.AsyncClient, int], Awaitable[int]]


def pin_to(cpus: set[int]) -> None:
    """Run this process (the load) on `cpus` when the machine has them; the server runs on the others."""
    available = os.sched_getaffinity(0)
    if cpus <= available and len(available) > 1:
        os.sched_setaffinity(0, cpus)


@dataclass
class Samples:
    name: str
    latencies_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0
    failures: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies_ns) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6 if ordered else float("nan")

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ns) / 1e6 if self.latencies_ns else float("nan")

    def line(self) -> str:
        failed = f"  FAILED {self.failures}" if self.failures else ""
        return (
            f"  {self.name:<58} {self.rate:>8.0f} req/s  p50 {self.p50_ms:>7.1f} ms"
            f"  p99 {self.percentile(0.99):>7.1f} ms"
            f"  n={len(self.latencies_ns)}{failed}"
        )


class Counter:
    """Sequence numbers shared by every connection of a run: each request gets ids no other request had."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def next(self) -> int:
        self.value += 1
        return self.value


async def window(
    base_url: str,
    send: Send,
    into: Samples,
    counter: Counter,
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
) -> None:
    """Load for `seconds` on `connections` connections; closed loop, or open loop at `rate` requests a second."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60, trust_env=False) as client:
        start = time.perf_counter()
        end = start + seconds
        slots = iter(range(1 << 62))

        async def one_connection() -> None:
            while True:
                if rate is None:
                    due = time.perf_counter()
                    if due >= end:
                        return
                else:
                    due = start + next(slots) / rate
                    if due >= end:
                        return
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                status = await send(client, counter.next())
                elapsed = time.perf_counter() - due
                if 200 <= status < 300:
                    into.latencies_ns.append(int(elapsed * 1e9))
                else:
                    into.failures += 1

        await asyncio.gather(*(one_connection() for _ in range(connections)))
        into.seconds += time.perf_counter() - start


async def alternate(
    target: tuple[str, str, Send],
    baseline: tuple[str, str, Send],
    *,
    pairs: int,
    connections: int,
    seconds: float,
    counter: Counter,
    rate: float | None = None,
) -> tuple[Samples, Samples]:
    """A B A B ... (`pairs` of each): (name, base_url, send) for the target and the baseline."""
    a, b = Samples(target[0]), Samples(baseline[0])
    for _ in range(pairs):
        await window(target[1], target[2], a, counter, connections=connections, seconds=seconds, rate=rate)
        await window(baseline[1], baseline[2], b, counter, connections=connections, seconds=seconds, rate=rate)
    return a, b


async def warm(base_url: str, send: Send, counter: Counter, requests: int = 30) -> None:
    """A few requests first: imports, pools and caches filled before anything is counted."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False) as client:
        for _ in range(requests):
            await send(client, counter.next())
