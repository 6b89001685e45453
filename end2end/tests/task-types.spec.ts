import { type Page, expect, test } from './fixtures';
import { holdWasm, openTaskPage, queueHeading, terminal } from './helpers';

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
    [{ task: 'hash-chain', text: 'a', algorithm: 'md5', rounds: '1' }, 'algorithm must be one of sha256, blake3 (got "md5")'],
    [{ task: 'hash-chain', text: 'x'.repeat(10_001), rounds: '1' }, 'text must be at most 10000 characters (got 10001)'],
    [{ task: 'mandelbrot', width: '4096' }, 'width must be at most 2048 (got 4096)'],
    [{ task: 'mandelbrot', smooth: 'maybe' }, 'smooth must be on or off (got "maybe")'],
    [{ task: 'mandelbrot', zoom: 'NaN' }, 'zoom must be a finite number (got "NaN")'],
    [{ task: 'mandelbrot', x: 'left' }, 'x must be a number (got "left")'],
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

const SHA1000 = 'fc8a6b86a13f71cd9a67f558ab6fd82a3dd89186163a017ed8051acf6d3f8f99';

// Written once, run for every type: a click on SUBMIT before the page's WASM has loaded posts
// the form itself, and the task runs once; once hydrated, the page follows it live.
const BEFORE_HYDRATION: {
  type: string;
  fill: (page: Page) => Promise<void>;
  line: string;
  after?: (page: Page) => Promise<void>;
}[] = [
  {
    type: 'fibonacci',
    fill: (page) => page.getByLabel('n', { exact: true }).fill('21'),
    line: 'fibonacci(21)=10946',
    // The form that came back offers the next n, as the seed's does.
    after: (page) => expect(page.getByLabel('n', { exact: true })).toHaveValue('22'),
  },
  { type: 'primes', fill: (page) => page.getByLabel('n', { exact: true }).fill('100'), line: 'primes(100)=25, largest 97' },
  {
    type: 'hash-chain',
    fill: async (page) => {
      await page.getByLabel('Text', { exact: true }).fill('abc');
      await page.getByLabel('Algorithm', { exact: true }).selectOption({ label: 'SHA-256' });
      await page.getByLabel('Rounds', { exact: true }).fill('1000');
    },
    line: `sha256×1000("abc")=${SHA1000}`,
  },
  {
    type: 'mandelbrot',
    fill: async (page) => {
      await page.getByLabel('Width', { exact: true }).fill('64');
      await page.getByLabel('Height', { exact: true }).fill('48');
    },
    line: '=64×48 PNG',
  },
];

for (const journey of BEFORE_HYDRATION) {
  test(`${journey.type}: a click before hydration is submitted once`, async ({ page }) => {
    const wasm = await holdWasm(page);
    await page.goto(`/?task=${journey.type}`);
    await expect(page.getByRole('status')).toHaveText('As of page load: reload to refresh');
    await journey.fill(page);
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    // The browser posted the form and came back to the page the server rendered with it. The
    // line is there once the task ended: a NATS worker may end it after that page was made,
    // and nothing is live before hydration, so the page is asked again until it shows.
    await expect(async () => {
      if (!(await terminal(page).textContent())?.includes(journey.line)) await page.reload();
      await expect(terminal(page)).toContainText(journey.line, { timeout: 500 });
    }).toPass({ timeout: 10_000 });
    wasm.release();
    await expect(page.getByRole('status')).toHaveText('Live');
    await expect(terminal(page).getByText(journey.line, { exact: false })).toHaveCount(1);
    await journey.after?.(page);
  });
}

