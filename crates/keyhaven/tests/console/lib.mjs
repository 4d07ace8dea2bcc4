// Shared helpers of the console's browser tests: a real headless Chromium (Debian's, at
// /usr/bin/chromium) driven by playwright-core, screenshots at desktop and phone widths,
// and a real Valkey client (valkey-cli) for the data.
import { chromium } from 'playwright-core';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const BASE = must('KEYHAVEN_URL');
export const TOKEN = process.env.KEYHAVEN_TOKEN || '';
const ARTIFACTS = must('KEYHAVEN_ARTIFACTS');
const VALKEY_CLI = must('VALKEY_CLI');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 360, height: 740 };

function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

export function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

/**
 * Runs `body(page, shot)` in a fresh browser; the browser is closed even when it throws.
 * Console errors of the page (a CSP violation, an uncaught exception) fail the run.
 */
export async function withBrowser(scenario, body) {
  mkdirSync(ARTIFACTS, { recursive: true });
  // This scenario's screenshots of an earlier run would mix with this run's.
  for (const f of readdirSync(ARTIFACTS)) {
    if (f.startsWith(`${scenario}-`)) rmSync(join(ARTIFACTS, f));
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const pageErrors = [];
  let page;
  try {
    const context = await browser.newContext({ viewport: DESKTOP, colorScheme: 'light' });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`uncaught: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (4|5)\d\d/.test(m.text())) {
        pageErrors.push(`console.error: ${m.text()}`);
      }
    });
    let n = 0;
    const shot = async (name) => {
      n += 1;
      const stem = `${scenario}-${String(n).padStart(2, '0')}-${name}`;
      await page.screenshot({ path: join(ARTIFACTS, `${stem}-desktop.png`), fullPage: true });
      await page.setViewportSize(PHONE);
      await page.screenshot({ path: join(ARTIFACTS, `${stem}-phone.png`), fullPage: true });
      await page.setViewportSize(DESKTOP);
      log('screenshot', stem);
    };
    await body(page, shot);
    if (pageErrors.length) throw new Error(`the page reported errors:\n${pageErrors.join('\n')}`);
  } catch (e) {
    if (page) {
      try { await page.screenshot({ path: join(ARTIFACTS, `${scenario}-FAILED.png`), fullPage: true }); } catch { /* closed */ }
    }
    if (pageErrors.length) console.error(`page errors:\n${pageErrors.join('\n')}`);
    throw e;
  } finally {
    await browser.close();
  }
}

/** Polls `f` until it returns a truthy value; throws naming `what` after `timeout` ms. */
export async function until(what, f, timeout = 10_000, every = 100) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * Runs valkey-cli against a service URI; answers its trimmed output. It throws when
 * valkey-cli fails, unless `errorReply` (then an error reply is the answer).
 */
export function valkey(uri, args, { input, errorReply = false } = {}) {
  // rediss:// (the default): verified against the project's CA, as a user would.
  const tls = uri.startsWith('rediss://') ? ['--tls', '--cacert', process.env.KEYHAVEN_CA] : [];
  const r = spawnSync(VALKEY_CLI, ['--no-auth-warning', ...tls, '-u', uri, ...args], {
    input, maxBuffer: 16 * 1024 * 1024, timeout: 60_000,
  });
  const out = `${r.stdout}${r.stderr}`.trim();
  if (r.status !== 0 && !(errorReply && out)) throw new Error(`valkey-cli ${args.join(' ')}: ${out}`);
  return errorReply ? out : r.stdout.toString().trim();
}

/** `count` SETs of `size`-byte values in Valkey's protocol, for `valkey-cli --pipe`. */
export function bulkSets(prefix, count, size) {
  const value = 'x'.repeat(size);
  const parts = [];
  for (let i = 0; i < count; i += 1) {
    const key = `${prefix}:${i}`;
    parts.push(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`);
  }
  return Buffer.from(parts.join(''));
}

/** Throws unless `cond`. */
export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Presses Tab until `locator` has focus (at most `max` times): the keyboard-only path. */
export async function tabTo(page, locator, max = 60) {
  for (let i = 0; i < max; i += 1) {
    if (await locator.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${locator}`);
}
