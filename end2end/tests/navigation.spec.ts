import { expect, test } from './fixtures';
import { openTaskPage, submit, terminal } from './helpers';

// One app in the browser: moving between Tasks, History, a task's detail and back swaps the
// page in place. The document (and so the window) and its one live stream stay; without
// JavaScript the same links are plain links.

test('Tasks → History → a detail → Tasks keeps one document and one live stream', async ({ page }) => {
  await page.addInitScript(() => {
    const Original = window.EventSource;
    const counted = window as unknown as { streamsOpened: number };
    counted.streamsOpened = 0;
    window.EventSource = class extends Original {
      constructor(url: string | URL, init?: EventSourceInit) {
        super(url, init);
        counted.streamsOpened += 1;
      }
    };
  });
  await openTaskPage(page);
  await submit(page, 5);
  await expect(terminal(page)).toContainText('fibonacci(5)=5 in');
  await page.evaluate(() => {
    (window as unknown as { sameDocument: boolean }).sameDocument = true;
  });
  const same = () => page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument);
  const opened = () => page.evaluate(() => (window as unknown as { streamsOpened: number }).streamsOpened);
  const nav = page.getByRole('navigation', { name: 'Main' });

  await nav.getByRole('link', { name: 'History' }).click();
  await expect(page.getByRole('heading', { name: 'History' })).toBeVisible();
  await expect(page).toHaveURL(/\/history$/);
  await expect(page).toHaveTitle('History · Offload');
  await page.getByRole('table', { name: 'Your tasks' }).getByRole('link', { name: 'fibonacci(5)' }).click();
  await expect(page.getByRole('heading', { name: /^Task \d+: fibonacci\(5\)$/ })).toBeVisible();
  await nav.getByRole('link', { name: 'Tasks' }).click();
  await expect(page.getByRole('heading', { name: 'Fibonacci Tasks' })).toBeVisible();
  // The page that came back joins the stream, and is live on it.
  await expect(page.getByRole('status')).toHaveText('Live');
  expect(await same()).toBe(true);
  expect(await opened()).toBe(1);
  await submit(page, 6);
  await expect(terminal(page)).toContainText('fibonacci(6)=8 in');
  await expect(terminal(page)).toContainText('fibonacci(5)=5 in');

  // Back and forward too.
  await page.goBack();
  await expect(page.getByRole('heading', { name: /^Task \d+: fibonacci\(5\)$/ })).toBeVisible();
  await page.goForward();
  await expect(page.getByRole('heading', { name: 'Fibonacci Tasks' })).toBeVisible();
  await expect(page.getByRole('status')).toHaveText('Live');
  expect(await same()).toBe(true);
  expect(await opened()).toBe(1);
});

test('with JavaScript off the same links load each page', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/');
  const posted = await page.request.post('/api/submit', {
    form: { task: 'fibonacci', n: '7' },
    headers: { Accept: 'application/json' },
  });
  expect(posted.status()).toBe(200);
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'History' }).click();
  await expect(page.getByRole('heading', { name: 'History' })).toBeVisible();
  const row = page.getByRole('table', { name: 'Your tasks' }).getByRole('link', { name: 'fibonacci(7)' });
  await expect(row).toBeVisible();
  await row.click();
  await expect(page.getByRole('heading', { name: /^Task \d+: fibonacci\(7\)$/ })).toBeVisible();
  await nav.getByRole('link', { name: 'Tasks' }).click();
  await expect(page.getByRole('heading', { name: 'Fibonacci Tasks' })).toBeVisible();
  await context.close();
});
