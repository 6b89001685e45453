import { type Page, expect, test } from './fixtures';

// Batches from the task page's sweep form, followed on the batch's own page: server-rendered,
// so the same journey holds with JavaScript off.

const members = (page: Page) =>
  page.getByRole('table', { name: 'Members of the batch' }).locator('tbody tr');

/// Submits a batch from the task page's sweep form; with `members`, counts them first (the
/// server counts and checks them; the form comes back as it was).
async function sweep(page: Page, task: string, fields: Record<string, string>, members?: number) {
  await page.goto(`/?task=${task}`);
  await page.getByText('Sweep: many inputs as one batch').click();
  const form = page.getByRole('form', { name: 'A batch' });
  for (const [label, value] of Object.entries(fields)) {
    await form.getByLabel(`${label} (sweep)`, { exact: true }).fill(value);
  }
  if (members !== undefined) {
    await form.getByRole('button', { name: 'Count members' }).click();
    await expect(form.getByRole('status')).toHaveText(`${members} members: SUBMIT BATCH to run them`);
    for (const [label, value] of Object.entries(fields)) {
      await expect(form.getByLabel(`${label} (sweep)`, { exact: true })).toHaveValue(value);
    }
  }
  await form.getByRole('button', { name: 'SUBMIT BATCH' }).click();
  await expect(page).toHaveURL(/\/batches\/\d+$/);
}

for (const javaScriptEnabled of [true, false]) {
  test(`fibonacci over n = 20..40: one bar to 100 %, 21 rows, a point each and the CSV (JavaScript ${javaScriptEnabled ? 'on' : 'off'})`, async ({
    browser,
  }) => {
    const context = await browser.newContext({ javaScriptEnabled });
    const page = await context.newPage();
    await sweep(page, 'fibonacci', { n: '20..40' }, 21);
    await expect(page.getByRole('heading', { name: /^Batch \d+: Fibonacci × 21$/ })).toBeVisible();
    // The page reloads itself while the batch runs.
    await expect(page.getByRole('list', { name: 'Members' })).toHaveText('21 finished', {
      timeout: 30_000,
    });
    await expect(page.getByRole('progressbar', { name: 'Batch progress' })).toHaveAttribute('value', '1');
    await expect(members(page)).toHaveCount(21);
    await expect(members(page).nth(0)).toContainText('6765');
    await expect(members(page).nth(20)).toContainText('102334155');
    await expect(page.getByRole('img', { name: 'output against n, 21 points' })).toBeVisible();
    await expect(page.locator('.batch-plot circle')).toHaveCount(21);

    // Sorted by n, largest first, from the column's header.
    const header = page.getByRole('columnheader', { name: 'n', exact: true });
    await page.getByRole('link', { name: 'n', exact: true }).click();
    await expect(header).toHaveAttribute('aria-sort', 'ascending');
    await page.getByRole('link', { name: 'n', exact: true }).click();
    await expect(header).toHaveAttribute('aria-sort', 'descending');
    await expect(members(page).nth(0)).toContainText('102334155');

    const href = await page.getByRole('link', { name: 'Download CSV' }).getAttribute('href');
    const csv = await (await page.request.get(href!)).text();
    const lines = csv.trim().split('\r\n');
    expect(lines[0]).toBe('index,task,outcome,n,output,seconds,reused_from');
    expect(lines).toHaveLength(22);
    const fibonacci = (n: number): number => (n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2));
    expect(lines.slice(1).map((line) => line.split(',')[4])).toEqual(
      Array.from({ length: 21 }, (_, i) => String(fibonacci(20 + i))),
    );

    // Its members in the history.
    await page.getByRole('link', { name: 'Its members in the history' }).click();
    await expect(page.getByRole('table', { name: 'Your tasks' }).locator('tbody tr')).toHaveCount(21);

    // The history lists the batch as one row with its counts, linking to its page.
    await page.goto('/history');
    const history = page.getByRole('table', { name: 'Your tasks' }).locator('tbody tr');
    await expect(history).toHaveCount(1);
    await expect(history).toContainText('21 of 21 done');
    await expect(history.getByRole('link', { name: /^Batch \d+: Fibonacci × 21$/ })).toHaveAttribute(
      'href',
      /^\/batches\/\d+$/,
    );
    // Filtered, the members are listed one by one, each its own task.
    await page.goto('/history?type=fibonacci');
    await expect(history).toHaveCount(21);
    await expect(history.getByRole('link', { name: /^fibonacci\(\d+\)$/ })).toHaveCount(21);

    // The task page lists it, with a link back, and its terminal says it ended in one line.
    await page.goto('/?task=fibonacci');
    const listed = page.getByRole('region', { name: 'Your batches' }).getByRole('link', { name: /× 21$/ });
    await expect(listed.first()).toBeVisible();
    const ended = page
      .getByRole('log', { name: 'Results' })
      .getByRole('link', { name: /^batch \d+ fibonacci\(n=20\.\.40\): 21 of 21 done in \d+\.\d{3}sec$/ });
    await expect(ended).toHaveCount(1);
    await ended.click();
    await expect(page).toHaveURL(/\/batches\/\d+$/);
    await context.close();
  });
}

