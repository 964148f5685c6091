// Checks that Medplum 4.5.2's validateResource() does not do, so that the test EHR refuses what a real
// EHR would refuse:
//  - required terminology bindings (validateResource ignores bindings: Encounter.status "done" passes);
//  - constraints of a profile below its top level (validateResource applies a profile's element
//    definitions to the top-level elements only, then crawls nested BackboneElements with the base
//    definitions, so e.g. a profile's min=1 on Encounter.hospitalization.dischargeDisposition is ignored);
//  - slices: Medplum counts the members of value/pattern-discriminated slices only and ignores a slice's
//    child constraints (e.g. identifier:peerway.value min 1); both are checked here, extension slices
//    typed by a profile url included;
//  - extension profiles (an extension whose url names a loaded Extension profile is validated against it).
import {
  deepEquals,
  deepIncludes,
  getDataType,
  getNestedProperty,
  isPrimitiveType,
  OperationOutcomeError,
  validateTypedValue,
} from '@medplum/core';

/**
 * @param {any} resource the JSON resource
 * @param {any} schema InternalTypeSchema of the resource type or of a profile on it
 * @param {boolean} isProfile whether `schema` comes from a profile (then nested constraints are checked)
 * @param {{terminology: import('./terminology.mjs').Terminology, profiles: Map<string, {sd: any, schema: any}>}} ctx
 * @returns {any[]} OperationOutcome issues
 */
export function extraChecks(resource, schema, isProfile, ctx) {
  const issues = [];
  walk({ type: resource.resourceType, value: resource, path: schema.path }, schema, isProfile ? schema : undefined, false, ctx, issues);
  return issues;
}

// Same wording as Medplum's validator, so that duplicates are merged.
function cardinalityText(element, found) {
  const max = Number.isFinite(element.max) ? element.max : '*';
  return `Invalid number of values: expected ${element.min}..${max}, but found ${found}`;
}

function issue(code, text, path) {
  return { severity: 'error', code, details: { text }, expression: [path] };
}

/**
 * @param {{type: string, value: any, path: string}} typed
 * @param {any} schema schema of typed.type (from the profile when `profile` is set)
 * @param {any} profile the profile schema whose innerTypes apply below this point, if any
 * @param {boolean} nestedProfile whether `schema` is a profile inner type (Medplum did not check it)
 */
function walk(typed, schema, profile, nestedProfile, ctx, issues) {
  for (const [key, element] of Object.entries(schema.elements ?? {})) {
    let propertyValues;
    try {
      propertyValues = getNestedProperty(typed, key, { withPath: true });
    } catch {
      continue;
    }
    const values = propertyValues.flat().filter((v) => v && v.value !== undefined && v.value !== null);
    const elementPath = `${typed.path}.${key}`;

    if (nestedProfile) {
      if (values.length < element.min) {
        issues.push(
          issue(
            'structure',
            values.length === 0 ? 'Missing required property' : cardinalityText(element, values.length),
            elementPath
          )
        );
      } else if (values.length > element.max) {
        issues.push(issue('structure', cardinalityText(element, values.length), elementPath));
      }
      for (const v of values) {
        if (element.fixed && !deepEquals(v.value, element.fixed.value)) {
          issues.push(issue('structure', 'Value did not match expected pattern', v.path ?? elementPath));
        }
        if (element.pattern && !deepIncludes(v.value, element.pattern.value)) {
          issues.push(issue('structure', 'Value did not match expected pattern', v.path ?? elementPath));
        }
      }
    }

    if (profile && key.endsWith('[x]') && element.type?.length) {
      const allowed = new Set(element.type.map((t) => t.code));
      for (const v of values) {
        if (!allowed.has(v.type)) {
          issues.push(issue('structure', `Type ${v.type} is not allowed here; expected ${[...allowed].join(' | ')}`, v.path ?? elementPath));
        }
      }
    }

    checkBinding(element, values, elementPath, ctx, issues);

    if (profile && element.slicing?.slices?.length) {
      const counts = new Map(element.slicing.slices.map((slice) => [slice, 0]));
      for (const v of values) {
        const slice = element.slicing.slices.find((candidate) => inSlice(v, candidate, element.slicing));
        if (slice) {
          counts.set(slice, counts.get(slice) + 1);
          checkSliceContent(v, slice, ctx, issues);
        }
      }
      // Medplum counts only slices it can recognise (not extension slices typed by a profile url);
      // same wording as Medplum's, so duplicates merge.
      if (values.length > 0 || !nestedProfile) {
        for (const [slice, found] of counts) {
          if (found < slice.min || found > slice.max) {
            const max = Number.isFinite(slice.max) ? slice.max : '*';
            issues.push(
              issue(
                'structure',
                `Incorrect number of values provided for slice '${slice.name}': expected ${slice.min}..${max}, but found ${found}`,
                elementPath
              )
            );
          }
        }
      }
    }

    for (const v of values) {
      if (isPrimitiveType(v.type) || typeof v.value !== 'object') {
        continue;
      }
      if ((key === 'extension' || key === 'modifierExtension') && v.value.url) {
        checkExtensionProfile(v, ctx, issues);
      }
      const inner = profile?.innerTypes?.find((t) => t.name === v.type);
      let childSchema = inner;
      if (!childSchema) {
        try {
          childSchema = getDataType(v.type);
        } catch {
          continue;
        }
      }
      walk({ type: v.type, value: v.value, path: v.path ?? elementPath }, childSchema, inner ? profile : undefined, Boolean(inner), ctx, issues);
    }
  }
}

