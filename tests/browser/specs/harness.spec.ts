// The harness itself: the watch the fixtures put on every test's page must
// report what a misbehaving page does, and only that. Each test drives a
// second page of its own with its own watch (the fixture's watch on `page`
// would fail the test) and checks what that watch reports.

import { expect, test } from '../harness/fixtures';
import { freePort } from '../harness/ports';
import { readQr } from '../harness/qr';
import { PageWatch } from '../harness/watch';

test('the watch reports a console error', async ({ context }) => {
  const page = await context.newPage();
  const watch = new PageWatch(page);
  await page.goto('/docs/');
  const logged = page.waitForEvent('console', (m) => m.type() === 'error');
  await page.evaluate(() => console.error('something broke'));
  await logged;
  expect(watch.finish()).toEqual([expect.stringMatching(/^console error: something broke/)]);
});

test('the watch reports an uncaught exception', async ({ context }) => {
  const page = await context.newPage();
  const watch = new PageWatch(page);
  await page.goto('/docs/');
  const thrown = page.waitForEvent('pageerror');
  await page.evaluate(() => {
    setTimeout(() => {
      throw new Error('uncaught');
    }, 0);
  });
  await thrown;
  expect(watch.finish()).toEqual([expect.stringMatching(/^uncaught exception in the page: .*uncaught/)]);
});

test('the watch reports an unexpected answer >= 400 and its console line', async ({ context }) => {
  const page = await context.newPage();
  const watch = new PageWatch(page);
  await page.goto('/docs/');
  const answered = page.waitForEvent('console', (m) => m.type() === 'error');
  await page.evaluate(() => fetch('/no-such-page'));
  await answered;
  const problems = watch.finish();
  expect(problems).toContainEqual(expect.stringMatching(/^unexpected answer 404 to GET http:.*\/no-such-page$/));
  expect(problems).toContainEqual(expect.stringMatching(/^console error: Failed to load resource: .* 404/));
  expect(problems).toHaveLength(2);
});

test('the watch reports a request that does not complete', async ({ context }) => {
  const page = await context.newPage();
  const watch = new PageWatch(page);
  await page.goto('/docs/');
  // A port that was free a moment ago: the connection is refused.
  const port = await freePort();
  const failed = page.waitForEvent('requestfailed');
  await page.evaluate((url) => fetch(url).catch(() => undefined), `http://127.0.0.1:${port}/`);
  await failed;
  expect(watch.finish()).toContainEqual(
    expect.stringMatching(new RegExp(`^request failed: GET http://127.0.0.1:${port}/: net::ERR_`)),
  );
});

test('an answer the test expects is not reported', async ({ page, watch }) => {
  watch.expectStatus(404, /\/no-such-page$/);
  await page.goto('/docs/');
  const answered = page.waitForResponse((r) => r.url().endsWith('/no-such-page'));
  await page.evaluate(() => fetch('/no-such-page'));
  expect((await answered).status()).toBe(404);
  expect(watch.finish()).toEqual([]);
});

test('readQr finds no QR code on an element without one', async ({ page }) => {
  // (The dashboard spec reads a real one: a user's subscription link.)
  await page.goto('/docs/');
  await expect(readQr(page.getByRole('heading', { level: 2 }).first())).rejects.toThrow('no QR code');
});
