"""Who is calling Peerway, proven: people by their organization's OpenID Connect provider and Peerway's registry,
systems by SMART Backend Services tokens Peerway issued, and (in dev only) HS256 development tokens."""

from service.auth.dev import mint_token, verify_token
from service.auth.principal import Principal, Role

__all__ = ["Principal", "Role", "mint_token", "verify_token"]
