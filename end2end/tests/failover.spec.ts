import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from './fixtures';
import { DASHBOARD_PORT } from '../playwright.config';
import { startOffload, stopProcess as stop, submit } from './helpers';

// Run with the record in PostgreSQL only (`end2end/postgres.sh` names the database): two app
// servers of its own on one database, the second standing by (forwarding to the first until it
// takes over), and Debian's HAProxy in front of both, round robin, on ports of their own.
const ACTIVE = DASHBOARD_PORT + 20;
const STANDBY = DASHBOARD_PORT + 22;
const BALANCER = DASHBOARD_PORT + 24;
const CLUSTER_NATS = DASHBOARD_PORT + 26;
const CLUSTER_DASHBOARD = DASHBOARD_PORT + 27;
const BASE = `http://127.0.0.1:${BALANCER}`;
const DATABASE = process.env.OFFLOAD_E2E_FAILOVER_DATABASE_URL;
// The record is the database's: the data directory holds nothing, one for both will do.
const DATA_DIR = mkdtempSync(join(tmpdir(), 'offload-failover-'));

/** An app server on `port` (its dashboard on the next), ready once its log says `ready`. */
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

/** `offload cluster`: a nats-server of its own and two worker threads. */
function startCluster(): Promise<ChildProcess> {
  return startOffload(
    [
      'cluster',
      '--nats-server', process.env.OFFLOAD_NATS_SERVER ?? 'target/nats/bin/nats-server',
      '--nats-port', `${CLUSTER_NATS}`,
      '--data-dir', join(DATA_DIR, 'cluster'),
      '--dashboard-addr', `127.0.0.1:${CLUSTER_DASHBOARD}`,
      '--workers', '2',
    ],
    'the cluster dashboard is on',
  );
}

/** HAProxy round robin over both, each health-checked on its /health, no stickiness. */
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
      `    server active 127.0.0.1:${ACTIVE} check`,
      `    server standby 127.0.0.1:${STANDBY} check`,
      '',
    ].join('\n'),
  );
  return spawn('/usr/sbin/haproxy', ['-q', '-db', '-f', config], { stdio: 'ignore' });
}

/** fibonacci(n), as the task computes it. */
function fibonacci(n: number): bigint {
  let [a, b] = [0n, 1n];
  for (let i = 0; i < n; i++) [a, b] = [b, a + b];
  return a;
}

test('one browser behind HAProxy, its requests shared by two servers with NATS workers: twenty submissions show in its queue and terminal once each, live, and both servers agree', async ({ page, context }) => {
  const cluster = await startCluster();
  // One task of a session runs at a time: the rest wait in its queue, where the page shows them.
  const flags = ['--cluster', `nats://127.0.0.1:${CLUSTER_NATS}`, '--max-running-per-session', '1'];
  const active = await startServer(ACTIVE, 'Offload is serving', ...flags);
  const standby = await startServer(STANDBY, 'standing by', '--standby', ...flags);
  const balancer = startBalancer();
  try {
    // Through HAProxy, as a script of another session: once the workers are known, it is taken.
    await expect(async () => {
      const response = await fetch(`${BASE}/api/v1/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie: `offload_session=${'5'.repeat(32)}` },
        body: JSON.stringify({ type: 'fibonacci', input: { n: 1 } }),
      });
      expect(response.status).toBe(202);
    }).toPass();
    // Which server answered each submission: the standby's forwarded answers say so (Via).
    const forwarded: boolean[] = [];
    page.on('response', (response) => {
      if (response.url().endsWith('/api/submit')) forwarded.push(response.headers()['via'] !== undefined);
    });
    await page.goto(BASE);
    await expect(page.getByRole('status')).toHaveText('Live');
    await submit(page, 60);
    const long = page.getByRole('listitem').filter({ hasText: 'fibonacci(60)' });
    await expect(long).toContainText('running');
    const waiting = Array.from({ length: 19 }, (_, i) => i + 1);
    for (const n of waiting) await submit(page, n);
    await expect(page.getByRole('heading', { name: `Task queue: [60, ${waiting.join(', ')}]` })).toBeVisible();
    await page.getByRole('button', { name: 'Cancel fibonacci(60)' }).click();
    for (const n of waiting) {
      await expect(page.getByText(new RegExp(`^fibonacci\\(${n}\\)=${fibonacci(n)} in`))).toHaveCount(1);
    }
    await expect(page.getByText(/^fibonacci\(60\) cancelled/)).toHaveCount(1);
    await expect(page.getByRole('heading', { name: 'Task queue: []' })).toBeVisible();
    expect(forwarded).toHaveLength(20);
    expect(forwarded.filter((via) => via).length, 'submissions through the standby').toBeGreaterThan(0);
    expect(forwarded.filter((via) => !via).length, 'submissions straight to the writer').toBeGreaterThan(0);

    // Asked of each server directly, as the page's session (one cookie for 127.0.0.1, any
    // port): the same history, the same task detail, the same API answers.
    const direct = [ACTIVE, STANDBY].map((port) => `http://127.0.0.1:${port}`);
    const tasks = await Promise.all(
      direct.map(async (base) => (await (await page.request.get(`${base}/api/v1/tasks?limit=50`)).json()).tasks),
    );
    expect(tasks[0]).toHaveLength(20);
    expect(tasks[1]).toEqual(tasks[0]);
    for (const base of direct) {
      const history = await (await page.request.get(`${base}/history`)).text();
      for (const task of tasks[0]) expect(history.split(`/tasks/${task.id}"`)).toHaveLength(2);
      const detail = await (await page.request.get(`${base}/tasks/${tasks[0][0].id}`)).text();
      expect(detail).toContain(`fibonacci(${tasks[0][0].input.n})`);
    }

    // A page held by the standby, a task submitted through the active server's API: it shows
    // on that page, live.
    const held = await context.newPage();
    await held.goto(direct[1]);
    await expect(held.getByRole('status')).toHaveText('Live');
    const submitted = await page.request.post(`${direct[0]}/api/v1/tasks`, {
      data: { type: 'fibonacci', input: { n: 30 } },
    });
    expect(submitted.status(), await submitted.text()).toBe(202);
    await expect(held.getByRole('log')).toContainText('fibonacci(30)=832040 in');
    await expect(page.getByRole('log')).toContainText('fibonacci(30)=832040 in');
  } finally {
    await Promise.all([stop(balancer), stop(standby), stop(active)]);
    await stop(cluster);
  }
});

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
