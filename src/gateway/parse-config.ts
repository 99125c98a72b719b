import { createRequire } from 'node:module';
import type { YAMLError } from 'yaml';

const require = createRequire(import.meta.url);

/**
 * Client keys, snapshots and Secret manifests hold keys, so an error about them names the source, the line and
 * the column and says what is wrong in words of its own, never with the text: the YAML parser's messages carry a
 * code frame (and some quote the offending escape, alias or tag), V8's JSON messages a snippet, and these
 * messages reach `/readyz`, logs and stderr.
 */
export class ConfigSyntaxError extends Error {}

/**
 * JSON or YAML text → value. JSON (what the operator and most tooling write) is parsed natively; the YAML
 * parser is loaded only when a file really is YAML, which keeps ~13 MiB of code out of an idle gateway.
 * Throws a ConfigSyntaxError `<source>: YAML syntax error at line L, column C: <what>`.
 */
export function parseJsonOrYaml(text: string, source: string): unknown {
  const t = text.trimStart();
  if (t.startsWith('{') || t.startsWith('[')) {
    try {
      return JSON.parse(text);
    } catch {
      // YAML flow style also starts with { or [: fall through (and its errors say where, without the text)
    }
  }
  const { parseDocument } = require('yaml') as typeof import('yaml');
  // 'error': at 'warn' (the default) warnings go to stderr through process.emitWarning, code frame and all;
  // 'silent' would also drop the error for a second document
  const doc = parseDocument(text, { logLevel: 'error' });
  const first = doc.errors[0];
  if (first) throw new ConfigSyntaxError(`${source}: ${describeYamlError(first)}`);
  try {
    return doc.toJS();
  } catch {
    // aliases are resolved here, and the error names the alias (text from the document)
    throw new ConfigSyntaxError(`${source}: ${YAML_ALIAS_ERROR}`);
  }
}

/** What to say when resolving a parsed YAML document fails (its own error names the alias). */
export const YAML_ALIAS_ERROR =
  'YAML error: an alias refers to an anchor that is not defined, or aliases expand too far';

/** `YAML syntax error at line L, column C: <what>`, from the error's code and position only. */
export function describeYamlError(err: YAMLError): string {
  const at = err.linePos?.[0];
  const where = at ? ` at line ${at.line}, column ${at.col}` : '';
  const clause = err.message.split(' at line ')[0]?.split('\n')[0] ?? '';
  const what = SAFE_MESSAGE.test(clause)
    ? clause.charAt(0).toLowerCase() + clause.slice(1)
    : (BY_CODE[err.code] ?? 'the YAML cannot be parsed');
  return `YAML syntax error${where}: ${what}`;
}

// The parser's own messages that hold no text from the document (the others interpolate it).
const TOKEN =
  '(?:scalar|double-quoted-scalar|single-quoted-scalar|block-scalar|block-map|block-seq|flow-collection|flow-error-end|comma|map-value-ind|seq-item-ind|explicit-key-ind|anchor|tag|alias|comment|newline|space|doc-start|doc-end|directive|error|byte-order-mark)';
const FLOW = '(?:flow map|flow sequence)';
const SAFE_MESSAGE = new RegExp(
  `^(?:${[
    `Missing closing ["']quote`,
    'Map keys must be unique',
    'Nested mappings are not allowed in compact mappings',
    'A block sequence may not be used as an implicit map key',
    'All sequence items must start at the same column',
    'Implicit keys need to be on a single line',
    'Implicit keys of flow sequence pairs need to be on a single line',
    'Implicit map keys need to be followed by map values',
    'Tabs are not allowed as indentation',
    'A node can have at most one (?:anchor|tag)',
    'An alias node must not specify any properties',
    'Sequence item without - indicator',
    'Comments must be separated from other tokens by white space characters',
    'Tags and anchors must be separated from the next token by white space',
    'Missing directives-end(?:/doc-start)? indicator line',
    'Block collection cannot start on same line with directives-end marker',
    'Flow sequence must end with a \\]',
    'Flow map must end with a \\}',
    `Missing , (?:or : )?between ${FLOW} items`,
    `Missing space after : in ${FLOW}`,
    `Unexpected ${TOKEN} token`,
    `Unexpected ${TOKEN} at node end`,
    `Unexpected , in ${FLOW}`,
    `Unexpected empty item in ${FLOW}`,
  ].join('|')})$`,
);

const BY_CODE: Partial<Record<YAMLError['code'], string>> = {
  ALIAS_PROPS: 'an alias has an anchor or a tag',
  BAD_ALIAS: 'an alias or an anchor is malformed',
  BAD_COLLECTION_TYPE: 'a tag does not fit its collection',
  BAD_DIRECTIVE: 'a directive is malformed',
  BAD_DQ_ESCAPE: 'a double-quoted string has an invalid escape sequence',
  BAD_INDENT: 'bad indentation',
  BAD_PROP_ORDER: 'an anchor or a tag is in the wrong place',
  BAD_SCALAR_START: 'a plain value starts with a reserved character (quote it)',
  BLOCK_AS_IMPLICIT_KEY: 'a block collection is used as an implicit key',
  BLOCK_IN_FLOW: 'a block collection is inside a flow collection',
  DUPLICATE_KEY: 'map keys must be unique',
  KEY_OVER_1024_CHARS: 'an implicit key is longer than 1024 characters',
  MISSING_CHAR: 'a character is missing (a closing quote or bracket, a comma, a colon or a space)',
  MULTILINE_IMPLICIT_KEY: 'an implicit key spans several lines',
  MULTIPLE_ANCHORS: 'a node has more than one anchor',
  MULTIPLE_DOCS: 'the text holds more than one YAML document',
  MULTIPLE_TAGS: 'a node has more than one tag',
  NON_STRING_KEY: 'a map key is not a string',
  RESOURCE_EXHAUSTION: 'the document is too large or too deeply nested',
  TAB_AS_INDENT: 'tabs are not allowed as indentation',
  TAG_RESOLVE_FAILED: 'a tag is unknown',
  UNEXPECTED_TOKEN: 'unexpected content',
};
