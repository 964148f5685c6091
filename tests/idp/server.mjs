// Peerway test IdP: OpenID Connect providers (panva's certified oidc-provider) for Peerway's tests of
// "sign in with the organization's OpenID Connect provider" and SMART authorization. One node:http
// server on 127.0.0.1 serves several issuers, each a separate oidc-provider instance with its own
// signing keys, clients, accounts and storage, mounted under its own path:
//
//   http://127.0.0.1:<port>/hospital     http://127.0.0.1:<port>/peer-org     ...
//
// Login is automated: <issuer>/interaction/<uid> logs in the account named by `account` or `login_hint`
// (query, form, or the authorization request's login_hint) and grants everything requested, without
// any page to fill. Test control under /__admin: key rotation, tokens minted with chosen claims and
// header, the log of issued access tokens, reset. See README.md.
//
// Environment:
//   IDP_PORT     port to listen on (default 0: a free port); host is always 127.0.0.1
//   IDP_CONFIG   JSON: {"<issuer name>": {audience, alg, access_token_ttl, clients, accounts, ...}, ...}
//
// On listening it prints one line to stdout:
//   {"listening": <port>, "root": "http://127.0.0.1:<port>", "issuers": {"hospital": "http://127.0.0.1:<port>/hospital", ...}}
import * as crypto from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 1024 * 1024;
const SUPPORTED_ALGS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512']);
const OIDC_CLAIMS = {
  openid: ['sub'],
  profile: [
    'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username', 'profile', 'picture',
    'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
  email: ['email', 'email_verified'],
  address: ['address'],
  phone: ['phone_number', 'phone_number_verified'],
};
const STANDARD_CLAIMS = new Set(Object.values(OIDC_CLAIMS).flat());
const OIDC_SCOPES = ['openid', 'offline_access', ...Object.keys(OIDC_CLAIMS).filter((s) => s !== 'openid')];
// Scopes an access token may carry besides the OpenID ones: SMART App Launch v1 and v2.
const DEFAULT_RESOURCE_SCOPES = [
  'fhirUser', 'launch', 'launch/patient', 'launch/encounter', 'online_access',
  'user/*.read', 'user/*.write', 'user/*.*', 'user/*.rs', 'user/*.cruds',
  'patient/*.read', 'patient/*.rs', 'system/*.read', 'system/*.rs', 'system/*.cruds',
];
const ACCOUNT_RESERVED = new Set(['sub', 'access_token_claims']);
const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/;

const DEFAULT_CONFIG = {
  hospital: {
    clients: [{ client_id: 'peerway', redirect_uris: ['http://127.0.0.1/callback'] }],
    accounts: [{ sub: 'coordinator-1', name: 'Casey Coordinator', email: 'casey@hospital.test' }],
  },
  'peer-org': {
    clients: [{ client_id: 'peerway', redirect_uris: ['http://127.0.0.1/callback'] }],
    accounts: [{ sub: 'peer-1', name: 'Pat Peer', email: 'pat@peer-org.test' }],
  },
};

function warn(message) {
  process.stderr.write(`[test-idp] ${message}\n`);
}

class BadRequest extends Error {}

function fail(message) {
  throw new BadRequest(message);
}

const now = () => Math.floor(Date.now() / 1000);
const b64u = (input) => Buffer.from(input).toString('base64url');
const isPlainObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------
/** RFC 7638 JWK thumbprint. */
function thumbprint(jwk) {
  const members = jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.hash('sha256', JSON.stringify(members), 'base64url');
}

/** A new private signing JWK for `alg`, with `kid` (its thumbprint), `alg` and `use`. */
function generateKey(alg) {
  let pair;
  if (alg.startsWith('RS') || alg.startsWith('PS')) {
    pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else {
    const namedCurve = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' }[alg];
    pair = crypto.generateKeyPairSync('ec', { namedCurve });
  }
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' };
}

function publicJwk(jwk) {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  return pub;
}

/** Compact JWS of exactly `header` and `payload`; `alg: none` gives an empty signature. */
function signJws(header, payload, jwk, secret) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  const alg = String(header.alg ?? '');
  const data = Buffer.from(input);
  let signature;
  const match = /^(RS|PS|ES|HS)(256|384|512)$/.exec(alg);
  if (alg === 'none') {
    signature = Buffer.alloc(0);
  } else if (!match) {
    fail(`cannot sign with alg ${JSON.stringify(alg)}; use RS/PS/ES/HS 256/384/512 or none`);
  } else {
    const [, family, bits] = match;
    const digest = `sha${bits}`;
    if (family === 'HS') {
      signature = crypto.createHmac(digest, secret).update(data).digest();
    } else {
      const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
      const expected = family === 'ES' ? 'EC' : 'RSA';
      if (jwk.kty !== expected) {
        fail(`alg ${alg} needs an ${expected} key, the signing key ${jwk.kid} is ${jwk.kty}`);
      }
      if (family === 'RS') {
        signature = crypto.sign(digest, data, key);
      } else if (family === 'PS') {
        signature = crypto.sign(digest, data, {
          key,
          padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
          saltLength: Number(bits) / 8,
        });
      } else {
        signature = crypto.sign(digest, data, { key, dsaEncoding: 'ieee-p1363' });
      }
    }
  }
  return `${input}.${b64u(signature)}`;
}

// ---------------------------------------------------------------------------------------------
// Storage: one per issuer, plain Maps with expiry (oidc-provider's adapter interface)
// ---------------------------------------------------------------------------------------------
class Storage {
  constructor() {
    this.entries = new Map();
  }

  get(key) {
    const entry = this.entries.get(key);
    if (!entry) {
      return undefined;
    }
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    this.entries.set(key, { value, expiresAt });
  }

  delete(key) {
    this.entries.delete(key);
  }

  clear() {
    this.entries.clear();
  }

  /** The class oidc-provider instantiates once per model name. */
  adapter() {
    const storage = this;
    return class Adapter {
      constructor(model) {
        this.model = model;
      }

      key(id) {
        return `${this.model}:${id}`;
      }

      async upsert(id, payload, expiresIn) {
        storage.set(this.key(id), payload, expiresIn);
        if (this.model === 'Session') {
          storage.set(`sessionUid:${payload.uid}`, id, expiresIn);
        }
        if (payload.userCode) {
          storage.set(`userCode:${payload.userCode}`, id, expiresIn);
        }
        if (payload.grantId) {
          const members = storage.get(`grant:${payload.grantId}`) ?? [];
          members.push(this.key(id));
          storage.set(`grant:${payload.grantId}`, members);
        }
      }

      async find(id) {
        return storage.get(this.key(id));
      }

      async findByUid(uid) {
        const id = storage.get(`sessionUid:${uid}`);
        return id === undefined ? undefined : storage.get(this.key(id));
      }

      async findByUserCode(userCode) {
        const id = storage.get(`userCode:${userCode}`);
        return id === undefined ? undefined : storage.get(this.key(id));
      }

      async consume(id) {
        const payload = storage.get(this.key(id));
        if (payload) {
          payload.consumed = now();
        }
      }

      async destroy(id) {
        storage.delete(this.key(id));
      }

      async revokeByGrantId(grantId) {
        for (const key of storage.get(`grant:${grantId}`) ?? []) {
          storage.delete(key);
        }
        storage.delete(`grant:${grantId}`);
      }
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------
function positive(value, name, fallback) {
  if (value === undefined || value === null) {
    return fallback;
  }
  if (!Number.isInteger(value) || value <= 0) {
    fail(`${name} must be a positive integer (seconds)`);
  }
  return value;
}

function parseConfig(text) {
  let raw = DEFAULT_CONFIG;
  if (text && text.trim()) {
    try {
      raw = JSON.parse(text);
    } catch (err) {
      fail(`IDP_CONFIG is not JSON: ${err.message}`);
    }
  }
  if (!isPlainObject(raw) || Object.keys(raw).length === 0) {
    fail('IDP_CONFIG must be an object {"<issuer name>": {...}, ...} naming at least one issuer');
  }
  return Object.entries(raw).map(([name, spec]) => normalizeIssuer(name, spec));
}

function normalizeIssuer(name, spec) {
  const where = `IDP_CONFIG[${JSON.stringify(name)}]`;
  if (!NAME_RE.test(name) || name.startsWith('__')) {
    fail(`${where}: an issuer name is a path segment of [a-z0-9._-], e.g. "hospital"`);
  }
  if (!isPlainObject(spec)) {
    fail(`${where} must be an object`);
  }
  const alg = spec.alg ?? 'RS256';
  if (!SUPPORTED_ALGS.has(alg)) {
    fail(`${where}.alg must be one of ${[...SUPPORTED_ALGS].join(', ')}`);
  }
  const audience = spec.audience ?? 'peerway';
  if (typeof audience !== 'string' || !audience) {
    fail(`${where}.audience must be a non-empty string`);
  }
  // The resource indicator (RFC 8707) used when the authorization request names none. It must be an
  // absolute URI; an audience such as "peerway" is not, so it gets a URN standing for it.
  const resource = spec.resource ?? (URL.canParse(audience) ? audience : `urn:peerway:audience:${encodeURIComponent(audience)}`);
  if (typeof resource !== 'string' || !URL.canParse(resource)) {
    fail(`${where}.resource must be an absolute URI`);
  }
  const resources = spec.resources ?? {};
  if (!isPlainObject(resources)) {
    fail(`${where}.resources must be an object {"<resource indicator URI>": {"audience"?, "scopes"?}}`);
  }
  for (const [indicator, rs] of Object.entries(resources)) {
    if (!URL.canParse(indicator) || !isPlainObject(rs)) {
      fail(`${where}.resources: "${indicator}" must be an absolute URI mapped to an object`);
    }
  }
  const scopes = spec.scopes ?? DEFAULT_RESOURCE_SCOPES;
  if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string' && s && !s.includes(' '))) {
    fail(`${where}.scopes must be a list of scope strings`);
  }
  const accounts = spec.accounts ?? [];
  if (!Array.isArray(accounts) || !accounts.every((a) => isPlainObject(a) && typeof a.sub === 'string' && a.sub)) {
    fail(`${where}.accounts must be a list of {"sub": "...", "name"?, "email"?, ...}`);
  }
  const clients = spec.clients ?? [];
  if (!Array.isArray(clients) || !clients.every((c) => isPlainObject(c) && typeof c.client_id === 'string')) {
    fail(`${where}.clients must be a list of client metadata objects with a client_id`);
  }
  return {
    name,
    alg,
    audience,
    resource,
    resources,
    scopes,
    accessTokenTtl: positive(spec.access_token_ttl, `${where}.access_token_ttl`, 300),
    idTokenTtl: positive(spec.id_token_ttl, `${where}.id_token_ttl`, 300),
    refreshTokenTtl: positive(spec.refresh_token_ttl, `${where}.refresh_token_ttl`, 24 * 60 * 60),
    accounts: new Map(accounts.map((a) => [a.sub, a])),
    clients,
  };
}

// ---------------------------------------------------------------------------------------------
// One issuer
// ---------------------------------------------------------------------------------------------
class Issuer {
  constructor(spec, root) {
    this.initial = spec;
    this.name = spec.name;
    this.url = `${root}/${spec.name}`;
    this.mountPath = `/${spec.name}`;
    this.storage = new Storage();
    this.cookieKeys = [crypto.randomBytes(32).toString('base64url')];
    this.initialKeys = [generateKey(spec.alg)];
    this.foreignKeys = new Map();
    this.reset();
  }

  reset() {
    this.spec = { ...this.initial };
    this.keys = [...this.initialKeys];
    this.storage.clear();
    this.issued = [];
    this.build();
  }

  /** (Re)creates the oidc-provider instance from the current spec and keys; storage and cookies carry over. */
  build() {
    const provider = new Provider(this.url, this.configuration());
    provider.on('server_error', (ctx, err) => warn(`${this.name}: ${ctx.method} ${ctx.url}: ${err?.stack ?? err}`));
    provider.on('access_token.issued', (token) => {
      this.issued.push({
        jti: token.jti,
        sub: token.accountId ?? null,
        client_id: token.clientId,
        aud: token.aud ?? null,
        scope: token.scope ?? null,
        iat: token.iat,
        exp: token.exp,
        gty: token.gty ?? null,
      });
    });
    this.provider = provider;
    this.handler = provider.callback();
  }

  resourceServerInfo(indicator) {
    const spec = this.spec;
    let audience;
    let scopes = spec.scopes;
    if (indicator === spec.resource) {
      audience = spec.audience;
    } else if (spec.resources[indicator]) {
      const rs = spec.resources[indicator];
      audience = rs.audience ?? indicator;
      scopes = rs.scopes ?? scopes;
    } else {
      return undefined;
    }
    return {
      audience,
      // The OpenID scopes too, so that the token's `scope` tells what was granted, as most IdPs do.
      scope: [...new Set([...OIDC_SCOPES, ...scopes])].join(' '),
      accessTokenTTL: spec.accessTokenTtl,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: spec.alg } },
    };
  }

  configuration() {
    const spec = this.spec;
    const extraClaims = new Set();
    for (const account of spec.accounts.values()) {
      for (const key of Object.keys(account)) {
        if (!ACCOUNT_RESERVED.has(key) && !STANDARD_CLAIMS.has(key)) {
          extraClaims.add(key);
        }
      }
    }
    return {
      adapter: this.storage.adapter(),
      jwks: { keys: this.keys },
      clients: spec.clients,
      clientDefaults: {
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        id_token_signed_response_alg: spec.alg,
      },
      // Claims beyond the standard ones found on the accounts (e.g. "roles", "fhirUser") go with `openid`.
      claims: { ...OIDC_CLAIMS, openid: ['sub', ...extraClaims] },
      scopes: OIDC_SCOPES,
      responseTypes: ['code'],
      cookies: {
        keys: this.cookieKeys,
        names: {
          session: `_${spec.name}_session`,
          interaction: `_${spec.name}_interaction`,
          resume: `_${spec.name}_interaction_resume`,
        },
      },
      pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
      features: {
        devInteractions: { enabled: false },
        introspection: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx, _client, oneOf) => oneOf?.[0] ?? spec.resource,
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx, indicator) => {
            const info = this.resourceServerInfo(indicator);
            if (!info) {
              throw new errors.InvalidTarget(`unknown resource indicator ${indicator}`);
            }
            return info;
          },
        },
      },
      interactions: { url: async (_ctx, interaction) => `${this.mountPath}/interaction/${interaction.uid}` },
      findAccount: async (_ctx, sub) => {
        const account = spec.accounts.get(sub);
        if (!account) {
          return undefined;
        }
        return {
          accountId: sub,
          claims: async () => {
            const { access_token_claims: _atc, ...claims } = account;
            return claims;
          },
        };
      },
      extraTokenClaims: async (_ctx, token) => {
        if (token.kind !== 'AccessToken' || !token.accountId) {
          return undefined;
        }
        return spec.accounts.get(token.accountId)?.access_token_claims;
      },
      ttl: {
        AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? spec.accessTokenTtl,
        AuthorizationCode: 60,
        ClientCredentials: spec.accessTokenTtl,
        IdToken: spec.idTokenTtl,
        RefreshToken: spec.refreshTokenTtl,
        Grant: 24 * 60 * 60,
        Interaction: 10 * 60,
        Session: 24 * 60 * 60,
      },
      clientBasedCORS: () => true,
      rotateRefreshToken: true,
      renderError: async (ctx, out) => {
        ctx.type = 'json';
        ctx.body = out;
      },
    };
  }

  // ----- HTTP -----
  async handle(req, res, rest, search) {
    const interaction = /^\/interaction\/([^/]+)$/.exec(rest);
    if (interaction) {
      await this.interaction(req, res, search);
      return;
    }
    // Mounted like express's app.use(path, provider.callback()): oidc-provider derives its mount
    // path from originalUrl minus url.
    req.originalUrl = req.url;
    req.url = `${rest || '/'}${search}`;
    await this.handler(req, res);
  }

  /** Logs in the chosen account and grants everything requested, then sends the browser back to the provider. */
  async interaction(req, res, search) {
    const provider = this.provider;
    const form = new URLSearchParams(search);
    if (req.method === 'POST') {
      for (const [key, value] of new URLSearchParams(await readBody(req))) {
        form.set(key, value);
      }
    } else {
      await readBody(req);
    }
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      sendJson(res, 400, { error: 'invalid_request', error_description: `no interaction in progress: ${err.message}` });
      return;
    }
    const { prompt, params } = details;
    if (form.get('error')) {
      await provider.interactionFinished(req, res, {
        error: form.get('error'),
        error_description: form.get('error_description') ?? undefined,
      }, { mergeWithLastSubmission: false });
      return;
    }
    const result = {};
    let accountId = details.session?.accountId;
    if (prompt.name === 'login') {
      const hint = form.get('account') || form.get('login_hint') || params.login_hint;
      if (!hint) {
        sendHtml(res, 200, this.loginPage(details.uid));
        return;
      }
      if (!this.spec.accounts.has(hint)) {
        await provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: `no account ${hint} at ${this.name}`,
        }, { mergeWithLastSubmission: false });
        return;
      }
      accountId = hint;
      result.login = { accountId, amr: ['pwd'] };
    }
    // Consent: everything requested, in the same step as the login.
    let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    if (!grant || grant.accountId !== accountId || grant.clientId !== params.client_id) {
      grant = new provider.Grant({ accountId, clientId: params.client_id });
    }
    const requested = String(params.scope ?? '').split(' ').filter(Boolean);
    grant.addOIDCScope(requested.filter((s) => OIDC_SCOPES.includes(s)).join(' '));
    const missing = prompt.details ?? {};
    if (missing.missingOIDCScope) {
      grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    }
    if (missing.missingOIDCClaims) {
      grant.addOIDCClaims(missing.missingOIDCClaims);
    }
    if (params.claims) {
      const claims = JSON.parse(params.claims);
      grant.addOIDCClaims([...Object.keys(claims.id_token ?? {}), ...Object.keys(claims.userinfo ?? {})]);
    }
    const indicators = params.resource === undefined ? [this.spec.resource] : [params.resource].flat();
    for (const indicator of indicators) {
      const info = this.resourceServerInfo(indicator);
      if (info) {
        const available = new Set(info.scope.split(' '));
        grant.addResourceScope(indicator, requested.filter((s) => available.has(s)).join(' '));
      }
    }
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result.consent = { grantId: await grant.save() };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  }

  loginPage(uid) {
    const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const buttons = [...this.spec.accounts.values()]
      .map((a) => `<button type="submit" name="account" value="${escape(a.sub)}">${escape(a.name ?? a.sub)} (${escape(a.sub)})</button>`)
      .join('<br>\n');
    return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in at ${escape(this.name)}</title></head>
<body><h1>Test IdP ${escape(this.name)}</h1>
<form method="post" action="${this.mountPath}/interaction/${escape(uid)}">
${buttons || '<p>No accounts configured.</p>'}
</form></body></html>`;
  }

  // ----- admin -----
  state() {
    return {
      issuer: this.url,
      alg: this.spec.alg,
      audience: this.spec.audience,
      resource: this.spec.resource,
      access_token_ttl: this.spec.accessTokenTtl,
      id_token_ttl: this.spec.idTokenTtl,
      kid: this.keys[0].kid,
      kids: this.keys.map((k) => k.kid),
      clients: this.spec.clients.map((c) => c.client_id),
      accounts: [...this.spec.accounts.keys()],
    };
  }

  rotate({ keep_old: keepOld = true, alg } = {}) {
    if (typeof keepOld !== 'boolean') {
      fail('keep_old must be a boolean');
    }
    if (alg !== undefined) {
      if (!SUPPORTED_ALGS.has(alg)) {
        fail(`alg must be one of ${[...SUPPORTED_ALGS].join(', ')}`);
      }
      this.spec = { ...this.spec, alg };
    }
    const key = generateKey(this.spec.alg);
    this.keys = keepOld ? [key, ...this.keys] : [key];
    this.build();
    return this.state();
  }

  settings(body) {
    const next = { ...this.spec };
    if ('access_token_ttl' in body) {
      next.accessTokenTtl = positive(body.access_token_ttl, 'access_token_ttl');
    }
    if ('id_token_ttl' in body) {
      next.idTokenTtl = positive(body.id_token_ttl, 'id_token_ttl');
    }
    if ('audience' in body) {
      if (typeof body.audience !== 'string' || !body.audience) {
        fail('audience must be a non-empty string');
      }
      next.audience = body.audience;
    }
    this.spec = next;
    this.build();
    return this.state();
  }

  /**
   * A token signed exactly as asked, for attack tests. Claims default to those of an access token of
   * this issuer (iss, aud, iat, exp = iat + the access token lifetime, jti); the header to
   * {alg, typ: "at+jwt", kid}. A null value removes a default.
   */
  mint(body) {
    const claimsIn = body.claims ?? {};
    const headerIn = body.header ?? {};
    if (!isPlainObject(claimsIn) || !isPlainObject(headerIn)) {
      fail('claims and header must be objects');
    }
    const defaults = body.defaults ?? true;
    const alg = headerIn.alg ?? this.spec.alg;

    let jwk;
    const keyChoice = body.key ?? 'current';
    if (keyChoice === 'current') {
      jwk = this.keys[0];
    } else if (keyChoice === 'foreign') {
      const family = /^ES(256|384|512)$/.test(alg) ? alg : 'RS256';
      if (!this.foreignKeys.has(family)) {
        this.foreignKeys.set(family, generateKey(family));
      }
      jwk = this.foreignKeys.get(family);
    } else {
      jwk = this.keys.find((k) => k.kid === keyChoice) ?? fail(`no key ${keyChoice} at ${this.name}; "current", "foreign" or one of ${this.keys.map((k) => k.kid).join(', ')}`);
    }

    const issuedAt = now();
    const claims = defaults
      ? {
        iss: this.url,
        aud: this.spec.audience,
        iat: issuedAt,
        exp: issuedAt + this.spec.accessTokenTtl,
        jti: crypto.randomUUID(),
        ...claimsIn,
      }
      : { ...claimsIn };
    const header = defaults ? { alg, typ: 'at+jwt', kid: jwk.kid, ...headerIn } : { ...headerIn };
    if (body.embed_jwk) {
      header.jwk = publicJwk(jwk);
    }
    for (const object of [claims, header]) {
      for (const [key, value] of Object.entries(object)) {
        if (value === null) {
          delete object[key];
        }
      }
    }
    // HMAC: the given secret, or (the classic algorithm confusion) the signing key's public PEM.
    const secret = body.secret
      ?? crypto.createPublicKey({ key: publicJwk(jwk), format: 'jwk' }).export({ format: 'pem', type: 'spki' });
    return { token: signJws(header, claims, jwk, secret), header, claims };
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BadRequest('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, body) {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
    'Cache-Control': 'no-store',
  });
  res.end(payload);
}

function sendHtml(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(html) });
  res.end(html);
}

let issuers = new Map();

async function handleAdmin(req, res, path) {
  const text = await readBody(req);
  let body = {};
  if (text.trim()) {
    try {
      body = JSON.parse(text);
    } catch {
      sendJson(res, 400, { error: 'body must be JSON' });
      return;
    }
    if (!isPlainObject(body)) {
      sendJson(res, 400, { error: 'body must be a JSON object' });
      return;
    }
  }
  const { method } = req;
  const state = () => Object.fromEntries([...issuers].map(([name, issuer]) => [name, issuer.state()]));
  if (path === '/__admin/issuers' && method === 'GET') {
    sendJson(res, 200, state());
    return;
  }
  if (path === '/__admin/reset' && method === 'POST') {
    for (const issuer of issuers.values()) {
      issuer.reset();
    }
    sendJson(res, 200, state());
    return;
  }
  const match = /^\/__admin\/issuers\/([^/]+)(?:\/([a-z]+))?$/.exec(path);
  const issuer = match && issuers.get(match[1]);
  if (!issuer) {
    sendJson(res, 404, { error: `no admin endpoint ${method} ${path} (issuers: ${[...issuers.keys()].join(', ')})` });
    return;
  }
  const action = `${method} ${match[2] ?? ''}`;
  if (action === 'GET ') {
    sendJson(res, 200, issuer.state());
  } else if (action === 'POST rotate') {
    sendJson(res, 200, issuer.rotate(body));
  } else if (action === 'POST mint') {
    sendJson(res, 200, issuer.mint(body));
  } else if (action === 'POST settings') {
    sendJson(res, 200, issuer.settings(body));
  } else if (action === 'GET tokens') {
    sendJson(res, 200, issuer.issued);
  } else if (action === 'GET keys') {
    // The private keys too: tests may sign with them on their own.
    sendJson(res, 200, { keys: issuer.keys });
  } else {
    sendJson(res, 404, { error: `no admin endpoint ${method} ${path}` });
  }
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', `http://${HOST}`);
  const path = url.pathname;
  let done;
  if (path.startsWith('/__admin/')) {
    done = handleAdmin(req, res, path);
  } else {
    const name = path.split('/')[1];
    const issuer = issuers.get(name);
    if (issuer) {
      done = issuer.handle(req, res, path.slice(name.length + 1), url.search);
    } else {
      done = readBody(req).then(() => {
        const listing = Object.fromEntries([...issuers].map(([n, i]) => [n, i.url]));
        sendJson(res, path === '/' ? 200 : 404, path === '/' ? { issuers: listing } : { error: 'not found', issuers: listing });
      });
    }
  }
  done.catch((err) => {
    if (!(err instanceof BadRequest)) {
      warn(`error handling ${req.method} ${req.url}: ${err?.stack ?? err}`);
    }
    if (!res.headersSent && !res.destroyed) {
      sendJson(res, err instanceof BadRequest ? 400 : 500, { error: err instanceof BadRequest ? err.message : 'internal error' });
    }
  });
});
server.keepAliveTimeout = 5000;

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

