"""The EHR's FHIR server, as the outbox worker writes to it. Never called inside a DB transaction."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from service.errors import UpstreamError

FHIR_JSON = "application/fhir+json"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when else None


class EhrClient:
    """Idempotent writes: PUT with our own id, or a conditional create on our identifier."""

    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        path = f"{resource['resourceType']}/{quote(resource['id'], safe='')}"
        return await self._send("PUT", path, json=resource)

    async def create_if_none_exist(self, resource: dict[str, Any], identifier: str) -> dict[str, Any]:
        """POST with If-None-Exist: the EHR creates it once; a repeat answers 200 with the existing one."""
        body = {k: v for k, v in resource.items() if k != "id"}
        return await self._send(
            "POST", resource["resourceType"], json=body, headers={"If-None-Exist": f"identifier={identifier}"}
        )

    async def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"EHR unreachable: {type(exc).__name__}") from None
        if response.is_success:
            try:
                data = response.json()
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}
        outcome: dict[str, Any] | None = None
        try:
            parsed = response.json()
            outcome = parsed if isinstance(parsed, dict) else None
        except ValueError:
            outcome = None
        raise UpstreamError(
            f"EHR answered {response.status_code} to {method} {path}",
            http_status=response.status_code,
            retry_after=_retry_after(response),
            outcome=outcome,
        )
