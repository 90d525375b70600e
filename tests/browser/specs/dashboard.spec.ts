// The dashboard end to end, as an operator uses it, against the real
// manager with a real agent and v2ray core: log in (a wrong token first),
// add a node and start it (the key shown once goes into the agent's
// settings), watch the overview refresh itself, log out.

import { Agent, agentPorts } from '../harness/agent';
import { literal, logIn, openNav } from '../harness/dashboard';
import { expect, test } from '../harness/fixtures';

test('log in, add a node and start it with a real agent, log out', async ({
  page,
  manager,
  watch,
  shot,
  anotherPage,
}) => {
  test.setTimeout(180_000);
  // The dashboard's pages name no icon, so chromium asks for /favicon.ico,
  // which the manager does not serve (404). Reported to the dashboard's
  // author; expected here only until its pages link an icon of their own.
  watch.expectStatus(404, /\/favicon\.ico$/);
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

      const { page: tab, watch: tabWatch } = await anotherPage();
      tabWatch.expectStatus(404, /\/favicon\.ico$/);
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