test.describe('hash-chain', () => {
  const open = async (page: Page) => {
    await page.goto('/');
    await page.getByRole('navigation', { name: 'Task types' }).getByRole('link', { name: 'Hash chain' }).click();
    await expect(page).toHaveURL(/\?task=hash-chain$/);
    await expect(page.getByRole('status')).toHaveText('Live');
  };
  const fill = async (page: Page, text: string, algorithm: string, rounds: string) => {
    await page.getByLabel('Text', { exact: true }).fill(text);
    await page.getByLabel('Algorithm', { exact: true }).selectOption({ label: algorithm });
    await page.getByLabel('Rounds', { exact: true }).fill(rounds);
  };

  test('runs from its form: text, a choice and a number; its detail has input and output', async ({ page }) => {
    await open(page);
    await fill(page, 'abc', 'SHA-256', '1000');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    const line = terminal(page).getByRole('link', { name: new RegExp(`^sha256×1000\\("abc"\\)=${SHA1000} in`) });
    await expect(line).toBeVisible();
    await line.click();
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(/^Task \d+: hash-chain\(text="abc", algorithm="sha256", rounds=1000\)$/);
    await expect(page.getByLabel('Output')).toContainText(SHA1000);
    await expect(page.getByLabel('Input')).toContainText('"rounds": 1000');
    await page.getByRole('button', { name: 'Run again' }).click();
    await expect(page).toHaveURL(/\?task=hash-chain$/);
    await expect(terminal(page).getByRole('link', { name: new RegExp(`^sha256×1000\\("abc"\\)=${SHA1000} in`) })).toHaveCount(2);
  });

  test('refuses each bad field at the field, in the browser', async ({ page }) => {
    await open(page);
    await fill(page, 'abc', 'BLAKE3', '0');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    await expect(page.locator('#rounds-error')).toHaveText('rounds must be 1 or more (got 0).');
    await page.getByLabel('Rounds', { exact: true }).fill('2.5');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    await expect(page.locator('#rounds-error')).toHaveText('rounds must be a whole number (got "2.5").');
    await page.getByLabel('Rounds', { exact: true }).fill('10');
    // Set as a paste or a script would: `maxlength` only stops typing.
    await page.getByLabel('Text', { exact: true }).evaluate((el: HTMLTextAreaElement) => {
      el.value = 'x'.repeat(10_001);
    });
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    await expect(page.locator('#text-error')).toHaveText('text must be at most 10000 characters (got 10001).');
    await expect(page.locator('#rounds-error')).toBeEmpty();
    await expect(queueHeading(page)).toHaveText('Task queue: []');
  });

  test.describe('without JavaScript', () => {
    test.use({ javaScriptEnabled: false });
    test('the form posts and comes back with the task; a refusal comes back at its field', async ({ page }) => {
      await page.goto('/?task=hash-chain');
      await fill(page, 'abc', 'BLAKE3', '1');
      // The post, then the page it comes back to (the same URL: wait for its load).
      await Promise.all([page.waitForEvent('load'), page.getByRole('button', { name: 'SUBMIT' }).click()]);
      await expect(page).toHaveURL(/\?task=hash-chain$/);
      await page.reload();
      await expect(terminal(page)).toContainText('blake3×1("abc")=6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85 in');
      await page.getByLabel('Rounds', { exact: true }).fill('500000001');
      await page.getByRole('button', { name: 'SUBMIT' }).click();
      await expect(page.locator('#rounds-error')).toHaveText('rounds must be at most 500000000 (got 500000001).');
    });
  });
});

test.describe('primes', () => {
  test('runs from its form with progress, shows its line and its detail', async ({ page }) => {
    await page.goto('/?task=primes');
    await expect(page.getByRole('heading', { name: 'Prime count Tasks' })).toBeVisible();
    await expect(page.getByRole('status')).toHaveText('Live');
    await page.getByLabel('n', { exact: true }).fill('1000000');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    const line = terminal(page).getByRole('link', { name: /^primes\(1000000\)=78498, largest 999983 in/ });
    await expect(line).toBeVisible();
    await line.click();
    await expect(page.getByLabel('Output')).toContainText('"count": 78498');
    await expect(page.getByLabel('Output')).toContainText('"largest": 999983');
  });

  test('a long count shows live progress in the queue and can be cancelled', async ({ page }) => {
    await page.goto('/?task=primes');
    await expect(page.getByRole('status')).toHaveText('Live');
    await page.getByLabel('n', { exact: true }).fill('100000000000');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    const bar = page.getByRole('progressbar', { name: 'primes(100000000000) progress' });
    await expect(bar).toHaveAttribute('aria-valuenow', /^(?!0\.0$)/);
    await page.getByRole('button', { name: 'Cancel primes(100000000000)' }).click();
    await expect(terminal(page)).toContainText('primes(100000000000) cancelled after');
  });

  test.describe('without JavaScript', () => {
    test.use({ javaScriptEnabled: false });
    test('the form posts, and a refused n comes back at its field', async ({ page }) => {
      await page.goto('/?task=primes');
      await page.getByLabel('n', { exact: true }).fill('1000');
      await Promise.all([page.waitForEvent('load'), page.getByRole('button', { name: 'SUBMIT' }).click()]);
      await page.reload();
      await expect(terminal(page)).toContainText('primes(1000)=168, largest 997 in');
      await page.getByLabel('n', { exact: true }).fill('100000000001');
      await page.getByRole('button', { name: 'SUBMIT' }).click();
      await expect(page.locator('#n-error')).toHaveText('n must be at most 100000000000 (got 100000000001).');
    });
  });
});

