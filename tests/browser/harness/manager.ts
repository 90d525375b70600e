// A real `xray-manager` on 127.0.0.1 (port 0), with a settings file of its
// own in a temporary directory: SQLite storage there, a known admin token,
// a short heartbeat.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { Child } from './process';
import { workspaceBinary } from './paths';
import { waitFor } from './wait';

export interface ManagerOptions {
  /** The data directory (kept by the caller, e.g. pre-seeded); default: a
   * new temporary one, removed at stop. */
  dataDir?: string;
  /** Time between heartbeats, ms (default 500). */
  heartbeatMs?: number;
  /** Extra lines for the settings file (TOML, top-level keys). */
  extraSettings?: string;
  /** How long the start may take, ms (default 60,000). A pre-seeded
   * database is sealed under the master key at the first start: a debug
   * build takes about a minute for 100,000 users on this machine. */
  startTimeoutMs?: number;
}

/** The environment of a child, without the caller's XM_* settings (the
 * settings file alone decides). */
export function cleanEnv(prefix: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith(prefix)) env[k] = v;
  }
  return env;
}

export class Manager {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly token: string;
  readonly dataDir: string;
  readonly settingsFile: string;
  private readonly child: Child;
  private readonly ownsDir: boolean;

  private constructor(url: string, token: string, dataDir: string, settingsFile: string, child: Child, ownsDir: boolean) {
    this.url = url;
    this.token = token;
    this.dataDir = dataDir;
    this.settingsFile = settingsFile;
    this.child = child;
    this.ownsDir = ownsDir;
  }

  /** Starts the manager and waits until it listens and /health answers. */
  static async start(opts: ManagerOptions = {}): Promise<Manager> {
    const ownsDir = opts.dataDir === undefined;
    const dataDir = opts.dataDir ?? mkdtempSync(path.join(tmpdir(), 'xm-browser-'));
    // 48 hex characters: the manager wants 32+ visible characters, 8 distinct.
    const token = Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, '0')).join('');
    const settingsFile = path.join(dataDir, 'manager.toml');
    const settings = [
      'listen = "127.0.0.1:0"',
      `data_dir = ${JSON.stringify(dataDir)}`,
      `storage_url = ${JSON.stringify(`sqlite://${path.join(dataDir, 'manager.db')}`)}`,
      'cache_url = "memory"',
      `admin_token = ${JSON.stringify(token)}`,
      `heartbeat_ms = ${opts.heartbeatMs ?? 500}`,
      'node_timeout_ms = 5000',
      // The browser and the request context share one address: failures a
      // test provokes must not lock the others out.
      'admin_failure_burst = 0',
      'node_list_rate = 0',
      opts.extraSettings ?? '',
      '',
    ].join('\n');
    writeFileSync(settingsFile, settings, { mode: 0o600 });
    const child = new Child('xray-manager', workspaceBinary('xray-manager'), ['--config', settingsFile], {
      cwd: dataDir,
      env: { ...cleanEnv('XM_'), RUST_LOG: process.env.RUST_LOG ?? 'info' },
    });
    const prefix = 'xray-manager listening on ';
    let url: string;
    try {
      const line = await child.waitForLine((l) => l.startsWith(prefix), opts.startTimeoutMs ?? 60_000);
      url = `http://${line.slice(prefix.length).trim()}`;
      await waitFor('the manager to answer /health', 30_000, async () => (await fetch(`${url}/health`)).ok);
    } catch (e) {
      await child.stop(0);
      if (ownsDir) rmSync(dataDir, { recursive: true, force: true });
      throw e;
    }
    return new Manager(url, token, dataDir, settingsFile, child, ownsDir);
  }

  /** The manager's recent log lines (for a failure's message). */
  output(): string {
    return this.child.output();
  }

  /** An admin API call; answers the status and the JSON body (null when the
   * body is not JSON). */
  async api(method: 'GET' | 'POST', route: string, body?: unknown): Promise<{ status: number; body: any }> {
    const resp = await fetch(`${this.url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: resp.status, body: json };
  }

  /** Stops the manager (SIGTERM, then SIGKILL) and removes its directory
   * when it made it. */
  async stop(): Promise<void> {
    await this.child.stop();
    if (this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