let specs;
try {
  specs = parseConfig(process.env.IDP_CONFIG);
} catch (err) {
  warn(`cannot start: ${err.message}`);
  process.exit(1);
}

const port = Number.parseInt(process.env.IDP_PORT ?? '0', 10) || 0;
server.listen(port, HOST, async () => {
  const actual = server.address().port;
  const root = `http://${HOST}:${actual}`;
  try {
    // The issuer identifiers contain the port, so the providers are made once it is known.
    issuers = new Map(specs.map((spec) => [spec.name, new Issuer(spec, root)]));
    // oidc-provider validates configured clients on first use; do it now so a bad one stops the start.
    for (const issuer of issuers.values()) {
      for (const { client_id: clientId } of issuer.spec.clients) {
        try {
          await issuer.provider.Client.find(clientId);
        } catch (err) {
          throw new Error(`${issuer.name}: client ${clientId}: ${err.error_description ?? err.message}`);
        }
      }
    }
  } catch (err) {
    warn(`cannot start: ${err.message}`);
    process.exit(1);
  }
  const listing = Object.fromEntries([...issuers].map(([name, issuer]) => [name, issuer.url]));
  // Exactly one line, in the documented format.
  process.stdout.write(`${JSON.stringify({ listening: actual, root, issuers: listing })}\n`);
});
