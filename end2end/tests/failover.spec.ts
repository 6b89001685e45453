import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from './fixtures';
import { DASHBOARD_PORT } from '../playwright.config';
import { startOffload, stopProcess as stop, submit } from './helpers';

// Run with the record in PostgreSQL only (`end2end/postgres.sh` names the database): two app
// servers of its own on one database, the second standing by, and Debian's HAProxy in front of
// both, on ports of their own.
const ACTIVE = DASHBOARD_PORT + 20;
const STANDBY = DASHBOARD_PORT + 22;
const BALANCER = DASHBOARD_PORT + 24;
const BASE = `http://127.0.0.1:${BALANCER}`;
const DATABASE = process.env.OFFLOAD_E2E_FAILOVER_DATABASE_URL;
// The record is the database's: the data directory holds nothing, one for both will do.
const DATA_DIR = mkdtempSync(join(tmpdir(), 'offload-failover-'));

/** An app server on `port` (its dashboard, where /health is, on the next), ready once its log says `ready`. */
function startServer(port: number, ready: string, ...extra: string[]): Promise<ChildProcess> {
  if (DATABASE === undefined) throw new Error('run through end2end/postgres.sh: it names the database');
  return startOffload(
    [
      '--addr', `127.0.0.1:${port}`,
      '--dashboard-addr', `127.0.0.1:${port + 1}`,
      '--data-dir', DATA_DIR,
      '--database', DATABASE,
      ...extra,
    ],
    ready,
  );
}

/** HAProxy round robin over both, each health-checked on its dashboard's /health. */
function startBalancer(): ChildProcess {
  const dir = mkdtempSync(join(tmpdir(), 'offload-haproxy-'));
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    [
      'defaults',
      '    mode http',
      '    timeout connect 2s',
      '    timeout client 5m',
      '    timeout server 5m',
      '    option redispatch 1',
      '    option http-no-delay',
      '    option abortonclose',
      '    retries 3',
      'frontend app',
      `    bind 127.0.0.1:${BALANCER}`,
      '    default_backend servers',
      'backend servers',
      '    balance roundrobin',
      '    option httpchk',
      '    http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost',
      '    http-check expect status 200',
      '    default-server inter 200ms fall 1 rise 1',
      `    server active 127.0.0.1:${ACTIVE} check port ${ACTIVE + 1}`,
      `    server standby 127.0.0.1:${STANDBY} check port ${STANDBY + 1}`,
      '',
    ].join('\n'),
  );
  return spawn('/usr/sbin/haproxy', ['-q', '-db', '-f', config], { stdio: 'ignore' });
}

test('the server behind HAProxy dies: the page reconnects to the standby, which runs the unfinished task again', async ({ page }) => {
  const active = await startServer(ACTIVE, 'Offload is serving');
  const standby = await startServer(STANDBY, 'standing by', '--standby');
  const balancer = startBalancer();
  try {
    await expect(async () => {
      expect((await fetch(`${BASE}/`)).status).toBe(200);
    }).toPass();
    await page.goto(BASE);
    await expect(page.getByRole('status')).toHaveText('Live');
    await submit(page, 7);
    await expect(page.getByRole('log')).toContainText('fibonacci(7)=13 in');
    await submit(page, 60);
    const row = page.getByRole('listitem').filter({ hasText: 'fibonacci(60)' });
    await expect(row).toContainText('running');

    active.kill('SIGKILL');
    await expect(page.getByRole('status')).toHaveText(/Disconnected: retrying|Connecting/);
    // The standby takes the record over and listens; the page's stream opens again through
    // HAProxy, and the page is live again with everything it had.
    await expect(page.getByRole('status')).toHaveText('Live', { timeout: 30_000 });
    await expect(page.getByRole('log')).toContainText('fibonacci(7)=13 in');
    await expect(page.getByRole('heading', { name: 'Task queue: [60]' })).toBeVisible();
    await expect(row).toContainText('running');
    await page.getByRole('button', { name: 'Cancel fibonacci(60)' }).click();
    await expect(page.getByRole('log')).toContainText(
      /fibonacci\(60\) cancelled after \d+\.\d{3}sec \(rerun after a restart\)/,
    );
    await submit(page, 8);
    await expect(page.getByRole('log')).toContainText('fibonacci(8)=21 in');
    await page.reload();
    await expect(page.getByText(/^fibonacci\(7\)=13 in/)).toHaveCount(1);
    await expect(page.getByText(/^fibonacci\(60\) cancelled/)).toHaveCount(1);
    await expect(page.getByText(/^fibonacci\(8\)=21 in/)).toHaveCount(1);
  } finally {
    await Promise.all([stop(balancer), stop(standby), stop(active)]);
  }
});
