#!/usr/bin/env node
// Drive the built dashboard (served by the real server) in Debian's Chromium, the way an operator
// would, and print ONE JSON report on stdout; tests/e2e/test_dashboard.py runs it and asserts on it.
//
//   node dashboard.mjs --base http://127.0.0.1:PORT --user NAME --password PW --out DIR --ready FILE
//                      --title T --segments N --stalled FILE2 --new-title T2 --broken-title T3 --broken-segment K
//                      --doors-title T4 --key-name K1 --spare-key K2 --audit-open FILE3 [--timeout S]
//
// 1. log in; write FILE (the caller starts uploading a recording titled T); 2. without any reload, wait
// for its row, open it, and watch its N segments' cells until every one is packaged, then (the phone
// stops uploading) its health until it says stalled, and write FILE2 (the caller then ends it); 3. play it
// (hls.js), pick a quality, hover the seek bar; 4. rename it to T2; 5. open the workers and system
// pages; 6. open T3 and retry its failed segment K until it is packaged; 7. on the keys page mint K1 (its key
// and app URL shown once, the URL copied) and K2, and revoke K2 (confirming); 8. open T4 (a video with no
// segment: nothing plays), make it private, pin it and copy a signed link; 9. on the audit page see every one
// of these actions, write FILE3 and see the caller's own action arrive without a reload; 10. delete T2 from
// the list (confirming the dialog); 11. the same pages at phone size, then log out. Screenshots of each page at
// 1366x768 and 390x844 go to DIR. Every browser console error and page error is in the report.
//
// Exit 0 whenever a report was produced (a failed step is report.failed, with its name and message);
// exit 2 on bad usage, 3 when the harness itself failed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LAPTOP = { width: 1366, height: 768 };
const PHONE = { width: 390, height: 844 };
const log = (...a) => process.stderr.write(`[dashboard.mjs] ${a.join(' ')}\n`);

function parseArgs(argv) {
  const opts = { timeout: 240 };
  const names = { '--base': 'base', '--user': 'user', '--password': 'password', '--out': 'out', '--ready': 'ready',
    '--title': 'title', '--segments': 'segments', '--stalled': 'stalled', '--new-title': 'newTitle', '--broken-title': 'brokenTitle',
    '--broken-segment': 'brokenSegment', '--doors-title': 'doorsTitle', '--key-name': 'keyName', '--spare-key': 'spareKey',
    '--audit-open': 'auditOpen', '--timeout': 'timeout' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) {
      log(`bad argument ${argv[i]}`);
      process.exit(2);
    }
    opts[key] = argv[i + 1];
  }
  for (const key of Object.values(names)) {
    if (opts[key] === undefined) {
      log(`missing ${key}`);
      process.exit(2);
    }
  }
  opts.segments = Number(opts.segments);
  opts.brokenSegment = Number(opts.brokenSegment);
  opts.timeout = Number(opts.timeout);
  return opts;
}

// Poll `fact` (an async function returning a truthy value when it holds) every 100 ms until `seconds`.
async function until(what, seconds, fact) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await fact();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

class Run {
  constructor(page, opts) {
    this.page = page;
    this.opts = opts;
    this.report = { steps: [], screenshots: [], console: [], consoleErrors: [], failed: null };
    this.t0 = Date.now();
  }

  async step(name, fn) {
    const started = Date.now();
    log(`step ${name}`);
    const result = await fn();
    this.report.steps.push({ name, ms: Date.now() - started });
    return result;
  }

  async shot(name) {
    const file = path.join(this.opts.out, `${name}.png`);
    await this.page.waitForTimeout(0);
    await this.page.screenshot({ path: file, fullPage: true });
    this.report.screenshots.push(file);
  }

  // The page has not been reloaded since mark(): client navigation only, data pushed by events.
  async mark() {
    await this.page.evaluate(() => { window.__noReload = true; });
  }

  async notReloaded() {
    return this.page.evaluate(() => window.__noReload === true);
  }

  async nav(name) {
    await this.page.getByRole('navigation', { name: 'main' }).getByRole('link', { name, exact: true }).click();
  }
}

