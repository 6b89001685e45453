import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
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

/** Posts `form` to a server function as the page's session, as a script would; returns the answer's JSON. */
export async function postForm(page: Page, path: string, form: Record<string, string>) {
  const response = await page.request.post(path, { form, headers: { Accept: 'application/json' } });
  expect(response.status(), await response.text()).toBe(200);
  return response.json();
}

/**
 * Holds the page's WASM back until `release()` is called and at least 1.5 s have passed, so
 * whatever the test does meanwhile happens before hydration, however fast this machine is.
 */
export async function holdWasm(page: Page): Promise<{ release: () => void }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  await page.route('**/pkg/*.wasm', async (route) => {
    await Promise.all([released, new Promise((resolve) => setTimeout(resolve, 1_500))]);
    await route.continue();
  });
  return { release };
}

/**
 * Starts the release `offload` with `args` (a journey's own server, beside the suite's), ready
 * once its log says `ready`; fails should it exit first.
 */
export async function startOffload(args: string[], ready = 'Offload is serving'): Promise<ChildProcess> {
  const server = spawn('./target/release/offload', args, {
    cwd: '..',
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its readiness is an info line, whatever RUST_LOG the suite runs with.
    env: { ...process.env, RUST_LOG: 'info' },
  });
  await new Promise<void>((resolve, reject) => {
    const said = (chunk: Buffer) => chunk.toString().includes(ready) && resolve();
    server.stdout!.on('data', said);
    server.stderr!.on('data', said);
    server.on('exit', (code) => reject(new Error(`offload exited with ${code} before saying "${ready}"`)));
  });
  return server;
}

/** SIGTERM to a process a journey started, and waits for it to go (at once if it has). */
export async function stopProcess(child: ChildProcess) {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
}
