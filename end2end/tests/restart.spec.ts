import { type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from './fixtures';
import { DASHBOARD_PORT } from '../playwright.config';
import { startOffload, stopProcess as stop, submit } from './helpers';

// This journey needs a server it can stop, so it starts its own on separate ports, with a
// data directory that outlives each server.
const PORT = DASHBOARD_PORT + 10;
const BASE = `http://127.0.0.1:${PORT}`;
const DATA_DIR = mkdtempSync(join(tmpdir(), 'offload-restart-'));

function startServer(): Promise<ChildProcess> {
  return startOffload([
    '--addr', `127.0.0.1:${PORT}`,
    '--dashboard-addr', `127.0.0.1:${PORT + 1}`,
    '--data-dir', DATA_DIR,
    '--shutdown-grace', '1',
    // The postgres run: the record outlives each server in its own database.
    ...(process.env.OFFLOAD_E2E_RESTART_DATABASE_URL
      ? ['--database', process.env.OFFLOAD_E2E_RESTART_DATABASE_URL]
      : []),
  ]);
}

test('a server restart: the page is told, reconnects, and the unfinished task runs again', async ({ page }) => {
  let server = await startServer();
  try {
    await page.goto(BASE);
    await expect(page.getByRole('status')).toHaveText('Live');
    await submit(page, 7);
    await expect(page.getByRole('log')).toContainText('fibonacci(7)=13 in');
    await submit(page, 60);
    const row = page.getByRole('listitem').filter({ hasText: 'fibonacci(60)' });
    await expect(row).toContainText('running');

    const stopped = stop(server);
    await expect(page.getByRole('status')).toHaveText('Server restarting: reconnecting…');
    await stopped;
    server = await startServer();

    await expect(page.getByRole('status')).toHaveText('Live', { timeout: 20_000 });
    // Nothing was lost: the history is there and the long task is running again.
    await expect(page.getByRole('log')).toContainText('fibonacci(7)=13 in');
    await expect(page.getByRole('heading', { name: 'Task queue: [60]' })).toBeVisible();
    await expect(row).toContainText('running');
    await page.getByRole('button', { name: 'Cancel fibonacci(60)' }).click();
    await expect(page.getByRole('log')).toContainText(
      /fibonacci\(60\) cancelled after \d+\.\d{3}sec \(rerun after a restart\)/,
    );
    await expect(page.getByRole('heading', { name: 'Task queue: []' })).toBeVisible();
    await page.reload();
    await expect(page.getByText(/^fibonacci\(7\)=13 in/)).toHaveCount(1);
    await expect(page.getByText(/^fibonacci\(60\) cancelled/)).toHaveCount(1);
  } finally {
    await stop(server);
  }
});
