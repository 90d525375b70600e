// Where things are: the repository, its target directory, the built binaries
// and the proxy core the agents run.

import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root (this file is tests/browser/harness/paths.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Cargo's target directory (CARGO_TARGET_DIR when set). */
export const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
  : path.join(repoRoot, 'target');

/** Where screenshots and Playwright's own output go. */
export const artifactsDir = path.join(targetDir, 'browser');

/** A binary of this workspace, built by `cargo build -p bins` (debug). */
export function workspaceBinary(name: string): string {
  const file = path.join(targetDir, 'debug', name);
  if (!existsSync(file)) {
    throw new Error(`${file} is not built: run \`cargo build -p bins\` (scripts/browser-tests.sh does)`);
  }
  return file;
}

/** The real proxy core: V2RAY_BIN, else `v2ray` on the PATH. */
export function coreBinary(): string {
  const fromEnv = process.env.V2RAY_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`V2RAY_BIN=${fromEnv} does not exist`);
    return fromEnv;
  }
  try {
    return execFileSync('sh', ['-c', 'command -v v2ray'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('no proxy core: set V2RAY_BIN or install v2ray (scripts/setup.sh does)');
  }
}

/** The chromium the tests drive: CHROMIUM_BIN, else Debian's. */
export function chromiumBinary(): string {
  const candidates = [process.env.CHROMIUM_BIN, '/usr/lib/chromium/chromium', '/usr/bin/chromium'];
  for (const c of candidates) {
    if (c && existsSync(c)) return c;
  }
  throw new Error("no chromium: install Debian's `chromium` (scripts/setup.sh does) or set CHROMIUM_BIN");
}
