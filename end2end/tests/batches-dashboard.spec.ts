import { expect, test } from './fixtures';
import { DASHBOARD_PORT } from '../playwright.config';

// The embedded cluster's dashboard shows the app's open batches. Not run on NATS (the
// playwright config's list): that dashboard is `offload cluster`'s, another process, which does
// not know the app's batches.

const DASHBOARD = `http://127.0.0.1:${DASHBOARD_PORT}`;

test("progress shows a running batch as one bar and one row beside its type's", async ({ page, context }) => {
  await page.goto('/?task=fibonacci');
  await page.getByText('Sweep: many inputs as one batch').click();
  const form = page.getByRole('form', { name: 'A batch' });
  // Long enough (tens of seconds each) to be still running when the dashboard is looked at.
  await form.getByLabel('n (sweep)', { exact: true }).fill('60..62');
  await form.getByRole('button', { name: 'SUBMIT BATCH' }).click();
  await expect(page).toHaveURL(/\/batches\/\d+$/);
  const id = page.url().split('/').pop();

  const dash = await context.newPage();
  await dash.goto(`${DASHBOARD}/individual-progress`);
  const row = dash.getByRole('table', { name: 'Task groups' }).getByRole('row', { name: `batch ${id} · fibonacci` });
  await expect(row).toBeVisible();
  await expect(row.getByRole('cell').nth(2)).toHaveText(/^[1-9]/);
  await page.getByRole('button', { name: 'Cancel the batch' }).click();
  await expect(row).toHaveCount(0);
});
