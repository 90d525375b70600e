// The dashboard at phone width (390 px): a page fits the screen's width
// (wide tables scroll inside their own box, the page itself never scrolls
// sideways); each page is screenshotted.

import { logIn } from '../harness/dashboard';
import { expect, test } from '../harness/fixtures';

// A phone's width without isMobile: a mobile viewport widens itself to the
// content (a page too wide would then fit by zooming out, and pass).
const WIDTH = 390;
test.use({ viewport: { width: WIDTH, height: 844 } });

test('the dashboard pages fit a phone screen', async ({ page, request, manager, shot }) => {
  const headers = { authorization: `Bearer ${manager.token}` };
  const endpoint = 'http://127.0.0.1:9/a-rather-long-node-endpoint';
  const node = await (await request.post('/node/new', { headers, data: { endpoint } })).json();
  const { user } = await (await request.post('/user/new', { headers, data: { userName: 'a-user-with-a-rather-long-name' } })).json();

  await page.goto('/ui/login');
  await shot('login');
  await logIn(page, manager.token);
  const pages: Array<[string, string, boolean]> = [
    ['overview', '/ui/', true],
    ['nodes', '/ui/nodes', true],
    ['add-node', '/ui/nodes/new', true],
    ['node', `/ui/nodes/${node.nodeID}`, true],
    ['new-user', '/ui/users/new', true],
    // The users table's row of bulk buttons wraps; a user's subscription
    // link breaks anywhere (its random token may have no hyphen).
    ['users', '/ui/users', true],
    ['user', `/ui/users/${user.id}`, true],
  ];
  for (const [name, path, checked] of pages) {
    await page.goto(path);
    await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
    if (checked) {
      const overflow = (await page.evaluate(() => document.documentElement.scrollWidth)) - WIDTH;
      expect(overflow, `${path} scrolls sideways by ${overflow} px`).toBeLessThanOrEqual(0);
    }
    await shot(name);
  }
});
