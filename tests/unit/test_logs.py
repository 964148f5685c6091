"""Log lines as `peerway serve` writes them: JSON or text, each with the request id, exceptions as types and
places only, and the loggers that would print URLs or statements held at WARNING."""

from __future__ import annotations

import json
import logging

import pytest

from service.api.logs import JsonFormatter, RequestIdFilter, TextFormatter, logging_config, request_id
from service.settings import Settings
from service.store.db import create_engine


def record_of(message: str, *args: object, error: BaseException | None = None) -> logging.LogRecord:
    info = (type(error), error, error.__traceback__) if error is not None else None
    record = logging.LogRecord("service.app.intake", logging.ERROR, __file__, 1, message, args, info)
    RequestIdFilter().filter(record)
    return record


def failing() -> BaseException:
    try:
        try:
            raise KeyError("Patient Halvorson124")
        except KeyError as cause:
            raise RuntimeError("could not store MRN 12345") from cause
    except RuntimeError as error:
        return error
    raise AssertionError("unreachable")


def test_a_json_line_has_the_fields_and_the_request_id() -> None:
    token = request_id.set("req-1")
    try:
        line = JsonFormatter().format(record_of("stored %s rows", 3))
    finally:
        request_id.reset(token)
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "service.app.intake"
    assert entry["request_id"] == "req-1"
    assert entry["message"] == "stored 3 rows"
    assert entry["timestamp"].endswith("Z")


def test_a_text_line_is_readable_and_outside_a_request_the_id_is_a_dash() -> None:
    line = TextFormatter().format(record_of("stored %s rows", 3))
    timestamp, level, logger, rid, message = line.split(" ", 4)
    assert timestamp.endswith("Z")
    assert (level, logger, rid, message) == ("ERROR", "service.app.intake", "[-]", "stored 3 rows")


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_an_exception_is_written_as_types_and_places_never_its_message(formatter: logging.Formatter) -> None:
    line = formatter.format(record_of("failed", error=failing()))
    assert "builtins.KeyError (message withheld)" in line
    assert "builtins.RuntimeError (message withheld)" in line
    assert "in failing" in line
    assert "Halvorson124" not in line
    assert "12345" not in line


def test_the_configuration_quiets_the_loggers_that_print_urls_and_uses_the_chosen_format() -> None:
    config = logging_config(Settings(log_format="json", log_level="DEBUG", _env_file=None))
    assert config["root"]["level"] == "DEBUG"
    for name in ("httpx", "httpcore", "uvicorn.access"):
        assert config["loggers"][name]["level"] == "WARNING", name
    assert config["formatters"]["peerway"]["()"] is JsonFormatter
    assert config["handlers"]["stderr"]["filters"] == ["request_id"]
    assert logging_config(Settings(_env_file=None))["formatters"]["peerway"]["()"] is TextFormatter


def test_the_database_loggers_stay_quiet_whatever_the_root_level(caplog: pytest.LogCaptureFixture) -> None:
    create_engine("sqlite+aiosqlite://")
    caplog.set_level(logging.DEBUG)  # the root logger at DEBUG, as an operator chasing a problem might set it
    for name in ("sqlalchemy.engine.Engine", "sqlalchemy.pool", "aiosqlite"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
