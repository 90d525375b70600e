// The agent harness before the dashboard: a node registered through the
// admin API (Playwright's request context) with a real agent and a real
// v2ray core comes up Running, and an enabled user gets its link.

import { Agent, agentPorts } from '../harness/agent';
import { expect, test } from '../harness/fixtures';
import { waitFor } from '../harness/wait';

test('a node registered through the API runs a real core and serves a user', async ({ request, manager }) => {
  const headers = { authorization: `Bearer ${manager.token}` };
  const ports = await agentPorts();
  const created = await request.post('/node/new', { headers, data: { endpoint: `http://127.0.0.1:${ports.listen}` } });
  expect(created.status()).toBe(200);
  const { nodeID, nodeKey } = await created.json();
  expect(nodeKey).toMatch(/\S{16,}/);

  const agent = await Agent.start(nodeKey, ports);
  try {
    expect((await request.post('/node/start', { headers, data: { nodeID } })).status()).toBe(200);
    await waitFor('the node to run', 60_000, async () => {
      const { nodes } = await (await request.get('/nodes', { headers })).json();
      return nodes.find((n: { id: string }) => n.id === nodeID)?.actualStatus === 'Running';
    });
    expect(await agent.coreRuns()).toBe(true);

    const { user } = await (await request.post('/user/new', { headers, data: { userName: 'carol' } })).json();
    expect((await request.post('/user/enable', { headers, data: { userID: user.id } })).status()).toBe(200);
    const links = await waitFor('the user to get a link', 60_000, async () => {
      const resp = await request.get(`/user/${user.id}-carol/nodes`);
      const body = resp.ok() ? await resp.json() : [];
      return body.length > 0 ? body : undefined;
    });
    expect(links).toEqual([`vless://${user.id}@127.0.0.1:${ports.vless}?encryption=none&type=tcp#carol`]);
  } catch (e) {
    throw new Error(`${e}\nagent output:\n${agent.output()}`);
  } finally {
    await agent.stop();
  }
  // The agent and its core are gone.
  await waitFor('the core to stop', 10_000, async () => !(await agent.coreRuns()));
});
