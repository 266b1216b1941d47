#!/usr/bin/env node
// Play one stream in Debian's Chromium with dash.js, hls.js, Shaka Player, video.js (VHS) or the bare <video> element and
// print what happened as ONE JSON line on stdout (the caller asserts on it).
//
//   node play.mjs --player dash|hls|shaka|videojs|native --src URL [--page-origin http://127.0.0.1:PORT]
//                 [--timeout SECONDS] [--until-ended] [--min-play SECONDS] [--screenshot FILE.png]
//                 [--opened FILE] [--error-screenshot FILE.png]
//
// --screenshot saves the page once the picture has moved 1 s past the first frame (report.screenshot);
// --error-screenshot saves it when the play stops on a fatal error (report.errorScreenshot).
// --opened writes FILE (the epoch ms) when the page first asks the stream's origin for anything, so a
// caller can wait for that fact. report.playlists lists every .mpd/.m3u8 request: {sent, path, status};
// report.media every other request to the stream's origin (segments, init files, /time...): {path, status};
// report.refused every answer of the stream's origin with a status of 400 or more: {t, path, status}.
//
// Exit 0 whenever a report was produced (errors in playback are in the report);
// exit 2 on bad usage, 3 when the harness itself failed (no browser, page crashed, ...).
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Only these directories are served, next to player.html; the stream comes from elsewhere.
const LIBS = {
  dash: '/node_modules/dashjs/dist/modern/umd/dash.all.min.js',
  hls: '/node_modules/hls.js/dist/hls.min.js',
  shaka: '/node_modules/shaka-player/dist/shaka-player.compiled.js',
  videojs: '/node_modules/video.js/dist/video.min.js',
};
const PLAYERS = ['dash', 'hls', 'shaka', 'videojs', 'native'];
const SERVED_DIRS = ['/node_modules/dashjs/dist/', '/node_modules/hls.js/dist/', '/node_modules/shaka-player/dist/',
  '/node_modules/video.js/dist/'];
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.map': 'application/json', '.css': 'text/css' };

const log = (...a) => process.stderr.write(`[play.mjs] ${a.join(' ')}\n`);

function usage(msg) {
  log(msg);
  log('usage: node play.mjs --player dash|hls|shaka|videojs|native --src URL [--page-origin http://127.0.0.1:PORT]'
      + ' [--timeout SECONDS] [--until-ended] [--min-play SECONDS] [--screenshot FILE.png] [--opened FILE]'
      + ' [--error-screenshot FILE.png]');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { player: null, src: null, pageOrigin: 'http://127.0.0.1:0', timeout: 60,
    untilEnded: false, minPlay: null, screenshot: null, opened: null, errorScreenshot: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
    if (a === '--player') opts.player = val();
    else if (a === '--src') opts.src = val();
    else if (a === '--page-origin') opts.pageOrigin = val();
    else if (a === '--timeout') opts.timeout = Number(val());
    else if (a === '--min-play') opts.minPlay = Number(val());
    else if (a === '--until-ended') opts.untilEnded = true;
    else if (a === '--screenshot') opts.screenshot = val();
    else if (a === '--opened') opts.opened = val();
    else if (a === '--error-screenshot') opts.errorScreenshot = val();
    else usage(`unknown argument ${a}`);
  }
  if (!PLAYERS.includes(opts.player)) usage(`--player must be one of ${PLAYERS.join(', ')}`);
  if (!opts.src) usage('--src is required');
  if (!(opts.timeout > 0)) usage('--timeout must be a positive number of seconds');
  if (opts.minPlay !== null && !(opts.minPlay > 0)) usage('--min-play must be a positive number of seconds');
  return opts;
}

// Serve player.html and the player dist files only, on the loopback origin asked for.
function startServer(pageOrigin) {
  const origin = new URL(pageOrigin);
  if (origin.protocol !== 'http:') usage('--page-origin must be http://');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let rel = decodeURIComponent(url.pathname);
    if (rel === '/favicon.ico') { res.writeHead(204); res.end(); return; }
    if (rel === '/' || rel === '/player.html') rel = '/player.html';
    else if (!SERVED_DIRS.some((d) => rel.startsWith(d))) rel = null;
    const file = rel && path.resolve(HERE, '.' + rel);
    if (!file || !file.startsWith(HERE + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Cache-Control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(origin.port || 80), origin.hostname, () => {
      const { port } = server.address();
      resolve({ server, base: `http://${origin.hostname}:${port}` });
    });
  });
}

