import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, test } from './fixtures';
import { openTaskPage } from './helpers';

// Issue 32: the pages' content security policy. Every journey runs under it (see fixtures.ts);
// these check what it is for.

test('a page of another origin cannot frame the task page', async ({ page, baseURL, refusals }) => {
  // Another origin: the same address, another port, served by this test.
  const framer = createServer((_, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end(`<!DOCTYPE html><title>Framer</title><iframe title="Offload" src="${baseURL}/"></iframe>`);
  });
  await new Promise<void>((resolve) => framer.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = framer.address() as AddressInfo;
    await page.goto(`http://127.0.0.1:${port}/`);
    await expect.poll(() => refusals.join('\n')).toMatch(/Framing '[^']+' violates the following Content Security Policy directive: "frame-ancestors 'self'"/);
    await expect(page.frameLocator('iframe[title="Offload"]').getByRole('button', { name: 'SUBMIT' })).toHaveCount(0);
    refusals.length = 0;
  } finally {
    framer.close();
  }
});

test('the task page hydrates under its policy, which names its nonce', async ({ page }) => {
  const response = await page.goto('/');
  const policy = response!.headers()['content-security-policy'];
  expect(policy).toMatch(/script-src 'self' 'nonce-[^']+' 'wasm-unsafe-eval'/);
  expect(policy).not.toContain('unsafe-inline');
  await openTaskPage(page);
});
