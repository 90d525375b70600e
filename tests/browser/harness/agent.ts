// A real `xray-node-agent` (process backend) running a real v2ray core, on
// 127.0.0.1: its settings file, the core's base config (API, stats, a VLESS
// and a VMess inbound) and its state in a temporary directory.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { cleanEnv } from './manager';
import { accepts, freePort } from './ports';
import { Child } from './process';
import { coreBinary, workspaceBinary } from './paths';
import { waitFor } from './wait';

export interface AgentPorts {
  /** The agent's API (what the manager calls). */
  listen: number;
  /** The core's gRPC API. */
  api: number;
  vless: number;
  vmess: number;
}

/** Ports for an agent, chosen before its node is registered (the node's
 * endpoint names the agent's port). */
export async function agentPorts(): Promise<AgentPorts> {
  return { listen: await freePort(), api: await freePort(), vless: await freePort(), vmess: await freePort() };
}

/** The core's base config: what the operator writes; the agent adds users. */
function baseConfig(ports: AgentPorts): object {
  return {
    log: { loglevel: 'warning' },
    api: { tag: 'api', services: ['HandlerService', 'StatsService'] },
    stats: {},
    policy: {
      levels: { '0': { statsUserUplink: true, statsUserDownlink: true, statsUserOnline: true } },
      system: { statsInboundUplink: true, statsInboundDownlink: true },
    },
    inbounds: [
      { tag: 'api', listen: '127.0.0.1', port: ports.api, protocol: 'dokodemo-door', settings: { address: '127.0.0.1' } },
      { tag: 'vless-in', listen: '127.0.0.1', port: ports.vless, protocol: 'vless', settings: { clients: [], decryption: 'none' } },
      { tag: 'vmess-in', listen: '127.0.0.1', port: ports.vmess, protocol: 'vmess', settings: { clients: [] } },
    ],
    outbounds: [{ tag: 'direct', protocol: 'freedom', settings: {} }],
    routing: { rules: [{ type: 'field', inboundTag: ['api'], outboundTag: 'api' }] },
  };
}

export class Agent {
  readonly endpoint: string;
  readonly ports: AgentPorts;
  private readonly child: Child;
  private readonly dir: string;

  private constructor(endpoint: string, ports: AgentPorts, child: Child, dir: string) {
    this.endpoint = endpoint;
    this.ports = ports;
    this.child = child;
    this.dir = dir;
  }

  /** Writes the agent's settings with `nodeKey` (the key the manager showed
   * once) in a key file, starts it on `ports`, and waits until it listens. */
  static async start(nodeKey: string, ports: AgentPorts): Promise<Agent> {
    const dir = mkdtempSync(path.join(tmpdir(), 'xm-agent-'));
    const core = coreBinary();
    const flavor = path.basename(core).toLowerCase().includes('xray') ? 'xray' : 'v2ray';
    const base = path.join(dir, 'base.json');
    writeFileSync(base, JSON.stringify(baseConfig(ports)));
    const keyFile = path.join(dir, 'node.key');
    writeFileSync(keyFile, nodeKey, { mode: 0o600 });
    const settings = path.join(dir, 'agent.toml');
    writeFileSync(
      settings,
      [
        `listen = "127.0.0.1:${ports.listen}"`,
        `node_key_file = ${JSON.stringify(keyFile)}`,
        `flavor = "${flavor}"`,
        `user_config_template = "vless://{{.UserID}}@127.0.0.1:${ports.vless}?encryption=none&type=tcp#{{.UserName}}"`,
        'config_flush_ms = 50',
        'monitor_interval_secs = 1',
        `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
        'stats_interval_secs = 1',
        '',
        '[core]',
        `binary = ${JSON.stringify(core)}`,
        `base_config = ${JSON.stringify(base)}`,
        `generated_config = ${JSON.stringify(path.join(dir, 'core.json'))}`,
        `api_address = "127.0.0.1:${ports.api}"`,
        'start_timeout_secs = 20',
        '',
        '[service]',
        'backend = "process"',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const child = new Child('xray-node-agent', workspaceBinary('xray-node-agent'), ['--config', settings], {
      cwd: dir,
      env: { ...cleanEnv('XNA_'), RUST_LOG: process.env.RUST_LOG ?? 'info' },
    });
    try {
      await waitFor('the agent to listen', 30_000, async () => {
        if (!child.alive) throw new Error(`the agent exited; its output:\n${child.output()}`);
        return accepts(ports.listen);
      });
    } catch (e) {
      await child.stop(0);
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return new Agent(`http://127.0.0.1:${ports.listen}`, ports, child, dir);
  }

  /** Whether the core accepts connections on its VLESS inbound (it runs). */
  coreRuns(): Promise<boolean> {
    return accepts(this.ports.vless);
  }

  output(): string {
    return this.child.output();
  }

  /** SIGTERM (the agent stops its core), then SIGKILL of the agent's
   * process group (a core left behind with it). */
  async stop(): Promise<void> {
    await this.child.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