async function login(run) {
  const { page, opts } = run;
  await page.goto(`${opts.base}/`, { waitUntil: 'load' });
  await page.getByLabel('Username').waitFor({ timeout: 15000 });
  await run.shot('login-laptop');
  await page.getByLabel('Username').fill(opts.user);
  await page.getByLabel('Password').fill(opts.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Videos', level: 1 }).waitFor({ timeout: 15000 });
  await until('the live event stream', 15, () => page.getByRole('status').filter({ hasText: /^live$/ }).count());
  run.report.loggedInPath = new URL(page.url()).pathname;
}

async function cellStates(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('tr[data-segment]')].map((tr) => ({
      segment: Number(tr.dataset.segment),
      state: tr.dataset.state,
      rungs: [...tr.querySelectorAll('[data-rung]')].map((c) => c.dataset.state),
    })),
  );
}

// Watch the recording's row appear and its cells turn packaged, without a reload.
async function watchRecording(run) {
  const { page, opts } = run;
  await run.mark();
  fs.writeFileSync(opts.ready, String(Date.now()));
  const link = page.getByRole('link', { name: opts.title, exact: true });
  await link.waitFor({ timeout: 30000 });
  run.report.rowSeenAt = Date.now();
  await link.click();
  await page.getByRole('heading', { name: opts.title, level: 1 }).waitFor({ timeout: 15000 });
  const seen = {};
  const packagedAt = {};
  await until(`all ${opts.segments} segments packaged on the video page`, 150, async () => {
    const rows = await cellStates(page);
    const now = Date.now();
    for (const r of rows) {
      (seen[r.segment] ??= new Set()).add(r.state);
      if (r.rungs.length && r.rungs.every((s) => s === 'PACKAGED') && packagedAt[r.segment] === undefined) {
        packagedAt[r.segment] = now;
      }
    }
    return rows.length === opts.segments && Object.keys(packagedAt).length === opts.segments;
  });
  run.report.statesSeen = Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, [...v]]));
  run.report.packagedSeenAt = packagedAt;
  run.report.rungsPerSegment = (await cellStates(page)).map((r) => r.rungs.length);
  // The phone stopped uploading: the reaper's video.stalled event, pushed, shows it on the open page.
  const health = page.getByLabel('ingest health');
  await until('the recording shown as stalled', 60, () => health.getByText('stalled', { exact: true }).count());
  run.report.stalledSeen = true;
  fs.writeFileSync(opts.stalled, String(Date.now()));
  run.report.watchedWithoutReload = await run.notReloaded();
}

async function play(run) {
  const { page } = run;
  const video = page.getByTestId('player');
  await video.waitFor({ timeout: 20000 });
  await page.getByRole('button', { name: 'Play' }).click();
  const position = () => video.evaluate((v) => v.currentTime);
  await until('playback past 2 s', 40, async () => (await position()) > 2);
  const quality = page.getByLabel('Quality');
  run.report.qualityOptions = await quality.locator('option').allTextContents();
  const lowest = run.report.qualityOptions.length - 1;
  await quality.selectOption({ index: lowest });
  const at = await position();
  await until('playback going on after a quality change', 30, async () => (await position()) > at + 1);
  run.report.playedTo = await position();
  run.report.qualityChosen = await quality.inputValue();
  const seek = page.getByLabel('Seek');
  await seek.scrollIntoViewIfNeeded();
  const box = await seek.boundingBox();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
  await until('a storyboard picture over the seek bar', 10, () => page.locator('.seek-preview .tile').count());
  run.report.seekPreview = true;
  await run.shot('video-laptop');
  await page.mouse.move(0, 0);
  await page.getByRole('button', { name: 'Pause' }).click();
}

async function rename(run) {
  const { page, opts } = run;
  await page.getByRole('button', { name: 'Rename', exact: true }).click();
  const input = page.getByLabel('New title');
  await input.fill(opts.newTitle);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('heading', { name: opts.newTitle, level: 1 }).waitFor({ timeout: 15000 });
}

async function workersAndSystem(run, size) {
  const { page } = run;
  await run.nav('Workers');
  await page.getByRole('heading', { name: 'Workers and jobs' }).waitFor();
  // gearmand's own count of the workers registered for each function, beside the workers' rows.
  const transcode = page.locator('.queue-server tr', { hasText: 'transcode_segment' });
  await until("gearmand's transcode_segment line", 15, () => transcode.count());
  run.report.gearmanWorkers = Number(await transcode.locator('td').nth(2).textContent());
  run.report.workersShown = await page.locator('tr[data-worker]').count();
  await run.shot(`workers-${size}`);
  await run.nav('System');
  await page.getByRole('heading', { name: 'System', level: 1 }).waitFor();
  await until('the charts', 15, () => page.locator('figure.chart svg').count());
  await run.shot(`system-${size}`);
}

