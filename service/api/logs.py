"""Logs without PHI: one line per record, text or JSON (PEERWAY_LOG_FORMAT), each with the request id.

What keeps identifiers out: the access log is ours (method, route template, status, duration; never the query
string, headers or client address), uvicorn's own access log is off, the HTTP clients' loggers (which print
whole URLs) stay at WARNING, the database's loggers are held at WARNING by the engine, and an exception is
written as its types and stack only: its message can quote a statement's values or a payload.
"""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from service.settings import Settings

request_id: ContextVar[str] = ContextVar("request_id", default="-")

# Loggers that print full URLs (query strings with patient= or identifier=) or headers at INFO and DEBUG.
QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "uvicorn.access", "authlib")
# Loggers whose INFO lines are noise to an operator (Alembic's plugin setup: a dozen lines before each migration).
NOISY_LOGGERS = ("alembic.runtime.plugins",)
# Fields our access log adds to its records (`extra=`), shown in JSON.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class RequestIdFilter(logging.Filter):
    """Adds the id of the request being served (or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def exception_without_messages(info: ExcInfo) -> str:
    """A traceback that names each exception's type and where it was raised, never its message or locals."""
    kind, value, _ = info
    if kind is None or value is None:
        return ""
    chain: list[BaseException] = []
    error: BaseException | None = value
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    lines: list[str] = []
    for error in reversed(chain):  # the first cause first, as Python prints it
        if lines:
            lines.append("which led to:")
        lines.append("Traceback (most recent call last):")
        for frame in traceback.extract_tb(error.__traceback__):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        lines.append(f"{type(error).__module__}.{type(error).__qualname__} (message withheld)")
    return "\n".join(lines)


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2026-01-31T09:00:00.000Z INFO peerway.access [3f2a...] GET /api/episodes 200 12.3ms`"""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record)} {record.levelname} {record.name} "
            f"[{getattr(record, 'request_id', '-')}] {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + exception_without_messages(record.exc_info)
        return line

    def formatException(self, ei: Any) -> str:
        return exception_without_messages(ei)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, request_id, message (and the access fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = exception_without_messages(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def formatException(self, ei: Any) -> str:
        return exception_without_messages(ei)


def logging_config(settings: Settings) -> dict[str, Any]:
    """The dictConfig `peerway serve` hands to uvicorn: one stderr handler with our formatter and filter."""
    formatter = JsonFormatter if settings.log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"peerway": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "peerway",
                "filters": ["request_id"],
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's loggers come with handlers of their own when it configures logging; ours replace them.
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            **{name: {"level": "WARNING", "handlers": [], "propagate": True} for name in QUIET_LOGGERS + NOISY_LOGGERS},
        },
    }


def configure_logging(settings: Settings) -> None:
    """The same lines for every command but `serve` (uvicorn applies logging_config itself): workers, delivery,
    migrations (a line per schema revision) and the admin commands log with timestamps, levels, loggers and ids,
    never PHI. A program that set up logging already (a test runner embedding the CLI) keeps its own."""
    if not logging.getLogger().handlers:
        logging.config.dictConfig(logging_config(settings))
