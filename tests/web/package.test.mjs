// The npm package @meeting-relay/client (web/client/): `npm pack` makes a tarball with exactly
// the package's files, it installs into an empty project (no registry needed: no runtime
// dependencies), and both entry points import under Node by their package names, with the
// names their .d.ts declare. React comes from this repository's node_modules, as a peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from '../browser/support.mjs';

const PKG_DIR = join(ROOT, 'web', 'client');
const pkg = JSON.parse(readFileSync(join(PKG_DIR, 'package.json'), 'utf8'));
let work;
let tarball;
let packed;
let app;

function npm(args, cwd) {
  return execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' },
    timeout: 120_000,
  });
}

before(() => {
  work = tempDir('relay-pack');
  const out = npm(['pack', '--json', '--pack-destination', work], PKG_DIR);
  packed = JSON.parse(out.slice(out.indexOf('[')))[0];
  tarball = join(work, packed.filename);
  app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-test-app', private: true, type: 'module' }));
  // --offline: a local tarball with no dependencies needs no registry. The peer (react) is
  // linked from this repository's node_modules below, as an app would have its own.
  npm(['install', '--offline', '--legacy-peer-deps', '--no-package-lock', tarball], app);
  for (const dep of ['react', 'react-dom']) {
    const link = join(app, 'node_modules', dep);
    if (!existsSync(link)) symlinkSync(join(ROOT, 'node_modules', dep), link, 'dir');
  }
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('package.json: ESM exports with types, no runtime dependencies, React >= 18 as a peer', () => {
  assert.equal(pkg.name, '@meeting-relay/client');
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.dependencies ?? {}, {}, 'no runtime dependencies');
  assert.equal(pkg.peerDependencies?.react, '>=18');
  assert.equal(pkg.exports['.'].types, './relay-client.d.ts');
  assert.equal(pkg.exports['.'].import, './relay-client.js');
  assert.equal(pkg.exports['./react'].types, './react.d.ts');
  assert.equal(pkg.exports['./react'].import, './react.js');
});

test('npm pack: exactly the package files', () => {
  const files = packed.files.map((f) => f.path).sort();
  assert.deepEqual(files, ['README.md', 'package.json', 'react.d.ts', 'react.js', 'relay-client.d.ts', 'relay-client.js']);
  assert.equal(packed.name, '@meeting-relay/client');
  assert.ok(existsSync(tarball), tarball);
});

test('installed from the tarball, both entry points import under Node, with what their .d.ts declare', () => {
  const script = `
    import * as client from '@meeting-relay/client';
    import * as react from '@meeting-relay/client/react';
    import { createElement } from 'react';
    import { renderToString } from 'react-dom/server';
    const c = new client.RelayClient({ url: 'ws://127.0.0.1:9/ws', token: 't', WebSocket: class {}, storage: null, reconnectWhenOnline: false });
    const html = renderToString(createElement(function View() {
      const v = react.useBot('bot-1', { url: 'ws://127.0.0.1:9/ws', token: 't' });
      return createElement('p', null, [v.connection, String(v.status), v.events.length].join(' '));
    }));
    console.log(JSON.stringify({
      client: Object.keys(client).sort(),
      react: Object.keys(react).sort(),
      state: c.state,
      html,
      resolved: import.meta.resolve('@meeting-relay/client/react'),
    }));
  `;
  writeFileSync(join(app, 'check.mjs'), script);
  const out = JSON.parse(execFileSync(process.execPath, ['check.mjs'], { cwd: app, encoding: 'utf8', timeout: 60_000 }));
  assert.equal(out.state, 'idle');
  assert.match(out.html, /<p>idle null 0<\/p>/, 'server rendering gives the idle state');
  assert.match(out.resolved, /node_modules\/@meeting-relay\/client\/react\.js$/, 'resolved inside the installed package');
  const installed = join(app, 'node_modules', '@meeting-relay', 'client');
  for (const [entry, dts, names] of [
    ['.', 'relay-client.d.ts', out.client],
    ['./react', 'react.d.ts', out.react],
  ]) {
    const text = readFileSync(join(installed, dts), 'utf8');
    const declared = [...text.matchAll(/^export declare (?:function|class|const) (\w+)/gm)].map((m) => m[1]);
    if (/^export default /m.test(text)) declared.push('default');
    assert.deepEqual(names, [...new Set(declared)].sort(), `${entry}: runtime exports = declared exports`);
  }
});