async function retryBroken(run) {
  const { page, opts } = run;
  await run.nav('Videos');
  await page.getByRole('link', { name: opts.brokenTitle, exact: true }).click();
  const row = page.locator(`tr[data-segment="${opts.brokenSegment}"]`);
  await until('the failed segment', 15, async () => (await row.getAttribute('data-state')) === 'FAILED');
  await run.shot('failed-segment-laptop');
  await page.getByRole('button', { name: `Retry segment ${opts.brokenSegment}` }).click();
  const states = new Set();
  await until('the retried segment packaged', 90, async () => {
    const state = await row.getAttribute('data-state');
    states.add(state);
    return state === 'PACKAGED';
  });
  run.report.retryStates = [...states];
}

const clipboard = (page) => page.evaluate(() => navigator.clipboard.readText());

async function mintKey(run, name, { maxLive = '', quota = '', visibility = 'public' } = {}) {
  const { page } = run;
  const form = page.getByRole('form', { name: 'New key' });
  await form.getByLabel('Name').fill(name);
  await form.getByLabel('Live videos at once').fill(maxLive);
  await form.getByLabel('Quota (GB)').fill(quota);
  await form.getByLabel('Its new videos are').selectOption(visibility);
  await form.getByRole('button', { name: 'Create key' }).click();
  const minted = page.getByRole('region', { name: 'new key' });
  await minted.getByRole('heading', { name: `Key “${name}” created` }).waitFor();
  return minted;
}

// Mint a key (shown once, its app URL copied), mint a spare and revoke it through the confirmation.
async function keys(run) {
  const { page, opts } = run;
  await run.nav('Keys');
  await page.getByRole('heading', { name: 'Recording keys', level: 1 }).waitFor();
  const minted = await mintKey(run, opts.keyName, { maxLive: '2', quota: '1', visibility: 'private' });
  const key = await minted.getByLabel('Key', { exact: true }).inputValue();
  const appUrl = await minted.getByLabel('Server URL for the Android app').inputValue();
  await minted.getByRole('button', { name: 'Copy app URL' }).click();
  await minted.getByRole('button', { name: 'Copied' }).waitFor();
  run.report.key = { name: opts.keyName, key, appUrl, copied: await clipboard(page) };
  const row = page.locator(`tr[data-key="${opts.keyName}"]`);
  await row.waitFor();
  run.report.key.row = (await row.innerText()).replace(/\s+/g, ' ');
  await run.shot('keys-minted-laptop');
  await minted.getByRole('button', { name: 'Done' }).click();
  await (await mintKey(run, opts.spareKey)).getByRole('button', { name: 'Done' }).click();
  const spare = page.locator(`tr[data-key="${opts.spareKey}"]`);
  await spare.getByRole('button', { name: `Revoke ${opts.spareKey}` }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: 'Revoke', exact: true }).click();
  await spare.getByText('revoked', { exact: true }).waitFor();
  run.report.spareRevoked = true;
  await run.shot('keys-laptop');
}

// A video made private and pinned on its page, and a signed link minted and copied.
async function access(run) {
  const { page, opts } = run;
  await run.nav('Videos');
  await page.getByRole('link', { name: opts.doorsTitle, exact: true }).click();
  await page.getByRole('heading', { name: opts.doorsTitle, level: 1 }).waitFor();
  const group = page.getByRole('group', { name: 'Visibility' });
  await group.getByRole('button', { name: 'private' }).click();
  await until('the video shown private', 15, async () => (await group.getByRole('button', { name: 'private' }).getAttribute('aria-pressed')) === 'true');
  const pinned = page.getByRole('checkbox', { name: /Pinned/ });
  await pinned.click(); // it turns checked once the server answers (no optimistic state to undo)
  await until('the video shown pinned', 15, async () => (await pinned.isChecked()) && (await pinned.isEnabled()));
  await page.getByRole('button', { name: 'Copy link', exact: true }).click();
  const link = page.getByLabel('signed link');
  await link.waitFor();
  await page.getByRole('status').filter({ hasText: /^Copied\./ }).waitFor();
  run.report.link = { shown: await link.inputValue(), copied: await clipboard(page) };
  await run.shot('access-laptop');
}

