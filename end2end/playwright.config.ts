import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from '@playwright/test';

// The suite starts the release build itself, on its own port, and stops it afterwards.
const PORT = Number(process.env.OFFLOAD_E2E_PORT ?? 3100);
export const DASHBOARD_PORT = PORT + 1;
const NATS_PORT = PORT + 2;
// Each run starts from an empty session database.
const DATA_DIR = mkdtempSync(join(tmpdir(), 'offload-e2e-'));

// OFFLOAD_E2E_MODE=nats: the task-page and dashboard journeys again, with the workers and the
// dashboard in `offload cluster` (its own nats-server) and the app on `--cluster`.
// OFFLOAD_E2E_MODE=postgres: every journey, with the record in the PostgreSQL database
// OFFLOAD_E2E_DATABASE_URL names (`end2end/postgres.sh` starts one) instead of the data directory,
// and the failover journey (a standby behind HAProxy takes over from a server killed).
// OFFLOAD_E2E_MODE=leptos: the same journeys, embedded, against `cargo leptos serve --release`
// (run by `make test` only when cargo-leptos is installed).
const E2E_MODE = process.env.OFFLOAD_E2E_MODE;
export const MODE = E2E_MODE === 'nats' ? 'nats' : 'embedded';
const DATABASE = process.env.OFFLOAD_E2E_DATABASE_URL;
if (E2E_MODE === 'postgres' && DATABASE === undefined) {
  throw new Error('OFFLOAD_E2E_MODE=postgres needs OFFLOAD_E2E_DATABASE_URL: run it through end2end/postgres.sh');
}
// OFFLOAD_BENCH_TARGETS (set by offload-bench, `make bench`): the side-by-side browser benchmark
// in bench/ against the stacks offload-bench started, instead of the journeys.
const BENCH = process.env.OFFLOAD_BENCH_TARGETS !== undefined;
const NATS_SERVER = process.env.OFFLOAD_NATS_SERVER ?? 'target/nats/bin/nats-server';

const app = (extra: string, serve = './target/release/offload') => ({
  command:
    `${serve} --addr 127.0.0.1:${PORT} ` +
    `--dashboard-addr 127.0.0.1:${DASHBOARD_PORT} --dashboard-url http://127.0.0.1:${DASHBOARD_PORT}/status ` +
    `--data-dir ${DATA_DIR} --max-running-per-session 3 --max-queued-per-session 100 ${extra}`,
  cwd: '..',
  url: `http://127.0.0.1:${PORT}/`,
  reuseExistingServer: false,
  timeout: 60_000,
  stdout: 'ignore' as const,
  // Its log is on stderr: warnings and errors show beside the journeys, not every task.
  stderr: 'pipe' as const,
  env: { RUST_LOG: process.env.RUST_LOG ?? 'warn' },
});

const cluster = {
  command:
    `./target/release/offload cluster --nats-server ${NATS_SERVER} --nats-port ${NATS_PORT} ` +
    `--data-dir ${DATA_DIR}/cluster --dashboard-addr 127.0.0.1:${DASHBOARD_PORT} --profiler`,
  cwd: '..',
  url: `http://127.0.0.1:${DASHBOARD_PORT}/individual-plots.json`,
  reuseExistingServer: false,
  timeout: 60_000,
  stdout: 'ignore' as const,
  stderr: 'pipe' as const,
  env: { RUST_LOG: process.env.RUST_LOG ?? 'warn' },
};

export default defineConfig({
  testDir: BENCH ? './bench' : './tests',
  ...(BENCH ? { testMatch: '*.bench.ts' } : {}),
  ...(E2E_MODE === 'nats' || E2E_MODE === 'leptos'
    ? { testMatch: ['tasks.spec.ts', 'task-types.spec.ts', 'dashboard.spec.ts', 'batches.spec.ts'] }
    : {}),
  // Two app servers on one database, one standing by: only with the record in PostgreSQL.
  ...(E2E_MODE === 'postgres' || BENCH ? {} : { testIgnore: 'failover.spec.ts' }),
  timeout: 60_000,
  expect: { timeout: 10_000 },
  // Two cores: tests share one cluster, and timing-sensitive journeys should not fight.
  workers: 1,
  fullyParallel: false,
  forbidOnly: true,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-dev-shm-usage',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
  },
  webServer: BENCH
    ? []
    : E2E_MODE === 'nats'
      ? [cluster, app(`--cluster nats://127.0.0.1:${NATS_PORT}`)]
      : E2E_MODE === 'leptos'
        ? {
            ...app('--profiler', 'bash end2end/cargo-leptos-serve.sh'),
            // cargo-leptos builds first: give it time; and stop its server with it.
            timeout: 900_000,
            gracefulShutdown: { signal: 'SIGTERM' as const, timeout: 30_000 },
          }
        : E2E_MODE === 'postgres'
          ? app(`--profiler --database ${DATABASE}`)
          : app('--profiler'),
});
