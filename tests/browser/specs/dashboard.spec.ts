// The dashboard end to end, as an operator uses it, against the real
// manager (100,000 users stored before it starts) with a real agent and
// v2ray core: log in (a wrong token first), add a node and start it (the
// key shown once goes into the agent's settings) while the overview
// refreshes itself, create and enable a user and open its subscription QR
// code and link, disable it, search the 100,000 users, bulk-disable
// every user a filter matches (a job with its progress page), log out.

import { Agent, agentPorts } from '../harness/agent';
import { literal, logIn, openNav } from '../harness/dashboard';
import { expect, test } from '../harness/fixtures';
import { readQr } from '../harness/qr';
import { waitFor } from '../harness/wait';

// Users bulk-000000 … bulk-099999; the even ones below 1,000 enabled.
const USERS = 100_000;
test.use({ seed: { users: USERS, enableBelow: 1_000, enableEvery: 2 } });
// The timeout covers the fixtures too: seeding and the manager's first start
// (which seals the seeded secrets) take about two minutes in a debug build.
test.describe.configure({ timeout: 600_000 });

/** The share links a subscription URL serves (`?format=links`: one a line). */
async function subscriptionLinks(
  request: import('@playwright/test').APIRequestContext,
  url: string,
): Promise<{ status: number; links: string[] }> {
  const resp = await request.get(`${url}?format=links`);
  const text = await resp.text();
  return { status: resp.status(), links: text.split('\n').filter((l) => l.includes('://')) };
}

