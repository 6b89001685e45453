import { expect, test } from './fixtures';
import { nInput, queueHeading, submitButton, terminal } from './helpers';

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  test('SUBMIT posts the form and the page that comes back shows the task and n + 1', async ({ page }) => {
    await page.goto('/');
    await nInput(page).fill('20');
    await submitButton(page).click();
    // Back on the task page (server functions leave an empty query behind).
    await expect(page).toHaveURL(/:\d+\/\??$/);
    await expect(nInput(page)).toHaveValue('21');
    await page.reload();
    await expect(terminal(page)).toContainText(/fibonacci\(20\)=6765 in \d+\.\d{3}sec/);
    await expect(queueHeading(page)).toHaveText('Task queue: []');
    // Nothing live without JavaScript, and the page says so instead of "Connecting…".
    await expect(page.getByRole('status')).toHaveText('As of page load: reload to refresh');
  });

  test('a refused form post comes back with its message', async ({ page }) => {
    await page.goto('/');
    await nInput(page).fill('94');
    await submitButton(page).click();
    await expect(page.locator('#n-error')).toHaveText(/at most 93/);
    await expect(terminal(page)).toBeEmpty();
  });
});
