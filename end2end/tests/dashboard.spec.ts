import { spawnSync } from 'node:child_process';
import { expect, test, type Page } from './fixtures';
import { DASHBOARD_PORT, MODE } from '../playwright.config';
import { holdWasm, openTaskPage, submit, terminal } from './helpers';

const DASHBOARD = `http://127.0.0.1:${DASHBOARD_PORT}`;

const VIEWS = [
  'aggregate-time-per-action', 'bandwidth-types', 'bandwidth-workers', 'cluster-memory',
  'compute-time-per-key', 'cpu', 'exceptions', 'gpu-memory', 'gpu-utilization', 'graph', 'groups',
  'memory-by-key', 'nprocessing', 'occupancy', 'profile-server', 'profile', 'progress',
  'scheduler-system', 'task-stream', 'workers-cpu-timeseries', 'workers-disk-timeseries',
  'workers-disk', 'workers-memory-timeseries', 'workers-memory', 'workers-network-timeseries',
  'workers-network', 'workers',
];

/** A view has shown its content: a drawn chart, a table, or a stated empty state. */
async function expectShown(page: Page) {
  const drawn = page.locator('canvas[role=img]:not([data-drawn="0"])');
  const table = page.getByRole('table');
  const stated = page.locator('.view-empty[role=status]');
  await expect(drawn.or(table).or(stated).first()).toBeVisible();
}

test('each of the 27 views answers 200 and shows its chart or table', async ({ page }) => {
  for (const view of VIEWS) {
    const response = await page.goto(`${DASHBOARD}/individual-${view}`);
    expect(response?.status(), view).toBe(200);
    await expectShown(page);
  }
});

