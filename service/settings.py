"""All configuration, read once from the environment (prefix PEERWAY_) or a .env file.

One class, in sections (service, database, callers' tokens, the EHR, outbox delivery, request limits, logs,
hospital events, sites).
Every number has bounds, so a mistyped value is refused when the service starts, in one line naming the
variable (`describe_error`), rather than misbehaving later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import cached_property
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-change-me-dev-only-change-me"  # noqa: S105 - the known placeholder we refuse outside dev


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PEERWAY_", env_file=".env", extra="ignore")

    # --- the service ---
    env: Literal["dev", "test", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str = Field(
        default="", description="Base URL clients see (used in Location headers); default http://host:port"
    )

    # --- the database ---
    database_url: str = "sqlite+aiosqlite:///./var/peerway.db"

    # --- development tokens (HS256, PEERWAY_ENV=dev only; see "sign-in and authorization" below) ---
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "peerway"
    jwt_audience: str = "peerway"

    # --- the hospital EHR (site "default"): where contacts are written back to ---
    ehr_base_url: str = "http://127.0.0.1:8103/fhir"
    ehr_bearer_token: SecretStr | None = None
    ehr_write_mode: Literal["put", "conditional-create", "batch"] = "put"
    ehr_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # --- outbox delivery ---
    run_worker: bool = True
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    # PostgreSQL: workers LISTEN for jobs queued by other processes (false behind PgBouncer's transaction mode).
    outbox_listen: bool = True
    outbox_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    outbox_batch_size: int = Field(default=20, ge=1, le=1000)
    outbox_max_backoff_seconds: float = Field(default=300.0, ge=1, le=86_400)

    # --- request limits ---
    max_body_bytes: int = Field(default=5_000_000, ge=1024, le=100_000_000)
    # Enforced by `peerway serve` before any route or token check runs (see README, "Limits"):
    # the request line and headers together, past which the connection gets a 400 and is closed;
    max_header_bytes: int = Field(default=32_768, ge=4096, le=1_048_576)
    # the request head must arrive this long after the connection opens (or its next request starts) ...
    header_timeout_seconds: float = Field(default=10.0, ge=0.5, le=300)
    # ... and its body this long after the head (slow uploads); either way the connection is closed (408);
    body_timeout_seconds: float = Field(default=60.0, ge=0.5, le=3600)
    # an idle kept-alive connection is closed after this;
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    # open connections (and requests in progress) past which a request gets 503 at once;
    max_connections: int = Field(default=256, ge=2, le=100_000)
    # addresses of reverse proxies whose X-Forwarded-For names the client (comma-separated, or "*").
    trusted_proxies: str = "127.0.0.1"
    # Per client address and per process: failed authentications (a 401 to a request that carried credentials)
    # allowed in a burst, then refilled at so many a minute; past them, 429 with Retry-After. Successful
    # requests never count.
    auth_failure_burst: int = Field(default=20, ge=1, le=10_000)
    auth_failures_per_minute: float = Field(default=10.0, ge=0.1, le=60_000)
    # The same for refused requests (4xx) to the token endpoint, /auth/token.
    token_failure_burst: int = Field(default=10, ge=1, le=10_000)
    token_failures_per_minute: float = Field(default=5.0, ge=0.1, le=60_000)
    # Client addresses remembered at once (the least recently seen is forgotten first).
    rate_limit_clients: int = Field(default=10_000, ge=100, le=1_000_000)

    # --- The safety net and outcomes (issue 17; docs/safety-net.md, docs/outcomes.md) ---
    # How often a worker runs the safety-net checks (alerts open and close; a run twice changes nothing).
    safety_net_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    # Defaults for every site; a site's coordinator may set its own (PUT /api/alerts/thresholds).
    no_contact_days: int = Field(default=7, ge=1, le=365)  # discharged, no peer contact within this many days
    unassigned_days: int = Field(default=3, ge=1, le=365)  # discharged, no peer assigned within this many days
    weekly_minimum_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)  # a client-week's minimum
    # A peer with no supervision check-in for this long is flagged to their organization's coordinator.
    supervision_every_days: int = Field(default=28, ge=1, le=365)
    # Outcomes: a stratum (site, band) counting fewer than this is suppressed (counts and score withheld).
    outcomes_small_cell: int = Field(default=5, ge=1, le=1000)

    # --- logs (no PHI, no tokens, no query strings; see README, "Logs") ---
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        secret = self.jwt_secret.get_secret_value()
        if self.env == "dev" and secret != DEV_JWT_SECRET and len(secret) < 32:
            raise ValueError("PEERWAY_JWT_SECRET must be a random value of 32+ characters (or unset in dev)")
        return self

    @cached_property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    # --- Delivery to the EHR: SMART Backend Services, retries and dead letters, the program's CareTeam ---
    # With ehr_token_url set, Peerway gets its EHR token by SMART Backend Services (client_credentials with a
    # JWT assertion signed by the key in ehr_private_key_path: PEM or JWKS, RSA -> RS384, EC P-384 -> ES384);
    # without it, ehr_bearer_token (or nothing) is sent as before.
    ehr_token_url: str | None = None
    ehr_client_id: str | None = None
    ehr_private_key_path: str | None = None
    ehr_key_id: str | None = None
    ehr_scope: str = "system/Encounter.cu system/Practitioner.cu system/CareTeam.cu"
    ehr_token_refresh_margin_seconds: float = Field(default=60.0, ge=0, le=3600)
    # Transient failures (unreachable, 408/409/425/429, 5xx) are retried for this long after the first one.
    outbox_retry_hours: float = Field(default=96.0, gt=0, le=24 * 60)
    # Rows of a claimed batch a worker writes to the EHR at once.
    outbox_concurrency: int = Field(default=4, ge=1, le=64)
    # Done jobs are deleted this many days after they were done (0: kept for ever); dead and discarded ones stay.
    outbox_keep_done_days: int = Field(default=30, ge=0, le=36_500)
    # The program the CareTeam is managed by, as the EHR knows it.
    program_organization_reference: str = "Organization/peerway-program"
    program_organization_name: str = "Peer support program"
    # /metrics needs "Authorization: Bearer <this>" when set; unset, /metrics is open only in dev.
    metrics_token: SecretStr | None = None
    # /docs: Swagger's Authorize signs a person in at this OpenID Connect provider (its
    # /.well-known/openid-configuration URL) with PKCE, as this public client; unset, /docs offers the bearer field.
    docs_openid_url: str | None = None
    docs_client_id: str | None = None

    @model_validator(mode="after")
    def _smart_settings_complete(self) -> Settings:
        if self.ehr_token_url and not (self.ehr_client_id and self.ehr_private_key_path):
            raise ValueError("PEERWAY_EHR_TOKEN_URL needs PEERWAY_EHR_CLIENT_ID and PEERWAY_EHR_PRIVATE_KEY_PATH")
        return self

    # --- Hospital events: subscription notifications, recovery of missed events, notifications (issue 4) ---
    # Subscription notifications authenticate with this header and secret (Subscription.channel.header), or
    # with an ehr-system bearer token. Notifications authenticated by the header belong to subscription_site.
    subscription_header: str = "X-Peerway-Channel"
    subscription_secret: SecretStr | None = None
    subscription_site: str = "default"
    # What `peerway subscription create` asks the EHR for.
    subscription_id: str = "peerway-encounters"
    subscription_topic: str = "http://hl7.org/fhir/uv/subscriptions-backport/SubscriptionTopic/r4-encounter-complete"
    subscription_payload: Literal["empty", "id-only", "full-resource"] = "id-only"
    subscription_filter: str | None = None
    # Heartbeat period of our Subscription, also assumed for channels we did not create (0: not watched).
    subscription_heartbeat_seconds: int = Field(default=300, ge=0, le=86_400)
    # A missing event number is recovered after this wait (it may only be late); silence is 2 heartbeats.
    subscription_gap_grace_seconds: float = Field(default=30.0, ge=0, le=86_400)
    # Searches for what changed start this long before the last event we hold (clock skew, slow commits).
    subscription_search_margin_seconds: float = Field(default=300.0, ge=0, le=86_400)
    # Extra search parameters that scope recovery searches to the program's stays, e.g. "location=Location/7".
    subscription_search_params: str = ""
    # Notification Bundles (Da Vinci and subscriptions) with more entries than this are refused with 422.
    max_bundle_entries: int = Field(default=200, ge=1, le=10_000)
    # An Encounter extension carrying the expected discharge date (valueDateTime, valueDate or valuePeriod.end).
    expected_discharge_extension: str | None = None
    # HL7 v2 ADT over MLLP (`peerway mllp`; `peerway feed add` registers the ports): the address to listen on,
    # optional TLS (certificate and key), and the CA whose client certificates are required when set.
    mllp_host: str = "127.0.0.1"
    mllp_tls_cert_file: str | None = None
    mllp_tls_key_file: str | None = None
    mllp_tls_client_ca_file: str | None = None
    mllp_max_message_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # MSH-11's processing id this deployment takes (P production; T training, D debugging for a test install):
    # anything else is refused with AR 202, so a training message never opens a real client's episode.
    hl7_processing_id: Literal["P", "T", "D"] = "P"
    hl7_feed_silence_seconds: float = Field(default=3600.0, gt=0, le=30 * 86_400)
    # The intake worker (id-only fetches, searches, recovery, silence checks).
    intake_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    intake_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    intake_max_backoff_seconds: float = Field(default=300.0, ge=1, le=86_400)
    intake_max_attempts: int = Field(default=50, ge=1, le=10_000)
    # Feeds answer next_since this far behind the newest item, so a slow commit is never skipped.
    notification_feed_overlap_seconds: float = Field(default=5.0, ge=0, le=3600)

    # --- A region of several sites (issue 7) ---
    # The identifier system (Patient.identifier.system) that names one person at every site, e.g. a provincial
    # health number. Unset: records at different sites are never linked. Set: a site's coordinator sees the
    # person's record at another site only where the consent recorded at that other site permits disclosing
    # its admission-discharge data to Organization/<the asking site's id> (see README, "Sites").
    link_identifier_system: str | None = None

    # --- sign-in and authorization (issue 13) ---
    # People: access tokens of the OpenID Connect providers registered with `peerway issuer add` (keys by their
    # discovery document, or pinned), meant for this audience (`aud`), living at most this long. Who they are
    # comes from Peerway's registry (`peerway user add`), never from the token's claims.
    auth_audience: str = "peerway"
    person_token_max_lifetime_seconds: int = Field(default=3600, ge=60, le=86_400)
    token_leeway_seconds: int = Field(default=60, ge=0, le=300)
    issuer_keys_cache_seconds: float = Field(default=3600.0, ge=60, le=86_400)
    # A token naming an unknown key id fetches the issuer's keys again at most this often.
    issuer_keys_refresh_seconds: float = Field(default=60.0, ge=1, le=3600)
    # Systems: Peerway's own tokens (SMART Backend Services at /auth/token), signed with the keys in this file
    # (created when missing; `peerway auth rotate-key` adds a new signing key and keeps the previous one).
    auth_keys_path: str = "./var/auth-keys.json"
    system_token_lifetime_seconds: int = Field(default=300, ge=60, le=3600)
    # Development only: `peerway token` signs HS256 tokens with PEERWAY_JWT_SECRET, or, while that is the
    # placeholder, with a random secret kept in this file (one per install, made by `make run`).
    dev_secret_path: str = "./var/dev-jwt-secret"  # noqa: S105 - a path, not a secret

    # --- the people's web app (issue 16, docs/web-app.md) ---
    # The client Peerway's web app is at every registered OpenID Connect provider (authorization code + PKCE;
    # with a secret it authenticates as a confidential client, client_secret_basic). Its redirect URI is
    # <base url>/signin/callback. A session lasts at most web_session_hours, then the person signs in again.
    web_client_id: str = "peerway-web"
    web_client_secret: SecretStr | None = None
    web_session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    # A session nobody used for this long ends too (a coordinator's desk left open on a shared computer).
    web_idle_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    # The development chooser (sign in as anyone, no password) exists only with PEERWAY_ENV=dev and either a
    # loopback bind and base URL (`make run`) or this set to true; never outside dev.
    web_dev_signin: bool = False
    # The program's time zone (IANA): a contact time typed in a browser that sent no zone of its own (no
    # JavaScript) is read in it, rather than taken for UTC. The contact form shows which zone it reads.
    web_time_zone: str = "UTC"

    @property
    def dev_sign_in(self) -> bool:
        """Whether the passwordless development chooser is on: dev mode, and loopback only unless asked for."""
        if self.env != "dev":
            return False
        if self.web_dev_signin:
            return True
        base_host = urlsplit(self.base_url).hostname or ""
        return _loopback(self.host) and _loopback(base_host)

    @model_validator(mode="after")
    def _closed_in_production(self) -> Settings:
        if self.web_dev_signin and self.env != "dev":
            raise ValueError("PEERWAY_WEB_DEV_SIGNIN is for PEERWAY_ENV=dev only")
        try:
            ZoneInfo(self.web_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("PEERWAY_WEB_TIME_ZONE must be an IANA time zone such as America/Toronto") from None
        if self.env == "prod":
            token = self.metrics_token.get_secret_value() if self.metrics_token else ""
            if len(token) < 32:
                raise ValueError("PEERWAY_METRICS_TOKEN must be set to a random value of 32+ characters in prod")
        return self


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_error(error: ValidationError) -> str:
    """A settings error in one line per bad value, naming the variable: `PEERWAY_PORT: Input should be ...`."""
    lines = []
    for problem in error.errors():
        name = "_".join(str(part) for part in problem["loc"]).upper()
        variable = f"PEERWAY_{name}" if name else "settings"
        given = problem.get("input")
        shown = "" if name.endswith(("SECRET", "TOKEN")) or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"{variable}: {problem['msg']}{shown}")
    return "; ".join(lines)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The PEERWAY_* variables in ``environ`` that name no setting (typos are otherwise ignored silently)."""
    known = {f"PEERWAY_{name.upper()}" for name in Settings.model_fields}
    return sorted(name for name in environ if name.upper().startswith("PEERWAY_") and name.upper() not in known)
