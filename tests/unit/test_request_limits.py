"""The request limits and rate limits are bounded: a value that would switch a limit off, or make it useless, is
refused when the service starts, naming the variable; and `peerway serve` hands them to uvicorn as set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.api.server import DeadlineH11Protocol, server_config
from service.settings import Settings, describe_error


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_header_bytes", 100),
        ("max_header_bytes", 100_000_000),
        ("header_timeout_seconds", 0),
        ("body_timeout_seconds", 86_400),
        ("keep_alive_seconds", 0),
        ("max_connections", 1),
        ("auth_failure_burst", 0),
        ("auth_failures_per_minute", 0),
        ("token_failure_burst", 0),
        ("token_failures_per_minute", 0),
        ("rate_limit_clients", 10),
        ("log_format", "xml"),
        ("log_level", "TRACE"),
    ],
)
def test_an_out_of_bounds_limit_is_refused_naming_its_variable(name: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{name: value}, _env_file=None)  # type: ignore[arg-type]
    assert describe_error(caught.value).startswith(f"PEERWAY_{name.upper()}: ")


def test_serve_configures_uvicorn_with_the_limits() -> None:
    settings = Settings(
        max_header_bytes=16_384,
        header_timeout_seconds=3,
        body_timeout_seconds=7,
        keep_alive_seconds=4,
        max_connections=50,
        trusted_proxies="10.0.0.1",
        _env_file=None,
    )
    config = server_config(settings, app=None)
    assert config.h11_max_incomplete_event_size == 16_384
    assert config.timeout_keep_alive == 4
    assert config.limit_concurrency == 50
    assert config.forwarded_allow_ips == "10.0.0.1"
    assert config.access_log is False
    assert isinstance(config.http, type)
    assert issubclass(config.http, DeadlineH11Protocol)
    assert (config.http.header_timeout, config.http.body_timeout) == (3, 7)
