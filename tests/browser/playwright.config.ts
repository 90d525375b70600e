// The browser suite: Debian's chromium (never a downloaded browser),
// headless, one worker (2 cores shared with the cargo tests' leftovers),
// output under target/browser/. Run by scripts/browser-tests.sh.

import path from 'node:path';

import { defineConfig, devices } from '@playwright/test';

import { artifactsDir, chromiumBinary } from './harness/paths';

export default defineConfig({
  testDir: './specs',
  outputDir: path.join(artifactsDir, 'results'),
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 120_000,
  expect: { timeout: 15_000 },
  reporter: [
    ['list'],
    ['json', { outputFile: path.join(artifactsDir, 'results.json') }],
    ['html', { outputFolder: path.join(artifactsDir, 'report'), open: 'never' }],
  ],
  use: {
    headless: true,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    actionTimeout: 15_000,
    navigationTimeout: 30_000,
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        launchOptions: { executablePath: chromiumBinary() },
      },
    },
  ],
});
