import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from '@playwright/test';

// The suite starts the release build itself, on its own port, and stops it afterwards.
const PORT = Number(process.env.OFFLOAD_E2E_PORT ?? 3100);
export const DASHBOARD_PORT = PORT + 1;
// Each run starts from an empty session database.
const DATA_DIR = mkdtempSync(join(tmpdir(), 'offload-e2e-'));

export default defineConfig({
  testDir: './tests',
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
  webServer: {
    command:
      `./target/release/offload --addr 127.0.0.1:${PORT} ` +
      `--dashboard-addr 127.0.0.1:${DASHBOARD_PORT} --dashboard-url http://127.0.0.1:${DASHBOARD_PORT}/status ` +
      `--data-dir ${DATA_DIR} --profiler`,
    cwd: '..',
    url: `http://127.0.0.1:${PORT}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'ignore',
    stderr: 'pipe',
  },
});
