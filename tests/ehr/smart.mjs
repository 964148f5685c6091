// SMART Backend Services for the test EHR: a token endpoint that checks a client's signed JWT assertion
// against the public JWKS registered for it, opaque access tokens with a configurable lifetime and, when
// required, those tokens (and their scopes) checked on /fhir. Node's built-in crypto only.
//
// Environment:
//   EHR_SMART_CLIENTS   JSON {"<client id>": {"jwks": {"keys": [...]}, "scope": "system/*.cruds"}, ...}
//   EHR_TOKEN_TTL       access token lifetime in seconds (default 300)
//   EHR_TOKEN_ANNOUNCED_TTL  the expires_in told to clients (default: the lifetime); larger plays an EHR
//                       that drops tokens early (a restart, a revocation), which clients only learn from a 401
//   EHR_REQUIRE_SMART   "1": every /fhir request except metadata needs a token issued here (else 401)
import { createPublicKey, randomBytes, verify } from 'node:crypto';

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ALGORITHMS = { RS384: { kty: 'RSA' }, ES384: { kty: 'EC', dsaEncoding: 'ieee-p1363' } };
const MAX_ASSERTION_LIFETIME_S = 300;
const CLOCK_SKEW_S = 5;

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/** SMART v1 and v2 scopes, system/ context only: "system/Encounter.cu", "system/*.read" -> {type, perms}. */
export function parseScope(scope) {
  const match = /^system\/([A-Za-z]+|\*)\.(\*|read|write|c?r?u?d?s?)$/.exec(scope);
  if (!match || match[2] === '') {
    return undefined;
  }
  const v1 = { '*': 'cruds', read: 'rs', write: 'cud' };
  return { type: match[1], perms: new Set(v1[match[2]] ?? match[2]) };
}

function permits(granted, type, perm) {
  return granted.some((s) => (s.type === '*' || s.type === type) && s.perms.has(perm));
}

class OAuthError extends Error {
  constructor(error, description) {
    super(description);
    this.error = error;
  }
}

export class SmartAuth {
  constructor(env) {
    this.env = env;
    this.reset();
  }

  /** Back to what the environment configured: its clients, lifetime and mode; no tokens, no jti seen. */
  reset() {
    this.clients = new Map();
    const configured = this.env.EHR_SMART_CLIENTS ? JSON.parse(this.env.EHR_SMART_CLIENTS) : {};
    for (const [clientId, spec] of Object.entries(configured)) {
      this.register(clientId, spec.jwks, spec.scope);
    }
    this.tokenTtl = Number.parseInt(this.env.EHR_TOKEN_TTL ?? '300', 10);
    this.announcedTtl = this.env.EHR_TOKEN_ANNOUNCED_TTL ? Number.parseInt(this.env.EHR_TOKEN_ANNOUNCED_TTL, 10) : undefined;
    this.require = this.env.EHR_REQUIRE_SMART === '1';
    this.tokens = new Map();
    this.seenJti = new Map();
    this.issued = 0;
    this.requests = [];
  }

  register(clientId, jwks, scope = 'system/*.cruds') {
    if (typeof clientId !== 'string' || !clientId || !Array.isArray(jwks?.keys)) {
      throw new Error('give {"client_id": "...", "jwks": {"keys": [...]}, "scope"?: "..."}');
    }
    const keys = jwks.keys.map((jwk) => ({ jwk, key: createPublicKey({ key: jwk, format: 'jwk' }) }));
    this.clients.set(clientId, { keys, allowed: String(scope).split(/\s+/).filter(Boolean) });
  }

