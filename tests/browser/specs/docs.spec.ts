// What the manager serves today, in a real browser: the API documentation
// (Swagger UI, assets built into the binary) and the admin API through
// Playwright's request context.

import { expect, test } from '../harness/fixtures';

const METHODS = new Set(['get', 'post', 'put', 'patch', 'delete']);

test('the API documentation renders every operation with no console error', async ({ page, request, shot }) => {
  const doc = await (await request.get('/openapi.json')).json();
  const operations = Object.values(doc.paths as Record<string, Record<string, unknown>>).flatMap((item) =>
    Object.keys(item).filter((m) => METHODS.has(m)),
  ).length;
  expect(operations).toBeGreaterThan(20);

  const resp = await page.goto('/docs');
  expect(resp?.status()).toBe(200);
  expect(new URL(page.url()).pathname).toBe('/docs/');
  await expect(page.getByRole('heading', { name: doc.info.title })).toBeVisible();
  // Swagger UI draws one block per operation of the document it fetched.
  await expect(page.locator('.opblock')).toHaveCount(operations);
  await expect(page.locator('.opblock-summary-path', { hasText: /^\/user\/new$/ })).toBeVisible();
  await shot('docs');
});

test('Swagger UI calls the API with the admin token: try it out on GET /nodes', async ({ page, manager, shot }) => {
  await page.goto('/docs/');
  const op = page.locator('.opblock-get', { has: page.locator('.opblock-summary-path', { hasText: /^\/nodes$/ }) });
  await op.locator('.opblock-summary').click();
  await page.getByRole('button', { name: /Authorize/ }).first().click();
  await page.getByRole('textbox', { name: 'auth-bearer-value' }).fill(manager.token);
  await page.getByRole('button', { name: 'Apply credentials' }).click();
  await page.getByRole('button', { name: 'Close' }).click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/nodes');
  await op.getByRole('button', { name: 'Execute' }).click();
  expect((await answer).status()).toBe(200);
  const live = op.locator('.live-responses-table tbody tr.response').first();
  await expect(live.locator('.response-col_status')).toHaveText('200');
  await expect(live.locator('.response-col_description')).toContainText('"nodes"');
  await shot('docs-try-nodes');
});

test('the admin API answers through the request context', async ({ request, manager }) => {
  const auth = { authorization: `Bearer ${manager.token}` };
  expect((await request.get('/nodes')).status()).toBe(401);
  expect((await request.get('/nodes', { headers: { authorization: 'Bearer wrong-token-wrong-token-wrong-token' } })).status()).toBe(401);

  const empty = await request.get('/nodes', { headers: auth });
  expect(empty.status()).toBe(200);
  expect((await empty.json()).nodes).toEqual([]);

  const created = await request.post('/user/new', { headers: auth, data: { userName: 'alice' } });
  expect(created.status()).toBe(200);
  const { user } = await created.json();
  expect(user.name).toBe('alice');
  const id: string = user.id;
  expect(id).toMatch(/\S/);

  const fetched = await request.get(`/users/${id}`, { headers: auth });
  expect(fetched.status()).toBe(200);
  expect(JSON.stringify(await fetched.json())).toContain('"alice"');

  // Bad input: a clear error, nothing stored.
  const bad = await request.post('/user/new', { headers: auth, data: { userName: '' } });
  expect(bad.status()).toBe(400);
  const listed = await (await request.get('/users', { headers: auth })).json();
  expect(listed.users.map((u: { name: string }) => u.name)).toEqual(['alice']);
});