function checkExtensionProfile(ext, ctx, issues) {
  const profile = ctx.profiles.get(ext.value.url);
  if (!profile || profile.sd.type !== 'Extension') {
    return;
  }
  const rebase = (i) => ({
    ...i,
    expression: (i.expression ?? []).map((e) => e.replace(/^Extension/, ext.path)),
    diagnostics: `extension profile ${ext.value.url}`,
  });
  try {
    validateTypedValue({ type: 'Extension', value: ext.value }, { profile: profile.sd });
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      issues.push(...(err.outcome.issue ?? []).filter((i) => i.severity === 'error').map(rebase));
    } else {
      issues.push(rebase(issue('invalid', String(err?.message ?? err), 'Extension')));
    }
  }
  const sub = [];
  walk({ type: 'Extension', value: ext.value, path: 'Extension' }, profile.schema, profile.schema, true, ctx, sub);
  issues.push(...sub.map(rebase));
}

function checkBinding(element, values, elementPath, ctx, issues) {
  const binding = element.binding;
  if (binding?.strength === 'required' && binding.valueSet) {
    for (const v of values) {
      const problem = ctx.terminology.checkValue(v, binding.valueSet);
      if (problem) {
        issues.push(issue('code-invalid', problem, v.path ?? elementPath));
      }
    }
  }
}

function present(typed, key) {
  try {
    return getNestedProperty(typed, key, { withPath: true })
      .flat()
      .filter((v) => v && v.value !== undefined && v.value !== null);
  } catch {
    return [];
  }
}

/** Whether value `v` belongs to `slice` according to the slicing discriminators (value, pattern, type). */
function inSlice(v, slice, slicing) {
  if (!slicing.discriminator?.length) {
    return false;
  }
  return slicing.discriminator.every((d) => {
    if (d.type === 'type') {
      return (slice.type ?? []).some((t) => t.code === v.type);
    }
    const sliceElement = d.path === '$this' ? slice : slice.elements?.[d.path];
    const actual = d.path === '$this' ? [v] : present(v, d.path);
    if (!sliceElement?.fixed && !sliceElement?.pattern) {
      // extension slices: the url is fixed in the extension's own profile
      const profileUrl = slice.type?.[0]?.profile?.[0];
      return d.path === 'url' && Boolean(profileUrl) && actual.some((a) => a.value === profileUrl);
    }
    return actual.some((a) =>
      sliceElement.fixed ? deepEquals(a.value, sliceElement.fixed.value) : deepIncludes(a.value, sliceElement.pattern.value)
    );
  });
}

/** Medplum counts slice members but does not apply a slice's child constraints; this does. */
function checkSliceContent(v, slice, ctx, issues) {
  for (const [key, element] of Object.entries(slice.elements ?? {})) {
    const values = present(v, key);
    const elementPath = `${v.path}.${key}`;
    const parentKey = key.includes('.') ? key.slice(0, key.lastIndexOf('.')) : undefined;
    const parentPresent = !parentKey || present(v, parentKey).length > 0;
    if (parentPresent && values.length < element.min) {
      issues.push(
        issue(
          'structure',
          values.length === 0 ? `Missing required property (slice ${slice.name})` : cardinalityText(element, values.length),
          elementPath
        )
      );
    } else if (values.length > element.max) {
      issues.push(issue('structure', cardinalityText(element, values.length), elementPath));
    }
    for (const value of values) {
      if (element.fixed && !deepEquals(value.value, element.fixed.value)) {
        issues.push(issue('structure', 'Value did not match expected pattern', value.path ?? elementPath));
      }
      if (element.pattern && !deepIncludes(value.value, element.pattern.value)) {
        issues.push(issue('structure', 'Value did not match expected pattern', value.path ?? elementPath));
      }
    }
    checkBinding(element, values, elementPath, ctx, issues);
  }
}
