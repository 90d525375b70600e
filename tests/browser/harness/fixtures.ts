// The suite's fixtures: a real manager per test (`manager`, with the page's
// and the request context's baseURL pointing at it), a watch on the page
// that fails the test on any console error, uncaught exception, failed
// request or unexpected answer >= 400 (`watch`), and screenshots of every
// page the test visits under target/browser/ (`shot` for named ones).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { test as base, type Page, type TestInfo } from '@playwright/test';

import { Manager } from './manager';
import { artifactsDir, targetDir } from './paths';
import { PageWatch } from './watch';

export interface Seed {
  /** How many users `bulk-000000` … to store before the manager starts. */
  users: number;
  /** Users numbered below this and a multiple of `enableEvery` are enabled. */
  enableBelow: number;
  enableEvery: number;
}

interface Fixtures {
  /** Users stored before the manager starts (none by default). */
  seed: Seed | undefined;
  manager: Manager;
  watch: PageWatch;
  /** Writes a full-page screenshot named `name` now. */
  shot: (name: string) => Promise<void>;
  /** Opens another page (tab) in the test's browser context, watched and
   * screenshotted like `page` (its shots in a page-N folder). */
  anotherPage: () => Promise<{ page: Page; watch: PageWatch }>;
}

/** A folder name from a test's title. */
function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);
}

/** The folder of this test's screenshots: target/browser/<file>-<title>/. */
function shotsDir(info: TestInfo): string {
  const file = path.basename(info.file).replace(/\.spec\.ts$/, '');
  const dir = path.join(artifactsDir, 'screenshots', `${file}-${slug(info.title)}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Numbered screenshots of one page: automatic ones at every load of a
 * document, named ones when the test asks. */
class Shots {
  private n = 0;
  private pending: Promise<unknown>[] = [];

  constructor(
    private readonly page: Page,
    private readonly dir: string,
  ) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    page.on('load', () => {
      const name = slug(new URL(page.url()).pathname) || 'root';
      // A page left before its shot is taken has nothing to show: ignored.
      this.pending.push(this.take(`loaded-${name}`, 5_000).catch(() => undefined));
    });
  }

  /** One at a time: two screenshots of a page at once can hang (each
   * waits for the page's fonts while the other holds the page). */
  private queue: Promise<unknown> = Promise.resolve();

  /** A screenshot named `name`, after the ones asked before it; an
   * automatic one gives up sooner (`timeoutMs`) than a named one, so a shot
   * of a page left meanwhile does not hold the next. */
  take(name: string, timeoutMs?: number): Promise<void> {
    this.n += 1;
    const file = path.join(this.dir, `${String(this.n).padStart(2, '0')}-${slug(name)}.png`);
    const shot = this.queue.then(() => this.page.screenshot({ path: file, fullPage: true, timeout: timeoutMs }));
    this.queue = shot.catch(() => undefined);
    return shot.then(() => undefined);
  }

  async settle(): Promise<void> {
    await Promise.all(this.pending);
  }
}

export const test = base.extend<Fixtures>({
  seed: [undefined, { option: true }],

  manager: async ({ seed }, use, info) => {
    let dataDir: string | undefined;
    if (seed) {
      dataDir = mkdtempSync(path.join(tmpdir(), 'xm-browser-seeded-'));
      const seeder = path.join(targetDir, 'debug', 'examples', 'seed_users');
      const out = execFileSync(
        seeder,
        [
          '--storage', `sqlite://${path.join(dataDir, 'manager.db')}`,
          '--users', String(seed.users),
          '--enable-below', String(seed.enableBelow),
          '--enable-every', String(seed.enableEvery),
        ],
        { encoding: 'utf8' },
      );
      info.annotations.push({ type: 'seed', description: out.trim() });
    }
    const manager = await Manager.start({ dataDir, startTimeoutMs: seed ? 240_000 : undefined });
    try {
      await use(manager);
    } finally {
      if (info.status !== info.expectedStatus) {
        await info.attach('manager log', { body: manager.output(), contentType: 'text/plain' });
      }
      await manager.stop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  },

  baseURL: async ({ manager }, use) => {
    await use(manager.url);
  },

  watch: [
    async ({ page }, use) => {
      const watch = new PageWatch(page);
      await use(watch);
      const problems = watch.finish();
      if (problems.length > 0) {
        throw new Error(`the page misbehaved:\n  ${problems.join('\n  ')}`);
      }
    },
    { auto: true },
  ],

  shot: [
    async ({ page }, use, info) => {
      const shots = new Shots(page, shotsDir(info));
      await use((name) => shots.take(name));
      await shots.settle();
    },
    { auto: true },
  ],

  anotherPage: async ({ context }, use, info) => {
    const opened: Array<{ watch: PageWatch; shots: Shots }> = [];
    await use(async () => {
      const page = await context.newPage();
      const dir = path.join(shotsDir(info), `page-${opened.length + 2}`);
      const watch = new PageWatch(page);
      opened.push({ watch, shots: new Shots(page, dir) });
      return { page, watch };
    });
    await Promise.all(opened.map((o) => o.shots.settle()));
    const problems = opened.flatMap((o, i) => o.watch.finish().map((p) => `page ${i + 2}: ${p}`));
    if (problems.length > 0) {
      throw new Error(`a page misbehaved:\n  ${problems.join('\n  ')}`);
    }
  },
});

export { expect } from '@playwright/test';
