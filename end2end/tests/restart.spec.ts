import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { expect, test } from '@playwright/test';
import { DASHBOARD_PORT } from '../playwright.config';

// This journey needs a server it can kill, so it starts its own on separate ports.
const PORT = DASHBOARD_PORT + 10;
const BASE = `http://127.0.0.1:${PORT}`;

async function startServer(): Promise<ChildProcess> {
  const server = spawn(
    './target/release/offload',
    ['--addr', `127.0.0.1:${PORT}`, '--dashboard-addr', `127.0.0.1:${PORT + 1}`],
    { cwd: '..', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Ready when its log says where it serves.
  await new Promise<void>((resolve, reject) => {
    const ready = (chunk: Buffer) => chunk.toString().includes('Offload is serving') && resolve();
    server.stdout!.on('data', ready);
    server.stderr!.on('data', ready);
    server.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return server;
}

async function stop(server: ChildProcess) {
  if (server.exitCode === null) {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
}

test('a server restart: the page says it is disconnected, reconnects, and reports the lost task', async ({ page }) => {
  let server = await startServer();
  try {
    await page.goto(BASE);
    await expect(page.getByRole('status')).toHaveText('Live');
    await page.getByLabel('n', { exact: true }).fill('60');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    await expect(page.getByRole('heading', { name: 'Task queue: [60]' })).toBeVisible();

    await stop(server);
    await expect(page.getByRole('status')).toHaveText(/^Disconnected: retrying in \d+s$/);
    server = await startServer();

    await expect(page.getByRole('status')).toHaveText('Live', { timeout: 20_000 });
    // Whichever the page hears first: the old server's last word, or the new server's snapshot.
    await expect(page.getByRole('log')).toContainText(
      /fibonacci\(60\) lost: the (cluster shut down|server restarted) before it finished/,
    );
    await expect(page.getByRole('heading', { name: 'Task queue: []' })).toBeVisible();
  } finally {
    await stop(server);
  }
});
