// The client's TypeScript types (web/client/relay-client.d.ts) against the AsyncAPI document
// (core/asyncapi.json): every message the document names has an interface of the same name with
// the same fields (required or optional, nullable or not, the same literal `type`/`action`, the
// same named types), the unions list exactly the server's and the client's messages, and the
// enums have the same words. The d.ts is parsed with the TypeScript compiler, not read as text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DTS = `${root}web/client/relay-client.d.ts`;
const ASYNCAPI = `${root}core/asyncapi.json`;

/** Schemas that are plain strings on the TypeScript side (their format is the document's). */
const STRING_SCHEMAS = new Set(['BotId', 'EventId', 'Timestamp']);

// --- the d.ts --------------------------------------------------------------------------------

/** A TypeScript type as a set of parts: `string`, `number`, `boolean`, `null`, `unknown`,
 *  `'literal'`, `Ref:Name`, `Record`. */
function typeParts(node, out = new Set()) {
  switch (node.kind) {
    case ts.SyntaxKind.UnionType:
      for (const t of node.types) typeParts(t, out);
      break;
    case ts.SyntaxKind.ParenthesizedType:
      typeParts(node.type, out);
      break;
    case ts.SyntaxKind.StringKeyword:
      out.add('string');
      break;
    case ts.SyntaxKind.NumberKeyword:
      out.add('number');
      break;
    case ts.SyntaxKind.BooleanKeyword:
      out.add('boolean');
      break;
    case ts.SyntaxKind.UnknownKeyword:
    case ts.SyntaxKind.AnyKeyword:
      out.add('unknown');
      break;
    case ts.SyntaxKind.UndefinedKeyword:
      out.add('undefined');
      break;
    case ts.SyntaxKind.LiteralType:
      if (node.literal.kind === ts.SyntaxKind.NullKeyword) out.add('null');
      else if (node.literal.kind === ts.SyntaxKind.StringLiteral) out.add(`'${node.literal.text}'`);
      else if (node.literal.kind === ts.SyntaxKind.TrueKeyword) out.add('true');
      else if (node.literal.kind === ts.SyntaxKind.FalseKeyword) out.add('false');
      else out.add(node.getText());
      break;
    case ts.SyntaxKind.TypeReference: {
      const name = node.typeName.getText();
      out.add(name === 'Record' ? 'Record' : `Ref:${name}`);
      break;
    }
    default:
      out.add(node.getText());
  }
  return out;
}

function parseDts(path) {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const interfaces = new Map();
  const aliases = new Map();
  for (const stmt of source.statements) {
    if (ts.isInterfaceDeclaration(stmt)) {
      const fields = new Map();
      for (const member of stmt.members) {
        if (!ts.isPropertySignature(member) || !member.type) continue;
        const parts = typeParts(member.type);
        // `event_id?: undefined`: a field that is never there (it tells the types apart).
        if (parts.size === 1 && parts.has('undefined')) continue;
        // Fields the client adds itself are not on the wire.
        if (ts.getJSDocTags(member).some((t) => t.tagName.text === 'client')) continue;
        fields.set(member.name.getText(), { optional: Boolean(member.questionToken), parts });
      }
      interfaces.set(stmt.name.text, fields);
    } else if (ts.isTypeAliasDeclaration(stmt)) {
      aliases.set(stmt.name.text, typeParts(stmt.type));
    }
  }
  return { interfaces, aliases };
}

// --- the AsyncAPI document ------------------------------------------------------------------

const refName = (ref) => ref.replace('#/components/schemas/', '');

