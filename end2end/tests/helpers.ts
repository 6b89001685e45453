import { expect, type Page } from '@playwright/test';

/** Opens the task page and waits until it is hydrated and its live stream is open. */
export async function openTaskPage(page: Page) {
  await page.goto('/');
  // Only the hydrated page opens the stream, and only an open stream says "Live".
  await expect(page.getByRole('status')).toHaveText('Live');
}

export const nInput = (page: Page) => page.getByLabel('n', { exact: true });
export const submitButton = (page: Page) => page.getByRole('button', { name: 'SUBMIT' });
export const queueHeading = (page: Page) => page.getByRole('heading', { name: /^Task queue:/ });
export const terminal = (page: Page) => page.getByRole('log');

export async function submit(page: Page, n: number | string) {
  await nInput(page).fill(String(n));
  await submitButton(page).click();
}
