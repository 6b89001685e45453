import { expect, test } from './fixtures';
import { openTaskPage } from './helpers';

test('the page is server-rendered with its title', async ({ request }) => {
  const response = await request.get('/');
  expect(response.status()).toBe(200);
  const html = await response.text();
  expect(html).toContain('<title>Fibonacci Tasks</title>');
  expect(html).toContain('Fibonacci Tasks</h1>');
});

test('the WASM is served as application/wasm, gzipped', async ({ request }) => {
  const response = await request.get('/pkg/offload.wasm', { headers: { 'Accept-Encoding': 'gzip' } });
  expect(response.status()).toBe(200);
  expect(response.headers()['content-type']).toBe('application/wasm');
  expect(response.headers()['content-encoding']).toBe('gzip');
});

test('after hydration the footer shows the cluster, asked of the server', async ({ page }) => {
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  await openTaskPage(page);
  await expect(page.getByRole('contentinfo')).toHaveText(/^Offload \d+\.\d+\.\d+ · 4 workers \(embedded\)$/);
  expect(errors).toEqual([]);
});

test('an unknown page is a 404', async ({ page }) => {
  const response = await page.goto('/no-such-page');
  expect(response?.status()).toBe(404);
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
});
