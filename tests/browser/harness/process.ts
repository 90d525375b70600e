// Child processes of the suite: each in a process group of its own, so that
// ending it ends what it started too (an agent's core), and every one still
// running is killed when the test worker exits, however it exits short of
// SIGKILL.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';

const running = new Set<Child>();

process.once('exit', () => {
  for (const child of running) child.killGroup('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const child of running) child.killGroup('SIGKILL');
    process.exit(130);
  });
}

/** A spawned program; `output` keeps its last lines for error messages. */
export class Child {
  readonly proc: ChildProcess;
  readonly name: string;
  readonly exited: Promise<number | null>;
  private lines: string[] = [];
  private waiters: Array<{ match: (line: string) => boolean; resolve: (line: string) => void }> = [];
  private exitCode: number | null | undefined;

  constructor(name: string, file: string, args: string[], opts: SpawnOptions) {
    this.name = name;
    this.proc = spawn(file, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        running.delete(this);
        resolve(code);
      });
      this.proc.once('error', (e) => {
        this.lines.push(`spawn failed: ${e.message}`);
        this.exitCode = -1;
        running.delete(this);
        resolve(-1);
      });
    });
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => this.onLine(line));
    }
  }

  private onLine(line: string) {
    this.lines.push(line);
    if (this.lines.length > 200) this.lines.shift();
    if (process.env.BROWSER_TESTS_VERBOSE) console.log(`[${this.name}] ${line}`);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(line)) return true;
      w.resolve(line);
      return false;
    });
  }

  /** Whether the process has not exited. */
  get alive(): boolean {
    return this.exitCode === undefined;
  }

  /** Its last lines of output (stdout and stderr). */
  output(): string {
    return this.lines.join('\n');
  }

  /** The first line (from now on) that `match` accepts, or an error when
   * the process exits first or `timeoutMs` passes. */
  waitForLine(match: (line: string) => boolean, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${this.name}: no expected line within ${timeoutMs} ms; its output:\n${this.output()}`));
      }, timeoutMs);
      const done = (line: string) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.waiters.push({ match, resolve: done });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}) before it was ready; its output:\n${this.output()}`));
      });
    });
  }

  /** Sends `signal` to the whole process group. */
  killGroup(signal: NodeJS.Signals) {
    if (this.proc.pid === undefined) return;
    try {
      process.kill(-this.proc.pid, signal);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL of the group after `graceMs` if still alive;
   * the group is SIGKILLed in the end either way (so a core its agent left
   * behind dies too). */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.alive) {
      this.killGroup('SIGTERM');
      const timer = new Promise((resolve) => setTimeout(resolve, graceMs));
      await Promise.race([this.exited, timer]);
    }
    this.killGroup('SIGKILL');
    await this.exited;
  }
}