test('views say what they plot, or exactly why there is nothing to plot', async ({ page }) => {
  await page.goto(`${DASHBOARD}/individual-graph`);
  await expect(page.getByText(/^No graph to draw: Offload's tasks do not depend on one another/)).toBeVisible();
  await expect(page.locator('canvas')).toHaveCount(0);
  await page.goto(`${DASHBOARD}/individual-occupancy`);
  await expect(page.getByRole('img', { name: /^Occupancy: seconds each worker has spent on its current task/ })).toBeVisible();
  await page.goto(`${DASHBOARD}/individual-aggregate-time-per-action`);
  await expect(page.getByRole('note')).toHaveText(/there is no transfer time to show/);
});

// Redrawn by each pushed frame, with no reload (how often is the feed's one-second period).
test('views redraw as frames are pushed', async ({ page }) => {
  await page.goto(`${DASHBOARD}/individual-cpu`);
  const chart = page.getByRole('img', { name: /^CPU/ });
  await expect(chart).toHaveAttribute('data-drawn', /^[1-9]/);
  const first = Number(await chart.getAttribute('data-drawn'));
  await expect
    .poll(async () => Number(await chart.getAttribute('data-drawn')))
    .toBeGreaterThan(first);
});

test('task-stream, progress and workers show submitted tasks', async ({ page, context }) => {
  await openTaskPage(page);
  for (const n of [20, 21, 22]) await submit(page, n);
  await expect(terminal(page)).toContainText('fibonacci(22)=17711 in');
  // Long enough (tens of seconds) to be still running when the dashboard is looked at.
  await submit(page, 50);

  const dash = await context.newPage();
  await dash.goto(`${DASHBOARD}/individual-workers`);
  await expect(dash.getByRole('table', { name: 'Workers' })).toContainText(/fibonacci #\d+/);
  await dash.goto(`${DASHBOARD}/individual-progress`);
  const groups = dash.getByRole('table', { name: 'Task groups' });
  await expect(groups.getByRole('row', { name: /^fibonacci/ })).toBeVisible();
  await expect(dash.getByRole('img', { name: /^Progress/ })).toHaveAttribute('data-drawn', /^[1-9]/);
  await dash.goto(`${DASHBOARD}/individual-task-stream`);
  await expect(dash.getByText(/^[1-9]\d* tasks in the last minute, [1-9] running/)).toBeVisible();
  await page.getByRole('button', { name: 'Cancel fibonacci(50)' }).click();
});

test('/status shows several views over one stream', async ({ page }) => {
  const streams: string[] = [];
  page.on('request', (r) => r.url().includes('/dashboard/stream') && streams.push(r.url()));
  await page.goto(`${DASHBOARD}/status`);
  await expect(page.getByRole('heading', { name: 'Cluster status' })).toBeVisible();
  await expect(page.getByRole('status').first()).toHaveText(new RegExp(`4 workers \\(${MODE}\\)`));
  await expect(page.locator('canvas[role=img]:not([data-drawn="0"])')).toHaveCount(5);
  expect(streams).toHaveLength(1);
});

test('the plot list, unknown paths and framing rules', async ({ request }) => {
  const plots = await request.get(`${DASHBOARD}/individual-plots.json`);
  expect(plots.status()).toBe(200);
  const list = (await plots.json()) as Record<string, string>;
  expect(Object.values(list).sort()).toEqual(VIEWS.map((v) => `/individual-${v}`).sort());
  expect(list['Task Stream']).toBe('/individual-task-stream');

  expect((await request.get(`${DASHBOARD}/individual-nope`)).status()).toBe(404);
  expect((await request.get(`${DASHBOARD}/`)).status()).toBe(404);
  const view = await request.get(`${DASHBOARD}/individual-cpu`);
  expect(view.headers()['content-security-policy']).toContain('frame-ancestors');
});

test('the viewer: select changes the iframe and the URL, link opens /status', async ({ page }) => {
  await page.goto('/dashboard');
  const frame = page.getByTitle('Dashboard view');
  await expect(frame).toHaveAttribute('src', `${DASHBOARD}/individual-cpu`);
  const select = page.getByRole('listbox', { name: 'View' });
  await expect(select).toHaveAttribute('size', '25');
  await expect(select.getByRole('option')).toHaveCount(27);
  await select.selectOption('task-stream');
  await expect(page).toHaveURL(/\/dashboard\?view=task-stream$/);
  await expect(frame).toHaveAttribute('src', `${DASHBOARD}/individual-task-stream`);
  await expect(
    page.frameLocator('iframe[title="Dashboard view"]').getByRole('img', { name: /^Task stream/ }),
  ).toBeVisible();
  const link = page.getByRole('link', { name: 'Cluster dashboard' });
  await expect(link).toHaveAttribute('href', `${DASHBOARD}/status`);
  await expect(link).toHaveAttribute('target', '_blank');
  await page.getByRole('link', { name: 'Tasks' }).click();
  await expect(page.getByRole('heading', { name: 'Fibonacci Tasks' })).toBeVisible();
});

test('the viewer: a view chosen before hydration is shown once the page is hydrated', async ({ page }) => {
  const wasm = await holdWasm(page);
  await page.goto('/dashboard');
  const frame = page.getByTitle('Dashboard view');
  await page.getByRole('listbox', { name: 'View' }).selectOption('task-stream');
  // Nothing has applied it yet: the iframe still shows the default.
  await expect(frame).toHaveAttribute('src', `${DASHBOARD}/individual-cpu`);
  wasm.release();
  await expect(frame).toHaveAttribute('src', `${DASHBOARD}/individual-task-stream`);
  await expect(page).toHaveURL(/\/dashboard\?view=task-stream$/);
  // Hydrated: a later choice is applied in place too.
  await page.getByRole('listbox', { name: 'View' }).selectOption('workers');
  await expect(frame).toHaveAttribute('src', `${DASHBOARD}/individual-workers`);
  // Scripts run, so the form's button is not there.
  await expect(page.getByRole('button', { name: 'Show' })).toHaveCount(0);
});

test.describe('the viewer without JavaScript', () => {
  test.use({ javaScriptEnabled: false });
  test('the picker is a form: the chosen view shows after its request', async ({ page }) => {
    await page.goto('/dashboard');
    const frame = page.getByTitle('Dashboard view');
    await expect(frame).toHaveAttribute('src', `${DASHBOARD}/individual-cpu`);
    await page.getByRole('listbox', { name: 'View' }).selectOption('task-stream');
    await page.getByRole('button', { name: 'Show' }).click();
    await expect(page).toHaveURL(/\/dashboard\?view=task-stream$/);
    await expect(frame).toHaveAttribute('src', `${DASHBOARD}/individual-task-stream`);
    await expect(page.getByRole('listbox', { name: 'View' })).toHaveValue('task-stream');
  });
});

test('the viewer refuses a view that is not in the list', async ({ page, request }) => {
  const html = await (await request.get('/dashboard?view=%22%3E%3Cscript%3Ealert(1)%3C/script%3E')).text();
  expect(html).not.toContain('<script>alert(1)');
  await page.goto('/dashboard?view=nope');
  await expect(page.getByRole('alert')).toHaveText(/"nope" is not one of the dashboard's views; showing cpu/);
  await expect(page.getByTitle('Dashboard view')).toHaveAttribute('src', `${DASHBOARD}/individual-cpu`);
});

test('a dashboard URL that is not http(s) is refused at start-up', () => {
  const run = spawnSync('./target/release/offload', ['--addr', '127.0.0.1:0'], {
    cwd: '..',
    env: { ...process.env, OFFLOAD_DASHBOARD: 'javascript:alert(1)' },
    encoding: 'utf8',
    timeout: 10_000,
  });
  expect(run.status).toBe(1);
  expect(run.stdout + run.stderr).toContain('must start with http:// or https://');
});

test('the profile view samples busy workers while it is open and draws a flame graph', async ({ page, context }) => {
  const tasks = await context.newPage();
  await openTaskPage(tasks);
  await submit(tasks, 50);
  await page.goto(`${DASHBOARD}/individual-profile`);
  await expect(page.getByRole('img', { name: 'Profile: a flame graph of the worker threads' })).toHaveAttribute(
    'data-drawn',
    /^[1-9]/,
    { timeout: 10_000 },
  );
  await expect(page.getByText(/^[1-9]\d* samples at 97 Hz over the last 2 s/)).toBeVisible();
  await tasks.getByRole('button', { name: 'Cancel fibonacci(50)' }).click();
  await expect(tasks.getByRole('log')).toContainText('fibonacci(50) cancelled after');
});

test('the task page, the viewer and the dashboard log no console error', async ({ page }) => {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`));
  await openTaskPage(page);
  await submit(page, 5);
  await expect(terminal(page)).toContainText('fibonacci(5)=5 in');
  // The viewer frames a view: a frame-ancestors source the browser rejects would log here.
  await page.goto('/dashboard?view=task-stream');
  await expect(
    page.frameLocator('iframe[title="Dashboard view"]').getByRole('img', { name: /^Task stream/ }),
  ).toHaveAttribute('data-drawn', /^[1-9]/);
  await page.goto(`${DASHBOARD}/status`);
  await expect(page.locator('canvas[role=img]:not([data-drawn="0"])')).toHaveCount(5);
  await page.goto(`${DASHBOARD}/individual-progress`);
  await expectShown(page);
  expect(errors).toEqual([]);
});

test('on a 390 px wide phone, /status fits the screen', async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${DASHBOARD}/status`);
  await expect(page.locator('canvas[role=img]:not([data-drawn="0"])')).toHaveCount(5);
  const sideways = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  expect(sideways, 'pixels of sideways scroll').toBeLessThanOrEqual(0);
  for (const card of await page.locator('.status-cell').all()) {
    const box = await card.boundingBox();
    expect(box && box.x + box.width, 'a card ends within the screen').toBeLessThanOrEqual(390);
  }
});