test('an operator: log in, add and start a node, a user from creation to disabling, search 100,000 users, bulk-disable, log out', async ({
  page,
  request,
  manager,
  watch,
  shot,
  anotherPage,
}) => {
  let agent: Agent | undefined;
  try {
    await test.step('without a session every page leads to the login form', async () => {
      await page.goto('/ui/nodes');
      await expect(page).toHaveURL(/\/ui\/login$/);
      await expect(page.getByRole('heading', { level: 1, name: 'Log in' })).toBeVisible();
    });

    await test.step('a wrong token is told so', async () => {
      const refused = watch.expectStatus(401, /\/ui\/login$/);
      await page.getByLabel('Token').fill(`wrong-${manager.token}`);
      await page.getByRole('button', { name: 'Log in' }).click();
      await expect(page.getByRole('alert')).toContainText('Wrong token');
      await shot('login-wrong-token');
      refused();
    });

    await test.step('log in with the admin token', async () => {
      await logIn(page, manager.token);
      const session = (await page.context().cookies()).find((c) => c.name === 'xm_session');
      expect(session, 'the session cookie').toBeDefined();
      expect(session?.httpOnly).toBe(true);
      expect(session?.sameSite).toBe('Strict');
      // The token itself is in no page.
      expect(await page.content()).not.toContain(manager.token);
      await shot('overview-empty');
    });

    const ports = await agentPorts();
    const endpoint = `http://127.0.0.1:${ports.listen}`;
    let nodeKey = '';
    await test.step('add a node: its key is shown once, with the agent settings', async () => {
      await openNav(page, 'Nodes');
      await page.getByRole('link', { name: 'Add node' }).click();
      await page.getByLabel('Endpoint').fill(endpoint);
      await page.getByRole('button', { name: 'Add', exact: true }).click();
      await expect(page.getByRole('status')).toContainText(`Node ${endpoint} is registered`);
      nodeKey = await page.getByLabel('Node key').inputValue();
      expect(nodeKey).toMatch(/^[A-Za-z0-9_-]{20,}$/);
      const settings = await page.getByRole('textbox', { name: '/etc/xray-node-agent/agent.toml' }).inputValue();
      expect(settings).toContain(`node_key = "${nodeKey}"`);
      expect(settings).toContain(`listen = "0.0.0.0:${ports.listen}"`);
      await shot('node-added');
      // The agent, with the key read from the page, and a real core.
      agent = await Agent.start(nodeKey, ports);
    });

    await test.step('the key is on no other page', async () => {
      await page.getByRole('link', { name: 'node list' }).click();
      await expect(page.getByRole('heading', { level: 1, name: 'Nodes' })).toBeVisible();
      expect(await page.content()).not.toContain(nodeKey);
      await page.getByRole('row').filter({ hasText: endpoint }).getByRole('link', { name: endpoint, exact: true }).click();
      // Stopped, or in error until a heartbeat has seen the agent up.
      await expect(page.getByText(/^(stopped|error) \(wanted: stopped\)$/)).toBeVisible();
      expect(await page.content()).not.toContain(nodeKey);
      await shot('node-page-stopped');
    });

    await test.step('start it from a second tab; the overview refreshes itself', async () => {
      await openNav(page, 'Overview');
      const overviewRow = page
        .getByRole('region', { name: 'Last answer of each node' })
        .getByRole('row')
        .filter({ hasText: endpoint });
      await expect(overviewRow).toContainText(/(stopped|error) \(wanted: stopped\)/);
      // A mark that a reload would wipe.
      await page.evaluate(() => ((window as unknown as { xmMark: boolean }).xmMark = true));

      const { page: tab } = await anotherPage();
      await tab.goto('/ui/nodes');
      const row = tab.getByRole('row').filter({ hasText: endpoint });
      await row.getByRole('button', { name: new RegExp(`^Start ${literal(endpoint)}$`) }).click();
      await expect(tab).toHaveURL(/\/ui\/nodes$/);
      await expect(async () => {
        await tab.reload();
        await expect(row).toContainText('running (wanted: running)', { timeout: 1_000 });
      }).toPass({ timeout: 60_000 });
      expect(await agent!.coreRuns()).toBe(true);

      await expect(overviewRow).toContainText('running (wanted: running)', { timeout: 60_000 });
      expect(await page.evaluate(() => (window as unknown as { xmMark?: boolean }).xmMark)).toBe(true);
      await shot('overview-node-running');
      await tab.close();
    });

    const users = page.locator('table.users tbody tr');
    let userId = '';
    await test.step('create a user: it starts disabled', async () => {
      await openNav(page, 'Users');
      await expect(users).toHaveCount(50);
      await shot('users-first-page');
      await page.getByRole('link', { name: 'New user' }).click();
      await expect(page.getByRole('heading', { level: 1, name: 'New user' })).toBeVisible();
      await page.getByLabel('Name', { exact: true }).fill('alice-e2e');
      await page.getByRole('button', { name: 'Create', exact: true }).click();
      await expect(page.getByRole('heading', { level: 1, name: 'alice-e2e' })).toBeVisible();
      const facts = page.locator('dl.facts');
      userId = (await facts.locator('dt:text-is("Id") + dd').innerText()).trim();
      expect(userId).toMatch(/^[0-9a-f-]{36}$/);
      await expect(facts.locator('dt:text-is("Status") + dd')).toHaveText('disabled');
      await shot('user-created');
    });

    let subscription = '';
    await test.step('enable it: its QR code and link serve the running node', async () => {
      await page.getByRole('button', { name: 'Enable', exact: true }).click();
      await expect(page.locator('dl.facts dt:text-is("Status") + dd')).toHaveText('enabled');
      const qr = page.getByRole('img', { name: 'Subscription QR code' });
      await expect(qr).toBeVisible();
      subscription = (await page.locator('#subscription-link').getAttribute('href')) ?? '';
      expect(subscription).toMatch(new RegExp(`^${literal(manager.url)}/sub/\\S+$`));
      expect(await page.locator('#subscription-link').innerText()).toBe(subscription);
      // What a phone reads off the QR code is that link.
      expect(await readQr(qr)).toBe(subscription);
      // The link lists the node once the heartbeat has put the user on it.
      const links = await waitFor('the subscription to list the node', 60_000, async () => {
        const answer = await subscriptionLinks(request, subscription);
        return answer.status === 200 && answer.links.length > 0 ? answer.links : undefined;
      });
      expect(links.some((l) => l.startsWith('vless://') && l.includes(`@127.0.0.1:${ports.vless}`))).toBe(true);
      await shot('user-enabled');

      // The same link in the browser: the user's page with a QR code per link.
      await page.locator('#subscription-link').click();
      await expect(page.getByRole('heading', { level: 1, name: 'alice-e2e' })).toBeVisible();
      await expect(page.locator('textarea').filter({ hasText: /^vless:\/\// }).first()).toBeVisible();
      await expect(page.locator('.qr svg').first()).toBeVisible();
      await shot('subscription-page');
      await page.goBack();
      await expect(page.getByRole('heading', { level: 1, name: 'alice-e2e' })).toBeVisible();
    });

    await test.step('disable it: its link lists no node any more', async () => {
      await page.getByRole('button', { name: 'Disable', exact: true }).click();
      await expect(page.locator('dl.facts dt:text-is("Status") + dd')).toHaveText('disabled');
      await waitFor('the subscription to list no node', 30_000, async () => {
        const answer = await subscriptionLinks(request, subscription);
        return answer.links.length === 0;
      });
      await shot('user-disabled');
    });

    /** Searches the table for `q` with the status filter `status`. */
    const filter = async (q: string, status: 'any' | 'enabled' | 'disabled') => {
      await openNav(page, 'Users');
      await page.getByLabel('Search').fill(q);
      await page.getByLabel('Status').selectOption({ label: status });
      await page.getByRole('button', { name: 'Filter', exact: true }).click();
      await expect(page).toHaveURL((url) => {
        const params = url.searchParams;
        return url.pathname === '/ui/users' && params.get('q') === q && (params.get('status') || 'any') === status;
      });
    };
    /** The names the table shows, in order (retried until they match). */
    const expectNames = (expected: string[]) => expect(users.locator('td:nth-child(2)')).toHaveText(expected);
    const numbered = (prefix: string, from: number, count: number, step = 1) =>
      Array.from({ length: count }, (_, i) => `${prefix}${String(from + i * step).padStart(6, '0')}`);

    await test.step(`search among ${USERS} users`, async () => {
      await filter('bulk-054321', 'any');
      await expectNames(['bulk-054321']);
      await shot('users-search-one');
      // 100 names start with bulk-0543: two pages of 50, in name order.
      await filter('bulk-0543', 'any');
      await expectNames(numbered('bulk-', 54_300, 50));
      await page.getByRole('link', { name: 'Next page' }).click();
      await expect(page).toHaveURL(/[?&]after=/);
      await expectNames(numbered('bulk-', 54_350, 50));
      await expect(page.getByRole('link', { name: 'Next page' })).toHaveCount(0);
      await shot('users-search-second-page');
      // An id prefix finds the user created above.
      await filter(userId.slice(0, 13), 'any');
      await expect(users.getByRole('link', { name: 'alice-e2e', exact: true })).toBeVisible();
    });

    await test.step('bulk-disable a filtered set: every matching user, as a job', async () => {
      // bulk-000000 … bulk-000999: the even 500 are enabled (ten pages of
      // the table); the action takes the whole filter result, not a page.
      await filter('bulk-000', 'enabled');
      await expectNames(numbered('bulk-', 0, 50, 2));
      await page.getByLabel('Action on every matching user').selectOption('disable');
      await page.getByRole('button', { name: /^Apply to all .*matching/ }).click();
      await expect(page).toHaveURL(/\/ui\/users\/all\?/);
      await expect(page.getByRole('status')).toHaveText('Disable all 500 users matching name or id starting with "bulk-000", status enabled?');
      await shot('users-bulk-all-confirm');
      await page.getByRole('button', { name: 'Disable all 500' }).click();
      await expect(page).toHaveURL(/\/ui\/jobs\/[0-9a-f]{32}$/);
      await expect(page.getByRole('heading', { level: 1, name: 'Bulk job' })).toBeVisible();
      // The page refreshes itself until the job has ended.
      await expect(page.getByRole('status')).toHaveText('500 disabled, 0 failed. The job has ended.', { timeout: 60_000 });
      const bar = page.getByRole('progressbar', { name: '500 of 500 users handled (finished)' });
      await expect(bar).toHaveAttribute('value', '500');
      await expect(page.getByRole('heading', { name: /^Failed/ })).toHaveCount(0);
      await shot('users-bulk-all-done');
      await filter('bulk-000', 'enabled');
      await expect(page.getByText('No user matches.')).toBeVisible();
      await filter('bulk-0000', 'disabled');
      await expectNames(numbered('bulk-', 0, 50));
      await shot('users-after-bulk');
    });

    await test.step('log out: the session is gone', async () => {
      await page.getByRole('button', { name: 'Log out' }).click();
      await expect(page).toHaveURL(/\/ui\/login$/);
      expect((await page.context().cookies()).find((c) => c.name === 'xm_session' && c.value !== '')).toBeUndefined();
      await page.goto('/ui/nodes');
      await expect(page).toHaveURL(/\/ui\/login$/);
      await shot('logged-out');
    });
  } catch (e) {
    if (agent) await test.info().attach('agent log', { body: agent.output(), contentType: 'text/plain' });
    throw e;
  } finally {
    await agent?.stop();
  }
});
