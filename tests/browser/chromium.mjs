// Headless Chromium for the browser tests: the system's /usr/bin/chromium (Debian's package,
// scripts/test-web installs it), driven by playwright-core, with a fresh profile each time.
// Not a test file itself (node --test runs *.test.mjs only).
import { rmSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { tempDir } from './support.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Chromium with a profile of its own. Returns { context, page, problems, close }: `problems`
 * collects page errors and console errors (a refused WebSocket while the relay is down is
 * expected and not one).
 */
export async function launch({ viewport = { width: 1100, height: 900 } } = {}) {
  const profile = tempDir('relay-chromium');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket connection|ERR_CONNECTION_REFUSED|Failed to load resource|Failed to fetch/.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, problems, close };
}
