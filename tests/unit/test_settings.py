"""Settings: bounds on every number, and a bad value explained in one line naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings, describe_error


def refusal(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    return describe_error(caught.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"port": 0}, "PEERWAY_PORT: Input should be greater than or equal to 1 (got 0)"),
        ({"port": "eighty"}, "PEERWAY_PORT: Input should be a valid integer"),
        ({"outbox_batch_size": 0}, "PEERWAY_OUTBOX_BATCH_SIZE: Input should be greater than or equal to 1 (got 0)"),
        ({"outbox_lease_seconds": 0.5}, "PEERWAY_OUTBOX_LEASE_SECONDS: Input should be greater than or equal to 1"),
        ({"max_body_bytes": 10**12}, "PEERWAY_MAX_BODY_BYTES: Input should be less than or equal to 100000000"),
        ({"ehr_write_mode": "post"}, "PEERWAY_EHR_WRITE_MODE: Input should be 'put', 'conditional-create' or 'batch'"),
        ({"env": "staging"}, "PEERWAY_ENV: Input should be 'dev', 'test' or 'prod'"),
    ],
)
def test_a_bad_value_is_named_in_one_line(values: dict[str, object], expected: str) -> None:
    said = refusal(**values)
    assert said.startswith(expected)
    assert "\n" not in said


def test_two_bad_values_are_both_named() -> None:
    said = refusal(port=-1, outbox_concurrency=0)
    assert "PEERWAY_PORT:" in said
    assert "PEERWAY_OUTBOX_CONCURRENCY:" in said


def test_a_secret_is_never_repeated_back() -> None:
    said = refusal(env="dev", jwt_secret="short-and-guessable")
    assert "PEERWAY_JWT_SECRET must be a random value of 32+ characters" in said
    assert "short-and-guessable" not in said


def test_production_refuses_an_open_metrics_endpoint() -> None:
    said = refusal(env="prod")
    assert "PEERWAY_METRICS_TOKEN must be set to a random value of 32+ characters in prod" in said
    assert Settings(env="prod", metrics_token="m" * 40).env == "prod"


def test_the_defaults_are_within_bounds() -> None:
    assert Settings().port == 8000