test('a grid of two mandelbrot fields shows six pictures of their own sizes', async ({ page }) => {
  await sweep(page, 'mandelbrot', { Width: '32,48,64', Height: '20,30', Iterations: '50' });
  await expect(page.getByRole('heading', { name: /× 6$/ })).toBeVisible();
  const pictures = page.getByRole('list', { name: 'Pictures' }).getByRole('img');
  await expect(pictures).toHaveCount(6, { timeout: 30_000 });
  const sizes = await pictures.evaluateAll((images) =>
    (images as HTMLImageElement[]).map((img) => `${img.naturalWidth}x${img.naturalHeight}`),
  );
  expect(sizes).toEqual(['32x20', '32x30', '48x20', '48x30', '64x20', '64x30']);
});

test('primes counted over a varied n plot one point per member; a bad member is refused whole', async ({
  page,
}) => {
  await sweep(page, 'primes', { n: '10..100:10' });
  await expect(page.getByRole('list', { name: 'Members' })).toHaveText('10 finished', {
    timeout: 30_000,
  });
  await expect(page.getByRole('img', { name: 'count against n, 10 points' })).toBeVisible();

  await page.goto('/?task=fibonacci');
  await page.getByText('Sweep: many inputs as one batch').click();
  const form = page.getByRole('form', { name: 'A batch' });
  await form.getByLabel('n (sweep)', { exact: true }).fill('90..99');
  // Counted first: refused before anything is posted, with the words a submission gets.
  await form.getByRole('button', { name: 'Count members' }).click();
  await expect(form.getByRole('alert')).toContainText('n must be at most 93 (got 94).');
  await form.getByLabel('n (sweep)', { exact: true }).fill('0..20000');
  await form.getByRole('button', { name: 'Count members' }).click();
  await expect(form.getByRole('alert')).toHaveText(
    'the batch would have 20001 members: at most 10000 are allowed',
  );
  await form.getByLabel('n (sweep)', { exact: true }).fill('90..99');
  await form.getByRole('button', { name: 'SUBMIT BATCH' }).click();
  await expect(page.getByText('n must be at most 93 (got 94).').first()).toBeVisible();
});

test('a running batch is one row of the queue with its counts; Cancel stops it and one line says so', async ({
  page,
}) => {
  await sweep(page, 'fibonacci', { n: '60..62' });
  const id = page.url().split('/').pop();
  await page.goto('/?task=fibonacci');
  const row = page.getByRole('list', { name: 'Unfinished tasks' }).getByRole('listitem');
  await expect(row).toHaveCount(1);
  await expect(row.getByRole('link', { name: `batch ${id} fibonacci(n=60..62)` })).toHaveAttribute(
    'href',
    `/batches/${id}`,
  );
  await expect(row).toContainText('0 of 3 done');
  await expect(page.getByLabel('Your quota')).toContainText(`batch ${id}: 0 of 3 done`);
  await expect(page.getByRole('heading', { name: `Task queue: [batch ${id}]` })).toBeVisible();
  await row.getByRole('button', { name: `Cancel batch ${id} fibonacci(n=60..62)` }).click();
  await expect(row).toHaveCount(0);
  await expect(
    page.getByRole('log', { name: 'Results' }).getByRole('link', {
      name: new RegExp(`^batch ${id} fibonacci\\(n=60\\.\\.62\\): 3 of 3 done, 3 cancelled in `),
    }),
  ).toBeVisible();
});

test("a batch's specification opens in the form to edit; widened with reuse, only the new members run", async ({
  page,
}) => {
  await sweep(page, 'primes', { n: '10..30:10' });
  await expect(page.getByRole('list', { name: 'Members' })).toHaveText('3 finished', { timeout: 30_000 });
  await page.getByRole('link', { name: 'Edit and submit again' }).click();
  const form = page.getByRole('form', { name: 'A batch' });
  const n = form.getByLabel('n (sweep)', { exact: true });
  await expect(n).toHaveValue('10..30:10');
  await n.fill('10..50:10');
  await form.getByLabel('Reuse earlier results').check();
  await form.getByRole('button', { name: 'SUBMIT BATCH' }).click();
  await expect(page.getByRole('heading', { name: /^Batch \d+: Prime count × 5$/ })).toBeVisible();
  await expect(page.getByRole('list', { name: 'Members' })).toHaveText('5 finished', { timeout: 30_000 });
  await expect(members(page).getByRole('link', { name: /^from #\d+$/ })).toHaveCount(3);
});
