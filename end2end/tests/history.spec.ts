import { type Page, expect, test } from './fixtures';
import { openTaskPage, postForm as post, queueHeading } from './helpers';

// The history: every task of the session, filtered, searched and paged on the server, so the
// same links and forms work with JavaScript off.

const rows = (page: Page) => page.getByRole('table', { name: 'Your tasks' }).locator('tbody tr');

test('sixty tasks of three types and outcomes: filters, search and pages find exactly the right ones', async ({
  page,
  browser,
}) => {
  test.setTimeout(120_000);
  await openTaskPage(page);
  // 20 fibonacci and 20 primes that finish, 10 hash chains that finish, 10 long fibonacci
  // that are cancelled.
  const cancelled: number[] = [];
  for (let i = 0; i < 20; i++) await post(page, '/api/submit', { task: 'fibonacci', n: String(i) });
  for (let i = 0; i < 20; i++) await post(page, '/api/submit', { task: 'primes', n: String(100 + i) });
  for (let i = 0; i < 10; i++) {
    await post(page, '/api/submit', { task: 'hash-chain', text: `word${i}`, algorithm: 'sha256', rounds: '1' });
  }
  for (let i = 0; i < 10; i++) {
    const submitted = await post(page, '/api/submit', { task: 'fibonacci', n: String(80 + i) });
    cancelled.push(submitted.task.id);
  }
  for (const id of cancelled) await post(page, '/api/cancel', { id: String(id) });
  await expect(queueHeading(page)).toHaveText('Task queue: []', { timeout: 60_000 });

  await page.getByRole('link', { name: 'History' }).click();
  await expect(page.getByRole('heading', { name: 'History' })).toBeVisible();
  await expect(rows(page)).toHaveCount(50);
  // Newest first: the last cancelled fibonacci leads.
  await expect(rows(page).first()).toContainText('fibonacci(89)');
  const firstPage = await rows(page).locator('a').allTextContents();

  // A new task arrives meanwhile: the next page is still the ten oldest.
  await post(page, '/api/submit', { task: 'fibonacci', n: '3' });
  await page.getByRole('link', { name: 'Older tasks' }).click();
  await expect(rows(page)).toHaveCount(10);
  const secondPage = await rows(page).locator('a').allTextContents();
  expect(secondPage).toEqual(Array.from({ length: 10 }, (_, i) => `fibonacci(${9 - i})`));
  expect(firstPage.filter((call) => secondPage.includes(call))).toEqual([]);
  await expect(page.getByRole('link', { name: 'Older tasks' })).toHaveCount(0);

  const filter = async (target: Page, type: string, outcome: string, text: string) => {
    await target.goto('/history');
    await target.getByLabel('Type').selectOption(type);
    await target.getByLabel('Outcome').selectOption(outcome);
    await target.getByLabel('Search').fill(text);
    await target.getByRole('button', { name: 'Filter' }).click();
  };
  // The same form, with JavaScript and without.
  const noScript = await browser.newContext({
    javaScriptEnabled: false,
    storageState: await page.context().storageState(),
  });
  for (const target of [page, await noScript.newPage()]) {
    await filter(target, 'primes', '', '');
    await expect(rows(target)).toHaveCount(20);
    await expect(rows(target).filter({ hasNotText: 'primes(' })).toHaveCount(0);

    await filter(target, '', 'cancelled', '');
    await expect(rows(target)).toHaveCount(10);
    await expect(rows(target).filter({ hasText: /fibonacci\(8\d\)/ })).toHaveCount(10);

    await filter(target, 'hash-chain', 'finished', 'word7');
    await expect(rows(target)).toHaveCount(1);
    await expect(rows(target)).toContainText('word7');

    // The result of fibonacci(19), found in its line.
    await filter(target, 'fibonacci', 'finished', '4181');
    await expect(rows(target)).toHaveCount(1);
    await expect(rows(target)).toContainText('fibonacci(19)');
  }
  await noScript.close();

  // A row opens its detail; "Run again" queues the same input.
  await filter(page, 'hash-chain', '', 'word3');
  await rows(page).getByRole('link').click();
  await expect(page.getByRole('heading', { name: /^Task \d+: hash-chain/ })).toBeVisible();
  await expect(page.getByText('Attempts')).toBeVisible();
  await expect(page.getByLabel('Command line')).toHaveText(/--wait hash-chain .*text=word3/);
  await page.getByRole('button', { name: 'Run again' }).click();
  await expect(page.getByRole('log')).toContainText(/sha256×1\("word3"\)=/);

  // Nonsense in the address: a message, not a crash.
  const bad = await page.goto('/history?outcome=exploded');
  expect(bad?.status()).toBe(400);
  await expect(page.getByRole('alert')).toContainText('there is no outcome "exploded"');
});

test('once hydrated, the first page offers the tasks submitted or ended since it was loaded', async ({ page }) => {
  await openTaskPage(page);
  await post(page, '/api/submit', { task: 'fibonacci', n: '11' });
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'History' }).click();
  await expect(rows(page)).toHaveCount(1);
  const newer = page.getByRole('link', { name: /newer task/ });
  await expect(newer).toHaveCount(0);
  // Submitted elsewhere (another tab, a script): the page hears of it on the live stream.
  await post(page, '/api/submit', { task: 'fibonacci', n: '12' });
  await post(page, '/api/submit', { task: 'primes', n: '100' });
  await expect(newer).toHaveText('2 newer tasks since this page was loaded: show');
  await newer.click();
  await expect(rows(page)).toHaveCount(3);
  await expect(rows(page).first()).toContainText('primes(100)');
  await expect(newer).toHaveCount(0);
});

test('a long unbroken result wraps: the history fits a 1,280 and a 390 pixel window', async ({ page }) => {
  await openTaskPage(page);
  // A text as long as the form takes, its digest and the call both single unbroken runs.
  const text = 'x'.repeat(300);
  await post(page, '/api/submit', { task: 'hash-chain', text, algorithm: 'blake3', rounds: '1' });
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto('/history?type=hash-chain');
    await expect(rows(page).first()).toContainText(/blake3×1\("x+…?"\)=[0-9a-f]{64}/);
    const sideways = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(sideways, `pixels of sideways scroll at ${width} px`).toBeLessThanOrEqual(0);
  }
});
