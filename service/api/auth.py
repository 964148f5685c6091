"""Peerway as the authorization server of SMART Backend Services: the token endpoint, its discovery document
and the keys its tokens are signed with. People sign in with their own organization's OpenID Connect provider;
systems (a hospital's EHR, a peer organization's back end) get a Peerway token here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.deps import GatekeeperDep, read_body
from service.app.identity import issue_system_token
from service.auth.jose import ASSERTION_ALGORITHMS
from service.auth.scopes import SCOPES
from service.errors import Forbidden, PeerwayError, Unauthorized

router = APIRouter(tags=["authorization"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """RFC 6749 section 5.2: what an OAuth client library expects, not an OperationOutcome."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=NO_STORE)


@router.post("/auth/token", summary="SMART Backend Services: client_credentials with a private_key_jwt assertion")
async def token(request: Request, gate: GatekeeperDep) -> JSONResponse:
    if (request.headers.get("content-type") or "").split(";")[0].strip().lower() != FORM:
        return _oauth_error(400, "invalid_request", f"the token request must be {FORM}")
    body = await read_body(request, gate.settings)
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(400, "invalid_request", "the token request is not a form")
    form = {name: values[0] for name, values in fields.items() if len(values) == 1}
    try:
        issued = await issue_system_token(gate, form)
    except Unauthorized as exc:
        return _oauth_error(401, "invalid_client", exc.diagnostics)
    except Forbidden as exc:
        return _oauth_error(400, "invalid_scope", exc.diagnostics)
    except PeerwayError as exc:
        code = "unsupported_grant_type" if exc.expression == "grant_type" else "invalid_request"
        return _oauth_error(400, code, exc.diagnostics)
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        },
        headers=NO_STORE,
    )


@router.get("/fhir/.well-known/smart-configuration", summary="How systems get a Peerway token (SMART v2)")
@router.get("/.well-known/smart-configuration", summary="The same, at the server's root")
async def smart_configuration(gate: GatekeeperDep) -> dict[str, Any]:
    """SMART App Launch 2 discovery, served at the FHIR base (where the specification puts it) and at the root.
    No `issuer`: it is for servers offering sso-openid-connect, which Peerway does not (people sign in with their
    organization's provider). PKCE's S256 is named because the field is required, though no flow here uses it."""
    return {
        "jwks_uri": f"{gate.settings.base_url}/auth/jwks.json",
        "token_endpoint": gate.token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "scopes_supported": sorted(SCOPES),
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        "code_challenge_methods_supported": ["S256"],
    }


@router.get("/auth/jwks.json", summary="The public keys Peerway signs its access tokens with")
async def token_keys(gate: GatekeeperDep) -> dict[str, Any]:
    return gate.signing_keys.public_jwks()