/** What the TypeScript side of one property schema must be, as type parts. */
function expectedParts(schema, schemas) {
  const out = new Set();
  const add = (s) => {
    if (s.$ref) {
      const name = refName(s.$ref);
      if (STRING_SCHEMAS.has(name)) out.add('string');
      else out.add(`Ref:${name}`);
      return;
    }
    if (s.oneOf) return s.oneOf.forEach(add);
    if (s.anyOf) return s.anyOf.forEach(add);
    if ('const' in s) {
      out.add(typeof s.const === 'string' ? `'${s.const}'` : String(s.const));
      return;
    }
    if (s.enum) return s.enum.forEach((v) => out.add(v === null ? 'null' : `'${v}'`));
    const types = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
    if (types.length === 0) out.add('unknown');
    for (const t of types) {
      if (t === 'integer' || t === 'number') out.add('number');
      else if (t === 'object') out.add('Record');
      else out.add(t);
    }
  };
  add(schema);
  void schemas;
  return out;
}

/** How a TypeScript type may be wider than the document says and still agree: a named string
 *  enum may also admit any string (events of a newer relay), and `unknown` covers anything. */
function agrees(expected, actual) {
  if (actual.has('unknown')) return expected.has('unknown') || expected.size > 1 || expected.has('Record');
  const rest = new Set(actual);
  for (const part of expected) {
    if (!rest.delete(part)) return false;
  }
  // `EventType | string`: a named enum with a catch-all for values the document may add later.
  for (const part of rest) {
    if (part === 'string' && [...expected].some((p) => p.startsWith('Ref:'))) continue;
    return false;
  }
  return true;
}

function loadDocument() {
  const doc = JSON.parse(readFileSync(ASYNCAPI, 'utf8'));
  const messages = doc.channels.relay.messages;
  const byDirection = { send: new Set(), receive: new Set() };
  for (const op of Object.values(doc.operations)) {
    for (const m of op.messages) {
      const name = m.$ref.split('/').pop();
      byDirection[op.action].add(refName(messages[name].payload.$ref));
    }
  }
  return { doc, schemas: doc.components.schemas, byDirection };
}

/** Every difference between the document and the d.ts, as sentences (empty: they agree). */
export function differences(doc, dts) {
  const { schemas } = doc;
  const problems = [];
  // Object schemas reached from a message, and the ones they name.
  const objects = new Set([...doc.byDirection.send, ...doc.byDirection.receive]);
  const queue = [...objects];
  while (queue.length) {
    const name = queue.pop();
    const walk = (s) => {
      if (!s || typeof s !== 'object') return;
      if (s.$ref) {
        const n = refName(s.$ref);
        if (schemas[n]?.type === 'object' && !objects.has(n)) {
          objects.add(n);
          queue.push(n);
        }
      }
      for (const v of Object.values(s)) walk(v);
    };
    walk(schemas[name].properties);
  }
  for (const name of objects) {
    const schema = schemas[name];
    const fields = dts.interfaces.get(name);
    if (!fields) {
      problems.push(`${name}: in core/asyncapi.json, no interface ${name} in relay-client.d.ts`);
      continue;
    }
    const required = new Set(schema.required ?? []);
    const props = schema.properties ?? {};
    for (const [field, prop] of Object.entries(props)) {
      const ts = fields.get(field);
      if (!ts) {
        problems.push(`${name}.${field}: in core/asyncapi.json, not in relay-client.d.ts`);
        continue;
      }
      if (ts.optional === required.has(field)) {
        problems.push(
          `${name}.${field}: ${required.has(field) ? 'required' : 'optional'} in core/asyncapi.json, ${ts.optional ? 'optional' : 'required'} in relay-client.d.ts`,
        );
      }
      const want = expectedParts(prop, schemas);
      if (!agrees(want, ts.parts)) {
        problems.push(
          `${name}.${field}: ${[...want].join(' | ')} in core/asyncapi.json, ${[...ts.parts].join(' | ')} in relay-client.d.ts`,
        );
      }
    }
    for (const field of fields.keys()) {
      if (!(field in props)) problems.push(`${name}.${field}: in relay-client.d.ts, not in core/asyncapi.json`);
    }
  }
  // The unions: the server's messages and the client's.
  for (const [alias, direction] of [
    ['RelayMessage', 'send'],
    ['ClientAction', 'receive'],
  ]) {
    const members = [...(dts.aliases.get(alias) ?? [])].map((p) => p.replace('Ref:', '')).sort();
    const want = [...doc.byDirection[direction]].sort();
    if (JSON.stringify(members) !== JSON.stringify(want)) {
      problems.push(`${alias}: ${members.join(' | ')} in relay-client.d.ts, ${want.join(' | ')} in core/asyncapi.json`);
    }
  }
  // The enums.
  for (const [name, schema] of Object.entries(schemas)) {
    if (!schema.enum || schema.type !== 'string' || !dts.aliases.has(name)) continue;
    const words = [...dts.aliases.get(name)].map((p) => p.replace(/^'|'$/g, '')).sort();
    const want = [...schema.enum].sort();
    if (JSON.stringify(words) !== JSON.stringify(want)) {
      problems.push(`${name}: ${words.join(', ')} in relay-client.d.ts, ${want.join(', ')} in core/asyncapi.json`);
    }
  }
  for (const name of ['SessionStatus', 'EventType']) {
    if (!dts.aliases.has(name)) problems.push(`${name}: no type ${name} in relay-client.d.ts`);
  }
  return problems;
}