// Every action so far is listed; then the caller acts (FILE3) and its row arrives over the event stream.
async function audit(run) {
  const { page, opts } = run;
  await run.mark();
  await run.nav('Audit');
  await page.getByRole('heading', { name: 'Audit', level: 1 }).waitFor();
  const kinds = async () => page.locator('tr[data-audit]').evaluateAll((rows) => rows.map((r) => r.dataset.audit));
  const wanted = ['admin.login', 'video.renamed', 'video.retried', 'key.minted', 'key.revoked', 'video.visibility', 'video.pinned', 'video.link'];
  await until('every action in the audit list', 15, async () => {
    const seen = await kinds();
    return wanted.every((k) => seen.includes(k));
  });
  run.report.auditKinds = await kinds();
  run.report.auditWho = await page.locator('tr[data-audit] th').allTextContents();
  fs.writeFileSync(opts.auditOpen, String(Date.now()));
  const cli = page.locator('tr[data-audit="video.pinned"]').filter({ has: page.getByRole('rowheader', { name: 'cli', exact: true }) });
  await cli.waitFor({ timeout: 20000 });
  run.report.auditLive = await run.notReloaded();
  run.report.auditTop = (await page.locator('tr[data-audit]').first().innerText()).replace(/\s+/g, ' ');
  await run.shot('audit-laptop');
}

async function remove(run) {
  const { page, opts } = run;
  await run.nav('Videos');
  const item = page.getByRole('listitem', { name: opts.newTitle, exact: true });
  await item.waitFor({ timeout: 15000 });
  await run.shot('videos-laptop');
  await item.getByRole('button', { name: 'Delete', exact: true }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
  await item.waitFor({ state: 'detached', timeout: 15000 });
  run.report.deleted = true;
}

async function phone(run) {
  const { page, opts } = run;
  await page.setViewportSize(PHONE);
  await run.nav('Videos');
  await page.getByRole('link', { name: opts.brokenTitle, exact: true }).waitFor();
  await run.shot('videos-phone');
  await page.getByRole('link', { name: opts.brokenTitle, exact: true }).click();
  await page.getByTestId('player').waitFor({ timeout: 20000 });
  await run.shot('video-phone');
  await workersAndSystem(run, 'phone');
  await run.nav('Keys');
  await page.locator(`tr[data-key="${opts.keyName}"]`).waitFor();
  await run.shot('keys-phone');
  await run.nav('Audit');
  await page.locator('tr[data-audit]').first().waitFor();
  await run.shot('audit-phone');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Username').waitFor();
  await run.shot('login-phone');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  fs.mkdirSync(opts.out, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'team03-dashboard-'));
  let context;
  let run;
  const watchdog = setTimeout(() => {
    log(`overall timeout ${opts.timeout}s`);
    process.exit(3);
  }, opts.timeout * 1000);
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: LAPTOP,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--autoplay-policy=no-user-gesture-required'],
    });
    // The Copy buttons write the clipboard; the report reads it back.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: opts.base });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(20000);
    run = new Run(page, opts);
    page.on('console', (m) => {
      const line = `[${m.type()}] ${m.text()} ${m.location()?.url ?? ''}`;
      process.stderr.write(`[browser] ${line}\n`);
      if (run.report.console.length < 200) run.report.console.push(line);
      if (m.type() === 'error') run.report.consoleErrors.push(line);
    });
    page.on('pageerror', (e) => run.report.consoleErrors.push(`[pageerror] ${e.message}`));
    for (const [name, fn] of [['login', login], ['watch', watchRecording], ['play', play], ['rename', rename],
      ['workers-system', (r) => workersAndSystem(r, 'laptop')], ['retry', retryBroken], ['keys', keys], ['access', access],
      ['audit', audit], ['delete', remove],
      ['phone', phone]]) {
      try {
        await run.step(name, () => fn(run));
      } catch (e) {
        run.report.failed = { step: name, message: String(e && e.message ? e.message : e).slice(0, 2000) };
        await run.shot(`failed-${name}`).catch(() => {});
        break;
      }
    }
    run.report.elapsed = (Date.now() - run.t0) / 1000;
    process.stdout.write(JSON.stringify(run.report) + '\n');
  } finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  log(`harness failure: ${e && e.stack ? e.stack : e}`);
  process.exit(3);
});
