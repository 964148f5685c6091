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
