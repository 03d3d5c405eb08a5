// The demo page's session details in headless Chromium, against the real `relay serve`: a v2 bot
// that is rejected, retries ("attempt 2 of 3"), times out in the waiting room and fails (the
// outcome with its error code and message); the same failure again by another path is a repeat:
// in the timeline, marked, and the status never changes for it. Each timeline row shows
// MeetingBaaS's time beside the relay's.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, sleep, uniqueBot } from './support.mjs';
import { launch } from './chromium.mjs';

describe('demo page: outcome, error, retry attempt, repeats', () => {
  let relay;
  let browser;
  let page;
  const bot = uniqueBot('outcome');
  const t0 = Date.now() - 60 * 60_000; // MeetingBaaS's clock, an hour ago: never the relay's
  const at = (minute) => new Date(t0 + minute * 60_000).toISOString();

  const signal = (code, minute, extra = {}) =>
    relay.webhook({
      event: 'bot.status_change',
      data: { bot_id: bot, event_id: null, status: { code, created_at: at(minute), ...extra } },
      extra: {},
    });
  const text = (sel) => page.textContent(sel);
  const waitStatus = (s, timeout = 5_000) =>
    page.waitForFunction((x) => document.getElementById('status').textContent === x, s, { timeout });
  const rows = () =>
    page.$$eval('#timeline li', (lis) =>
      lis
        .map((li) => ({
          seq: Number(li.dataset.seq),
          repeat: li.classList.contains('repeat'),
          text: li.textContent,
          received: li.querySelector('time.received')?.dateTime ?? null,
          mb: li.querySelector('time.mb-time')?.dateTime ?? null,
        }))
        .sort((a, b) => a.seq - b.seq),
    );

  before(async () => {
    const env = process.env.RELAY_WEB_DIR ? { RELAY_WEB_DIR: process.env.RELAY_WEB_DIR } : {};
    relay = await Relay.start({ env });
    browser = await launch();
    page = browser.page;
    await page.goto(`${relay.base}/?bot=${bot}`);
    await page.waitForSelector('#connection[data-state="open"]', { timeout: 30_000 });
  });

  after(async () => {
    await browser?.close();
    await relay?.dispose();
  });

  it('a failure signal shows its code as the (provisional) error', async () => {
    await signal('queued', 0);
    await signal('joining_call', 1);
    await signal('bot_rejected', 2);
    await waitStatus('ended');
    assert.equal(await page.isVisible('#error'), true);
    assert.equal(await text('#error-code'), 'bot_rejected');
    assert.equal(await page.getAttribute('#error', 'data-final'), 'false');
    assert.equal(await text('#outcome'), 'pending');
    assert.equal(await page.isVisible('#attempt'), false);
  });

  it('a v2 retry shows "attempt 2 of 3" while starting, and clears the error', async () => {
    await signal('retrying', 3, { attempt: 2, max: 3 });
    await waitStatus('starting');
    await page.waitForSelector('#attempt:not([hidden])', { timeout: 5_000 });
    assert.equal(await text('#attempt'), 'attempt 2 of 3');
    assert.equal(await page.isVisible('#error'), false);
    await signal('joining_call', 4);
    await waitStatus('joining');
    assert.equal(await page.isVisible('#attempt'), false, 'shown while starting only');
  });

  it('the failure outcome shows failed with its error code and message', async () => {
    await signal('waiting_room_timeout', 5);
    await waitStatus('ended');
    assert.equal(await text('#error-code'), 'waiting_room_timeout');
    await relay.webhook({
      event: 'bot.failed',
      data: {
        bot_id: bot,
        event_id: null,
        error_code: 'BOT_NOT_ACCEPTED',
        error_message: 'The host did not let the bot in',
        sent_at: at(6),
      },
      extra: {},
    });
    await waitStatus('failed');
    assert.equal(await text('#outcome'), 'failed');
    assert.equal(await text('#error-code'), 'BOT_NOT_ACCEPTED');
    assert.equal(await text('#error-message'), 'The host did not let the bot in');
    assert.equal(await page.getAttribute('#error', 'data-final'), 'true');
  });

  it('the same outcome by another path is a marked repeat and changes no status', async () => {
    // Count every change of the status text from now on.
    await page.evaluate(() => {
      window.statusChanges = [];
      new MutationObserver(() => window.statusChanges.push(document.getElementById('status').textContent)).observe(
        document.getElementById('status'),
        { childList: true, characterData: true, subtree: true },
      );
    });
    const before = (await rows()).length;
    // A v1 `failed` for the same bot: another path to the same outcome.
    await relay.webhook({ event: 'failed', data: { bot_id: bot, error: 'BOT_NOT_ACCEPTED', message: 'again' } });
    await page.waitForFunction((n) => document.querySelectorAll('#timeline li').length === n + 1, before, { timeout: 5_000 });
    await sleep(300);
    const all = await rows();
    const last = all.at(-1);
    assert.equal(last.repeat, true, 'the row is marked as a repeat');
    assert.match(last.text, /repeat/);
    assert.equal(all.filter((r) => r.repeat).length, 1, 'only the repeat is marked');
    assert.equal(await text('#status'), 'failed');
    assert.deepEqual(await page.evaluate(() => window.statusChanges), [], 'the status was not shown again');
    assert.equal(await text('#error-message'), 'The host did not let the bot in', 'the first outcome error stays');
    const tip = await page.getAttribute('#timeline li.repeat .repeat-mark', 'title');
    assert.match(tip, /evt_/, 'names the event it repeats');
  });

  it("each row shows MeetingBaaS's time beside the received time", async () => {
    const all = await rows();
    assert.equal(all.length, 8);
    // Six signals (status.created_at) and the v2 failure (sent_at), a minute apart.
    for (const [i, r] of all.slice(0, 7).entries()) {
      assert.equal(new Date(r.mb).getTime(), new Date(at(i)).getTime(), `row #${r.seq}: MeetingBaaS time`);
      assert.ok(r.received && Math.abs(new Date(r.received).getTime() - Date.now()) < 10 * 60_000, `row #${r.seq}: received now`);
    }
    assert.equal(all[6].text.includes('BOT_NOT_ACCEPTED'), true);
    assert.equal(all[7].mb, '', 'the v1 failure gives no time of its own');
    const labels = await page.$eval('#timeline li', (li) => li.querySelector('.times').textContent);
    assert.match(labels, /received .*MeetingBaaS /);
  });

  it('a refresh shows the same outcome, error and repeat', async () => {
    await page.reload();
    await page.waitForSelector('#connection[data-state="open"]', { timeout: 30_000 });
    await waitStatus('failed');
    assert.equal(await text('#error-code'), 'BOT_NOT_ACCEPTED');
    assert.equal((await rows()).filter((r) => r.repeat).length, 1);
  });

  it('logged no page errors', () => {
    assert.deepEqual(browser.problems, []);
  });
});
