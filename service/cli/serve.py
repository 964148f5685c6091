"""`peerway serve --workers N`: N API processes sharing one listening socket, and the job worker in a process
of its own, under one supervisor.

What the supervisor does once, before any child starts, is what must not be done by each: the migration (also
safe when several supervisors start together, service/store/migrate.py) and Peerway's token signing keys (two
processes creating the key file at once would each sign with a key the other does not know). The API processes
run no jobs (PEERWAY_RUN_WORKER is false in them); with PEERWAY_RUN_WORKER true (the default) the supervisor
also runs one `peerway worker`, and with it false the jobs are left to `peerway worker` processes run apart
(several may run: jobs are claimed in the database).

A child that stops unexpectedly stops the whole group with exit status 1: restarting is the job of what runs
`peerway serve` (systemd, Docker's restart policy, Kubernetes), which also sees the failure. SIGTERM or SIGINT
stops every child gracefully (in-flight requests finish; the worker finishes or releases its jobs).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import uvicorn

from service.settings import Settings

STOP_GRACE_SECONDS = 30.0
_spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no event loop or pool copied from here


def _api_process(settings: Settings, sockets: list[socket.socket]) -> None:
    from service.api.server import server_config
    from service.main import create_app

    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(server_config(settings, create_app(settings))).run(sockets=sockets)


def _worker_process(settings: Settings) -> None:
    from service.workers.command import work

    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(work(settings))


def _listening_socket(settings: Settings) -> socket.socket:
    config = uvicorn.Config("service.main:create_app", host=settings.host, port=settings.port, log_config=None)
    return config.bind_socket()


def supervise(settings: Settings, api_processes: int) -> int:
    """Serve with `api_processes` API processes (and one worker process when settings.run_worker); the
    database must already be migrated. Returns the exit status."""
    from service.auth import keys

    keys.load_or_create(Path(settings.auth_keys_path))  # created here once, read by every child
    multiprocessing.allow_connection_pickling()  # the listening socket goes to each child
    listener = _listening_socket(settings)
    api_settings = settings.model_copy(update={"run_worker": False})
    starts: list[tuple[str, Callable[..., None], tuple[object, ...]]] = [
        (f"api-{n}", _api_process, (api_settings, [listener])) for n in range(1, api_processes + 1)
    ]
    if settings.run_worker:
        starts.append(("worker", _worker_process, (settings,)))

    stop_read, stop_write = os.pipe()
    stopping = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        os.write(stop_write, b"x")

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    children: dict[str, BaseProcess] = {}
    status = 0
    try:
        for name, target, args in starts:
            child = _spawn.Process(target=target, args=args, name=f"peerway {name}")
            child.start()
            children[name] = child
        listener.close()  # the children hold it now
        names = ", ".join(f"{name} (pid {child.pid})" for name, child in children.items())
        print(f"  Processes:           {names}", flush=True)
        while not stopping:
            sentinels = {child.sentinel: name for name, child in children.items()}
            ready = wait([stop_read, *sentinels])
            ended = [sentinels[s] for s in ready if isinstance(s, int) and s in sentinels]
            if ended and not stopping:
                for name in ended:
                    children[name].join()  # its pipe closes a moment before its exit status is there
                    print(
                        f"peerway serve: {name} stopped (exit {children[name].exitcode}); stopping the others",
                        file=sys.stderr,
                        flush=True,
                    )
                status = 1
                break
    finally:
        _stop(children.values())
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(stop_read)
        os.close(stop_write)
    return status


def _stop(children: Iterable[BaseProcess]) -> None:
    running = [child for child in children if child.is_alive()]
    for child in running:
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
    for child in running:
        child.join(STOP_GRACE_SECONDS)
        if child.is_alive():
            child.kill()
            child.join()