test('relay-client.d.ts agrees with core/asyncapi.json', () => {
  const doc = loadDocument();
  assert.ok(doc.byDirection.send.size >= 5, 'server messages found');
  assert.ok(doc.byDirection.receive.size >= 3, 'client messages found');
  assert.deepEqual(differences(doc, parseDts(DTS)), []);
});

test('a difference either side is found', () => {
  const doc = loadDocument();
  const dts = parseDts(DTS);
  const clone = () => JSON.parse(JSON.stringify({ ...doc, byDirection: undefined }));
  const withSets = (d) => ({ ...d, byDirection: doc.byDirection, schemas: d.schemas });

  // A field the relay starts sending, not in the types.
  const added = clone();
  added.schemas.EventMessage.properties.attempt = { type: 'integer' };
  assert.deepEqual(differences(withSets(added), dts), [
    'EventMessage.attempt: in core/asyncapi.json, not in relay-client.d.ts',
  ]);
  // A field that becomes required.
  const required = clone();
  required.schemas.EventMessage.required.push('transcript');
  assert.match(differences(withSets(required), dts).join('\n'), /EventMessage\.transcript: required/);
  // A nullable field that no longer is.
  const notNull = clone();
  notNull.schemas.SessionSnapshot.properties.status_code = { type: 'string' };
  assert.match(differences(withSets(notNull), dts).join('\n'), /SessionSnapshot\.status_code/);
  // A new status word.
  const status = clone();
  status.schemas.SessionStatus.enum.push('parked');
  assert.match(differences(withSets(status), dts).join('\n'), /SessionStatus: /);
  // A renamed literal.
  const literal = clone();
  literal.schemas.HeartbeatMessage.properties.type = { const: 'pong' };
  assert.match(differences(withSets(literal), dts).join('\n'), /HeartbeatMessage\.type/);
  // A new server message.
  const extra = { ...withSets(clone()), byDirection: { ...doc.byDirection, send: new Set([...doc.byDirection.send, 'ByeMessage']) } };
  extra.schemas.ByeMessage = { type: 'object', required: ['type'], properties: { type: { const: 'bye' } } };
  assert.match(differences(extra, dts).join('\n'), /ByeMessage: in core\/asyncapi.json, no interface/);

  // And the types side: a field dropped from an interface, one added.
  const fewer = parseDts(DTS);
  fewer.interfaces.get('ConnectedMessage').delete('bot_id');
  fewer.interfaces.get('PingAction').set('nonce', { optional: true, parts: new Set(['string']) });
  assert.deepEqual(differences(doc, fewer), [
    'ConnectedMessage.bot_id: in core/asyncapi.json, not in relay-client.d.ts',
    'PingAction.nonce: in relay-client.d.ts, not in core/asyncapi.json',
  ]);
});