// Note what the page asks of the stream's origin: the first request (--opened), every playlist, every refusal,
// and how many media requests it made (`counts`: report.requests; `ranged`: those with a Range header).
function watchStream(page, opts, counts) {
  const origin = new URL(opts.src).origin;
  const playlists = [];
  const media = [];
  const refused = [];
  const byRequest = new Map();
  let opened = false;
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.origin !== origin) return;
    if (opts.opened && !opened) {
      opened = true;
      fs.writeFileSync(opts.opened, String(Date.now()));
    }
    const playlist = /\.(mpd|m3u8)$/.test(url.pathname);
    if (playlist) counts.playlists += 1;
    else if (/\.(m4s|mp4|ts)$/.test(url.pathname)) {
      counts.media += 1;
      if (req.headers().range) counts.ranged += 1;
    }
    if (playlist && playlists.length < 500) {
      const entry = { sent: Date.now(), path: url.pathname, status: null };
      playlists.push(entry);
      byRequest.set(req, entry);
    } else if (media.length < 500) {
      const entry = { path: url.pathname, status: null };
      media.push(entry);
      byRequest.set(req, entry);
    }
  });
  page.on('response', (res) => {
    const entry = byRequest.get(res.request());
    if (entry) entry.status = res.status();
    const url = new URL(res.url());
    if (url.origin === origin && res.status() >= 400 && refused.length < 100) {
      refused.push({ t: Date.now(), path: url.pathname, status: res.status() });
    }
  });
  return { playlists, media, refused };
}

function playedPastFirstFrame(report, seconds) {
  if (report.firstPlayingMs === null) return false;
  const first = report.samples.find((s) => s.t >= report.firstPlayingMs);
  return !!first && report.currentTime - first.ct >= seconds;
}

function done(report, opts, elapsed) {
  if (report.fatal) return 'fatal';
  if (report.ended) return 'ended';
  if (!opts.untilEnded && opts.minPlay !== null && report.firstPlayingMs !== null) {
    const first = report.samples.find((s) => s.t >= report.firstPlayingMs);
    if (first && report.currentTime - first.ct >= opts.minPlay) return 'min-play';
  }
  if (elapsed >= opts.timeout) return 'timeout';
  return null;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (run scripts/test.sh)`);
  const { server, base } = await startServer(opts.pageOrigin);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'team03-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--autoplay-policy=no-user-gesture-required'],
    });
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => process.stderr.write(`[browser ${m.type()}] ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[browser pageerror] ${e.message}\n`));
    let crashed = false;
    page.on('crash', () => { crashed = true; });
    const requests = { playlists: 0, media: 0, ranged: 0 };
    const { playlists, media, refused } = watchStream(page, opts, requests);

    const q = new URLSearchParams({ player: opts.player, src: opts.src });
    if (LIBS[opts.player]) q.set('lib', LIBS[opts.player]);
    const pageUrl = `${base}/player.html?${q}`;
    log(`page ${pageUrl}`);
    const started = Date.now();
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 30000 });

    let report, reason = null, shot = null;
    while (!reason) {
      if (crashed) throw new Error('the page crashed');
      await page.waitForTimeout(250);
      report = await page.evaluate(() => window.__report);
      if (!report) throw new Error('player.html set no window.__report');
      if (opts.screenshot && !shot && playedPastFirstFrame(report, 1)) {
        await page.screenshot({ path: opts.screenshot });
        shot = { path: opts.screenshot, currentTime: report.currentTime };
      }
      reason = done(report, opts, (Date.now() - started) / 1000);
    }
    let errorShot = null;
    if (opts.errorScreenshot && reason === 'fatal') {
      await page.screenshot({ path: opts.errorScreenshot });
      errorShot = { path: opts.errorScreenshot };
    }
    report = await page.evaluate(() => window.__report);
    report.screenshot = shot;
    report.errorScreenshot = errorShot;
    report.playlists = playlists;
    report.media = media;
    report.refused = refused;
    report.requests = requests;
    report.done = true;
    report.stopReason = reason;
    report.elapsed = (Date.now() - started) / 1000;
    report.pageOrigin = base;
    process.stdout.write(JSON.stringify(report) + '\n');
  } finally {
    if (context) await context.close().catch(() => {});
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  log(`harness failure: ${e && e.stack ? e.stack : e}`);
  process.exit(3);
});
