"""One error hierarchy; the API turns each into a FHIR OperationOutcome.

Each error carries the HTTP status, the FHIR issue code (http://hl7.org/fhir/issue-type) and, where known,
the FHIRPath `expression` of the offending element, so a sender can see which element was wrong.
"""

from __future__ import annotations


class PeerwayError(Exception):
    status: int = 500
    code: str = "exception"

    def __init__(self, diagnostics: str, expression: str | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the response carries besides the OperationOutcome (Retry-After, ...)."""
        return {}


class InvalidResource(PeerwayError):
    """The payload is not what the endpoint accepts (structure, cardinality, codes)."""

    status = 422
    code = "invalid"


class BadRequest(PeerwayError):
    """Unparseable input: not JSON, wrong resourceType, unknown parameters."""

    status = 400
    code = "structure"


class Unauthorized(PeerwayError):
    status = 401
    code = "login"


class Forbidden(PeerwayError):
    status = 403
    code = "forbidden"


class NotFound(PeerwayError):
    status = 404
    code = "not-found"


class Conflict(PeerwayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(PeerwayError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(PeerwayError):
    status = 415
    code = "not-supported"


class RequestTimeout(PeerwayError):
    """The request did not arrive in time (a slow or stalled client); the connection is closed."""

    status = 408
    code = "timeout"

    @property
    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class TooManyRequests(PeerwayError):
    """This client address failed too often (bad tokens, refused token requests): it waits before trying again."""

    status = 429
    code = "throttled"

    def __init__(self, diagnostics: str, *, retry_after_seconds: int) -> None:
        super().__init__(diagnostics)
        self.retry_after_seconds = retry_after_seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class ServiceUnavailable(PeerwayError):
    """Peerway cannot serve now: the database does not answer, or its schema is not the one this release needs.
    The caller may try again after Retry-After seconds."""

    status = 503
    code = "transient"

    def __init__(self, diagnostics: str, *, retry_after_seconds: int = 5) -> None:
        super().__init__(diagnostics)
        self.retry_after_seconds = retry_after_seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class UpstreamError(PeerwayError):
    """The EHR answered with an error or could not be reached (used by the outbox worker)."""

    status = 502
    code = "transient"

    def __init__(
        self,
        diagnostics: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        outcome: dict[str, object] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.http_status = http_status
        self.retry_after = retry_after
        self.outcome = outcome


class NotAcceptable(PeerwayError):
    """The client asks for a format Peerway does not serve (XML, Turtle): only FHIR JSON is."""

    status = 406
    code = "not-supported"


class PreconditionFailed(PeerwayError):
    """If-Match names a version that is no longer current (someone else changed it first), or If-None-Exist
    matches several resources."""

    status = 412
    code = "conflict"


class TooLong(InvalidResource):
    """An element longer (or a body deeper, or a stored resource larger) than Peerway accepts."""

    code = "too-long"


def changed_meanwhile(what: str, expected_version: int | None) -> PeerwayError:
    """Another request changed `what` between our read and our write (the optimistic lock caught it): a 412 when
    the client named a version with If-Match, else a 409 asking it to read again."""
    if expected_version is not None:
        return PreconditionFailed(
            f"{what} changed while this request ran (If-Match named version {expected_version}): read it again and"
            " re-apply the change",
            "If-Match",
        )
    return Conflict(f"{what} was changed by another request at the same time: read it again and retry")
