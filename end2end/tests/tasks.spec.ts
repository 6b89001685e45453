import { expect, test } from './fixtures';
import { nInput, openTaskPage, postForm, queueHeading, submit, submitButton, terminal } from './helpers';

test('the seed journey: four quick submits, four lines, the input shows 4', async ({ page }) => {
  await openTaskPage(page);
  await expect(nInput(page)).toHaveValue('0');
  await expect(queueHeading(page)).toHaveText('Task queue: []');
  for (let i = 0; i < 3; i++) await submitButton(page).click();
  await nInput(page).press('Enter'); // Enter submits too
  const log = terminal(page);
  for (const [n, value] of [[0, 0], [1, 1], [2, 1], [3, 2]]) {
    await expect(log).toContainText(new RegExp(`fibonacci\\(${n}\\)=${value} in \\d+\\.\\d{3}sec`));
  }
  await expect(nInput(page)).toHaveValue('4');
  await expect(queueHeading(page)).toHaveText('Task queue: []');
});

test('a long task shows its n and advancing progress, then leaves the queue', async ({ page }) => {
  await openTaskPage(page);
  await submit(page, 45);
  await expect(queueHeading(page)).toHaveText('Task queue: [45]');
  const bar = page.getByRole('progressbar', { name: 'fibonacci(45) progress' });
  await expect(bar).toBeVisible();
  await expect(page.getByRole('listitem').filter({ hasText: 'fibonacci(45)' })).toContainText('running');
  const first = Number(await bar.getAttribute('aria-valuenow'));
  await expect
    .poll(async () => Number(await bar.getAttribute('aria-valuenow')), { timeout: 20_000 })
    .toBeGreaterThan(first);
  await expect(terminal(page)).toContainText(/fibonacci\(45\)=1134903170 in \d+\.\d{3}sec/, {
    timeout: 60_000,
  });
  await expect(queueHeading(page)).toHaveText('Task queue: []');
});

// fibonacci(60) runs for days: the queue empties only because the task stopped (how soon is a
// figure of `make bench`).
test('cancelling a running task empties the queue and says so', async ({ page }) => {
  await openTaskPage(page);
  await submit(page, 60);
  const row = page.getByRole('listitem').filter({ hasText: 'fibonacci(60)' });
  await expect(row).toContainText('running');
  await page.getByRole('button', { name: 'Cancel fibonacci(60)' }).click();
  await expect(queueHeading(page)).toHaveText('Task queue: []');
  await expect(terminal(page)).toContainText(/fibonacci\(60\) cancelled after \d+\.\d{3}sec/);
});

test('a reload keeps the queue and history, and the result still arrives', async ({ page }) => {
  await openTaskPage(page);
  await submit(page, 7);
  await expect(terminal(page)).toContainText('fibonacci(7)=13 in');
  await submit(page, 44);
  await expect(queueHeading(page)).toHaveText('Task queue: [44]');
  await page.reload();
  await expect(page.getByRole('status')).toHaveText('Live');
  await expect(queueHeading(page)).toHaveText('Task queue: [44]');
  await expect(terminal(page)).toContainText('fibonacci(7)=13 in');
  await expect(terminal(page)).toContainText(/fibonacci\(44\)=701408733 in \d+\.\d{3}sec/, {
    timeout: 60_000,
  });
  await expect(queueHeading(page)).toHaveText('Task queue: []');
});

test('two browser sessions each see only their own tasks', async ({ browser }) => {
  const [alice, bob] = await Promise.all([browser.newContext(), browser.newContext()]);
  const [a, b] = await Promise.all([alice.newPage(), bob.newPage()]);
  await openTaskPage(a);
  await openTaskPage(b);
  await submit(a, 11);
  await submit(b, 12);
  await expect(terminal(a)).toContainText('fibonacci(11)=89 in');
  await expect(terminal(b)).toContainText('fibonacci(12)=144 in');
  await submit(a, 43);
  await expect(queueHeading(a)).toHaveText('Task queue: [43]');
  await expect(queueHeading(b)).toHaveText('Task queue: []');
  await expect(terminal(a)).not.toContainText('fibonacci(12)');
  await expect(terminal(b)).not.toContainText('fibonacci(11)');
  await a.getByRole('button', { name: 'Cancel fibonacci(43)' }).click();
  await expect(queueHeading(a)).toHaveText('Task queue: []');
  await Promise.all([alice.close(), bob.close()]);
});

test('bad input shows its message and submits nothing', async ({ page }) => {
  await openTaskPage(page);
  const alert = page.locator('#n-error');
  const cases: [string, RegExp][] = [
    ['', /^Enter n: a whole number from 0 to 93\.$/],
    ['-1', /^n must be 0 or more \(got -1\)\.$/],
    ['2.5', /^n must be a whole number \(got "2\.5"\)\.$/],
    ['94', /^n must be at most 93 \(got 94\)\.$/],
  ];
  for (const [raw, message] of cases) {
    await submit(page, raw);
    await expect(alert).toHaveText(message);
    await expect(nInput(page)).toHaveAttribute('aria-invalid', 'true');
  }
  // Why 93: the field's help, from the doc comment of fibonacci's input.
  await expect(page.getByText(/fibonacci\(94\) does not fit in 64 bits.*1\.6× with every \+1/)).toBeVisible();
  await expect(queueHeading(page)).toHaveText('Task queue: []');
  await expect(terminal(page)).toBeEmpty();
  await submit(page, 5);
  await expect(alert).toBeEmpty();
  await expect(terminal(page)).toContainText('fibonacci(5)=5 in');
});

test('the server validates too, and refuses cross-site submissions', async ({ request }) => {
  const tooBig = await request.post('/api/submit', { form: { n: '94' } });
  expect(tooBig.status()).toBe(400);
  expect(await tooBig.text()).toContain('at most 93');

  const crossSite = await request.post('/api/submit', {
    form: { n: '1' },
    headers: { Origin: 'http://evil.example' },
  });
  expect(crossSite.status()).toBe(403);
  expect(await crossSite.text()).toContain('cross-site request refused');

  const sameSite = await request.post('/api/submit', {
    form: { n: '1' },
    headers: { Origin: 'http://127.0.0.1:3100' },
  });
  expect(sameSite.status()).toBe(200);
});

// The caps are the server's flags (playwright.config.ts): 3 running, 100 queued per session.
test('the quota line follows the queue, and a task held by the running cap says why', async ({ page }) => {
  await openTaskPage(page);
  const quota = page.getByLabel('Your quota');
  await expect(quota).toHaveText('0 of 3 running · 0 of 100 queued');
  // Posted one after the other (the page hears of each on its stream), so that 63 is last.
  for (const n of [60, 61, 62, 63]) await postForm(page, '/api/submit', { task: 'fibonacci', n: String(n) });
  await expect(quota).toHaveText('3 of 3 running · 1 of 100 queued');
  const held = page.getByRole('listitem').filter({ hasText: 'fibonacci(63)' });
  await expect(held).toContainText('queued');
  await expect(held).toContainText('waiting: you have 3 running, the most at once');
  for (const n of [60, 61, 62]) {
    await expect(page.getByRole('listitem').filter({ hasText: `fibonacci(${n})` })).not.toContainText('waiting');
  }
  for (const n of [63, 60, 61, 62]) await page.getByRole('button', { name: `Cancel fibonacci(${n})` }).click();
  await expect(queueHeading(page)).toHaveText('Task queue: []');
  await expect(quota).toHaveText('0 of 3 running · 0 of 100 queued');
});
