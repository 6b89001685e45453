import { expect, test } from '@playwright/test';
import { openTaskPage, queueHeading, terminal } from './helpers';

// Journeys of the task types besides the seed's fibonacci (tasks.spec.ts has those): each
// from the picker, from its generated form, with its summary in the terminal.

test('the picker lists the task types, keeps the choice in the URL and fibonacci is the default', async ({ page }) => {
  await openTaskPage(page);
  const picker = page.getByRole('navigation', { name: 'Task types' });
  await expect(picker.getByRole('link', { name: 'Fibonacci' })).toHaveAttribute('aria-current', 'page');
  await page.goto('/?task=no-such-type');
  await expect(page.locator('#form-error')).toHaveText(/there is no task type "no-such-type"/);
  await expect(page.getByRole('heading', { name: 'Fibonacci Tasks' })).toBeVisible();
});

test('a hand-made post with an extra or wrong-typed field is refused with 400 and queues nothing', async ({ page }) => {
  await openTaskPage(page);
  const post = (form: Record<string, string>) =>
    page.request.post('/api/submit', { form, headers: { Accept: 'application/json' } });
  for (const [form, message] of [
    [{ task: 'fibonacci', n: '5', evil: '1' }, 'this task has no field "evil"'],
    [{ task: 'fibonacci', n: 'five' }, 'n must be a whole number'],
    [{ task: 'fibonacci' }, 'Enter n'],
    [{ task: 'nope', n: '5' }, 'there is no task type "nope"'],
  ] as const) {
    const response = await post(form);
    expect(response.status()).toBe(400);
    expect((await response.json()).InvalidInput.message).toContain(message);
  }
  await expect(queueHeading(page)).toHaveText('Task queue: []');
  await expect(terminal(page)).toBeEmpty();
});

test('each terminal line opens its task: input, output, times, and "Run again" queues the same input', async ({ page }) => {
  await openTaskPage(page);
  await page.getByLabel('n', { exact: true }).fill('20');
  await page.getByRole('button', { name: 'SUBMIT' }).click();
  await terminal(page).getByRole('link', { name: /^fibonacci\(20\)=6765 in/ }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(/^Task \d+: fibonacci\(20\)$/);
  await expect(page.getByLabel('Input')).toHaveText('{\n  "n": 20\n}');
  await expect(page.getByLabel('Output')).toHaveText('6765');
  await expect(page.getByRole('definition').first()).toHaveText('finished');
  await page.getByRole('button', { name: 'Run again' }).click();
  await expect(page).toHaveURL(/\?task=fibonacci$/);
  await expect(terminal(page).getByRole('link', { name: /^fibonacci\(20\)=6765 in/ })).toHaveCount(2);
});

test("another session's task is not found", async ({ page, browser }) => {
  await openTaskPage(page);
  await page.getByLabel('n', { exact: true }).fill('3');
  await page.getByRole('button', { name: 'SUBMIT' }).click();
  const link = terminal(page).getByRole('link', { name: /^fibonacci\(3\)=2 in/ });
  const href = await link.getAttribute('href');
  const other = await browser.newPage();
  const response = await other.goto(href!);
  expect(response!.status()).toBe(404);
  await expect(other.getByRole('heading', { name: 'Task not found' })).toBeVisible();
  await other.close();
});