  configure({ require, tokenTtl, announcedTtl }) {
    for (const [name, value] of Object.entries({ tokenTtl, announcedTtl })) {
      if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
        throw new Error(`${name} must be a positive integer (seconds)`);
      }
    }
    if (require !== undefined) {
      this.require = Boolean(require);
    }
    this.tokenTtl = tokenTtl ?? this.tokenTtl;
    this.announcedTtl = announcedTtl ?? this.announcedTtl;
  }

  revokeAll() {
    const revoked = this.tokens.size;
    this.tokens.clear();
    return revoked;
  }

  state() {
    const now = Date.now();
    return {
      require: this.require,
      tokenTtl: this.tokenTtl,
      announcedTtl: this.announcedTtl ?? this.tokenTtl,
      clients: [...this.clients.keys()],
      issued: this.issued,
      active: [...this.tokens.values()].filter((t) => t.expiresAt > now).length,
      requests: this.requests,
    };
  }

  /** POST /auth/token: answers [status, body]. */
  token(form, tokenUrl) {
    const entry = { status: 400, error: null, client_id: null, header: null, claims: null, scope: null };
    this.requests.push(entry);
    try {
      const issued = this.issue(form, tokenUrl, entry);
      entry.status = 200;
      return [200, issued];
    } catch (err) {
      if (!(err instanceof OAuthError)) {
        throw err;
      }
      entry.error = err.error;
      return [400, { error: err.error, error_description: err.message }];
    }
  }

  issue(form, tokenUrl, entry) {
    if (form.grant_type !== 'client_credentials') {
      throw new OAuthError('unsupported_grant_type', 'grant_type must be client_credentials');
    }
    if (form.client_assertion_type !== ASSERTION_TYPE || typeof form.client_assertion !== 'string') {
      throw new OAuthError('invalid_client', `client_assertion_type must be ${ASSERTION_TYPE}`);
    }
    const parts = form.client_assertion.split('.');
    if (parts.length !== 3) {
      throw new OAuthError('invalid_client', 'client_assertion is not a signed JWT');
    }
    let header;
    let claims;
    try {
      header = b64urlJson(parts[0]);
      claims = b64urlJson(parts[1]);
    } catch {
      throw new OAuthError('invalid_client', 'client_assertion is not a JWT');
    }
    entry.header = header;
    entry.claims = claims;
    const algorithm = ALGORITHMS[header.alg];
    if (!algorithm) {
      throw new OAuthError('invalid_client', `alg ${header.alg} is not RS384 or ES384`);
    }
    const client = this.clients.get(claims.iss);
    entry.client_id = claims.iss ?? null;
    if (!client) {
      throw new OAuthError('invalid_client', `no client registered as ${claims.iss}`);
    }
    if (claims.sub !== claims.iss) {
      throw new OAuthError('invalid_client', 'sub must equal iss (the client id)');
    }
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(tokenUrl)) {
      throw new OAuthError('invalid_client', `aud must be the token URL ${tokenUrl}`);
    }
    const now = Math.floor(Date.now() / 1000);
    if (!Number.isFinite(claims.exp) || claims.exp <= now - CLOCK_SKEW_S) {
      throw new OAuthError('invalid_client', 'the assertion has expired');
    }
    if (claims.exp > now + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S) {
      throw new OAuthError('invalid_client', 'exp is more than five minutes ahead');
    }
    if (typeof claims.jti !== 'string' || !claims.jti) {
      throw new OAuthError('invalid_client', 'jti is missing');
    }
    for (const [jti, exp] of this.seenJti) {
      if (exp < now - CLOCK_SKEW_S) {
        this.seenJti.delete(jti);
      }
    }
    if (this.seenJti.has(claims.jti)) {
      throw new OAuthError('invalid_client', 'jti was used before');
    }
    const candidates = client.keys.filter(
      (k) => k.jwk.kty === algorithm.kty && (header.kid === undefined || k.jwk.kid === header.kid)
    );
    const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
    const signature = Buffer.from(parts[2], 'base64url');
    const valid = candidates.some((k) =>
      verify('sha384', signed, algorithm.dsaEncoding ? { key: k.key, dsaEncoding: algorithm.dsaEncoding } : k.key, signature)
    );
    if (!valid) {
      throw new OAuthError('invalid_client', 'the signature does not verify with a registered key');
    }
    this.seenJti.set(claims.jti, claims.exp);

    const requested = String(form.scope ?? '').split(/\s+/).filter(Boolean);
    const allowed = client.allowed.map(parseScope).filter(Boolean);
    const granted = requested.filter((s) => {
      const parsed = parseScope(s);
      return parsed && [...parsed.perms].every((p) => permits(allowed, parsed.type, p));
    });
    if (granted.length === 0) {
      throw new OAuthError('invalid_scope', `none of the scopes asked for can be granted: ${requested.join(' ')}`);
    }
    const accessToken = randomBytes(24).toString('base64url');
    this.tokens.set(accessToken, {
      clientId: claims.iss,
      scopes: granted.map(parseScope),
      expiresAt: Date.now() + this.tokenTtl * 1000,
    });
    this.issued++;
    entry.scope = granted.join(' ');
    const expiresIn = this.announcedTtl ?? this.tokenTtl;
    return { access_token: accessToken, token_type: 'bearer', expires_in: expiresIn, scope: granted.join(' ') };
  }

  /**
   * For a /fhir request: undefined when allowed, else [status, OperationOutcome text, WWW-Authenticate].
   * @param {string[]} segments path segments after /fhir
   */
  check(authorization, method, segments) {
    const [scheme, value] = String(authorization ?? '').split(' ');
    const token = scheme?.toLowerCase() === 'bearer' ? this.tokens.get(value) : undefined;
    if (!token || token.expiresAt <= Date.now()) {
      return [401, token ? 'The access token has expired' : 'Unknown or missing access token', 'Bearer error="invalid_token"'];
    }
    const type = segments[0];
    if (!type || type.startsWith('$')) {
      return undefined; // batch/transaction and system operations: each entry is not checked here
    }
    let perm;
    if (method === 'GET') {
      perm = segments.length === 1 ? 's' : 'r';
    } else if (method === 'POST') {
      perm = segments[1] === '_search' ? 's' : 'c';
    } else if (method === 'PUT' || method === 'PATCH') {
      perm = 'u';
    } else if (method === 'DELETE') {
      perm = 'd';
    }
    if (perm && !permits(token.scopes, type, perm)) {
      return [403, `The token's scopes do not permit ${method} ${type} (needs system/${type}.${perm})`, undefined];
    }
    return undefined;
  }
}