test.describe('mandelbrot', () => {
  const pictureOf = async (page: Page, img: ReturnType<Page['getByRole']>) => {
    await expect(img).toBeVisible();
    // Loaded and decoded: a broken image has no natural size.
    await expect.poll(() => img.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth)).toBeGreaterThan(0);
    return img.evaluate((el: HTMLImageElement) => [el.naturalWidth, el.naturalHeight]);
  };

  test('renders from its form: the picture shows in the terminal and whole on its detail', async ({ page }) => {
    await page.goto('/');
    await page.getByRole('navigation', { name: 'Task types' }).getByRole('link', { name: 'Mandelbrot picture' }).click();
    await expect(page).toHaveURL(/\?task=mandelbrot$/);
    await expect(page.getByRole('status')).toHaveText('Live');
    await expect(page.getByLabel('Centre, real part', { exact: true })).toHaveValue('-0.5');
    await page.getByLabel('Width', { exact: true }).fill('320');
    await page.getByLabel('Height', { exact: true }).fill('240');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    const line = terminal(page).getByRole('link', { name: /^mandelbrot\(-0\.5\+0i, zoom 1\)=320×240 PNG, \d+% inside in/ });
    await expect(line).toBeVisible();
    expect(await pictureOf(page, terminal(page).getByRole('img', { name: /^The picture of task \d+$/ }))).toEqual([320, 240]);
    await line.click();
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(/^Task \d+: mandelbrot\(x=-0\.5, y=0, zoom=1, width=320, height=240, max_iterations=1000, smooth=true\)$/);
    expect(await pictureOf(page, page.getByRole('img', { name: /^The picture task \d+ made$/ }))).toEqual([320, 240]);
    // The JSON keeps the picture's type and size, not its bytes.
    await expect(page.getByLabel('Output')).toContainText('"media_type": "image/png"');
    await expect(page.getByLabel('Output')).not.toContainText('base64');
    const download = page.getByRole('link', { name: 'Download (image/png)' });
    const response = await page.request.get((await download.getAttribute('href'))!);
    expect(response.headers()['content-type']).toBe('image/png');
  });

  test('refuses each bad field at the field, in the browser', async ({ page }) => {
    await page.goto('/?task=mandelbrot');
    await expect(page.getByRole('status')).toHaveText('Live');
    await page.getByLabel('Width', { exact: true }).fill('4096');
    await page.getByLabel('Zoom', { exact: true }).fill('0');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    await expect(page.locator('#zoom-error')).toHaveText('zoom must be 0.1 or more (got 0).');
    await page.getByLabel('Zoom', { exact: true }).fill('2.5');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    await expect(page.locator('#width-error')).toHaveText('width must be at most 2048 (got 4096).');
    await expect(page.locator('#zoom-error')).toBeEmpty();
    await page.getByLabel('Iterations', { exact: true }).fill('1.5');
    await page.getByLabel('Width', { exact: true }).fill('20');
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    await expect(page.locator('#max_iterations-error')).toHaveText('max_iterations must be a whole number (got "1.5").');
    await expect(queueHeading(page)).toHaveText('Task queue: []');
  });

  test('a large picture shows live progress in the queue and can be cancelled', async ({ page }) => {
    await page.goto('/?task=mandelbrot');
    await expect(page.getByRole('status')).toHaveText('Live');
    await page.getByLabel('Width', { exact: true }).fill('2048');
    await page.getByLabel('Height', { exact: true }).fill('2048');
    await page.getByLabel('Iterations', { exact: true }).fill('100000');
    await page.getByLabel('Smooth colouring', { exact: true }).uncheck();
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    const call = 'mandelbrot(x=-0.5, y=0, zoom=1, width=2048, height=2048, max_iterations=100000, smooth=false)';
    await expect(page.getByRole('progressbar', { name: `${call} progress` })).toHaveAttribute('aria-valuenow', /^(?!0\.0$)/);
    await page.getByRole('button', { name: `Cancel ${call}` }).click();
    await expect(terminal(page)).toContainText(`${call} cancelled after`);
  });

  test('fields changed before hydration are kept and posted once hydrated', async ({ page }) => {
    const wasm = await holdWasm(page);
    await page.goto('/?task=mandelbrot');
    await expect(page.getByRole('status')).toHaveText('As of page load: reload to refresh');
    await page.getByLabel('Width', { exact: true }).fill('40');
    await page.getByLabel('Height', { exact: true }).fill('30');
    await page.getByLabel('Smooth colouring', { exact: true }).uncheck();
    wasm.release();
    await expect(page.getByRole('status')).toHaveText('Live');
    await expect(page.getByLabel('Width', { exact: true })).toHaveValue('40');
    await expect(page.getByLabel('Smooth colouring', { exact: true })).not.toBeChecked();
    await page.getByRole('button', { name: 'SUBMIT' }).click();
    const line = terminal(page).getByRole('link', { name: /^mandelbrot\(-0\.5\+0i, zoom 1\)=40×30 PNG/ });
    await line.click();
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(/width=40, height=30, max_iterations=1000, smooth=false\)$/);
  });

  test.describe('without JavaScript', () => {
    test.use({ javaScriptEnabled: false });
    test('the form posts and the picture shows after a reload', async ({ page }) => {
      await page.goto('/?task=mandelbrot');
      await page.getByLabel('Width', { exact: true }).fill('100');
      await page.getByLabel('Height', { exact: true }).fill('80');
      await Promise.all([page.waitForEvent('load'), page.getByRole('button', { name: 'SUBMIT' }).click()]);
      await page.reload();
      await expect(terminal(page)).toContainText('=100×80 PNG');
      expect(await pictureOf(page, terminal(page).getByRole('img', { name: /^The picture of task \d+$/ }))).toEqual([100, 80]);
    });
  });
});
