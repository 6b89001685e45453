import { writeFileSync } from 'node:fs';
import { type Browser, type Page, expect, test } from '@playwright/test';

// `make bench` (offload-bench): the seed's Panel app and Offload's task page in the same
// chromium, the apps alternating click by click and load by load, so that a noisy moment of
// the machine lands on every app alike. offload-bench starts the stacks and names them in
// OFFLOAD_BENCH_TARGETS; the medians go to OFFLOAD_BENCH_OUT as JSON.

type Kind = 'panel' | 'offload';
interface Target {
  key: string;
  url: string;
  kind: Kind;
}
interface Figures {
  click_to_line_ms: number;
  first_byte_ms: number;
  dom_loaded_ms: number;
  interactive_ms: number;
}
type Bench = typeof window & {
  benchReady: () => boolean;
  benchClick: () => Promise<number>;
  readyAt?: number;
};

const targets: Target[] = JSON.parse(process.env.OFFLOAD_BENCH_TARGETS ?? '[]');
const CLICKS = Number(process.env.OFFLOAD_BENCH_CLICKS ?? 50);
const LOADS = Number(process.env.OFFLOAD_BENCH_LOADS ?? 10);
const OUT = process.env.OFFLOAD_BENCH_OUT ?? 'bench.json';
const WARMUP = 5;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

// Installed in each page: `benchReady()` says whether the page can be used yet, and
// `benchClick()` sets n to 0, clicks SUBMIT and resolves with the milliseconds until the frame
// after the fibonacci(0) line reached the terminal.
function install(kind: Kind) {
  type Signal = { connect: (f: () => void) => void; disconnect: (f: () => void) => void };
  type BokehModel = {
    type: string;
    value: unknown;
    output: string;
    property: (name: string) => { change: Signal };
  };
  const w = window as Bench & { Bokeh?: { documents: { all_models: Set<BokehModel> }[] } };
  // Panel draws its widgets in shadow roots.
  const deepButton = (root: Document | ShadowRoot): HTMLButtonElement | null => {
    for (const el of root.querySelectorAll('*')) {
      if (el instanceof HTMLButtonElement && el.textContent?.trim() === 'SUBMIT') return el;
      if (el.shadowRoot) {
        const found = deepButton(el.shadowRoot);
        if (found) return found;
      }
    }
    return null;
  };
  const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  if (kind === 'offload') {
    w.benchReady = () => document.querySelector('.connection.live') !== null;
    w.benchClick = async () => {
      const input = document.querySelector<HTMLInputElement>('input[name=n]')!;
      const button = [...document.querySelectorAll('button')].find((b) => b.textContent === 'SUBMIT')!;
      const log = document.querySelector('[role=log]')!;
      input.value = '0';
      input.dispatchEvent(new Event('input', { bubbles: true }));
      const before = log.children.length;
      const arrived = new Promise<void>((resolve) => {
        const observer = new MutationObserver(() => {
          if (log.children.length > before) {
            observer.disconnect();
            resolve();
          }
        });
        observer.observe(log, { childList: true });
      });
      const start = performance.now();
      button.click();
      await arrived;
      await frame();
      return performance.now() - start;
    };
  } else {
    w.benchReady = () => deepButton(document) !== null;
    // The terminal is xterm.js on a canvas: the line is seen on the Bokeh model it is
    // written from, then one frame is allowed for the canvas to paint it.
    w.benchClick = async () => {
      const models = [...w.Bokeh!.documents[0].all_models];
      const terminal = models.find((m) => m.type.endsWith('.Terminal'))!;
      const input = models.find((m) => m.type === 'Spinner')!;
      input.value = 0;
      const change = terminal.property('output').change;
      const arrived = new Promise<void>((resolve) => {
        const seen = () => {
          if (String(terminal.output).includes('fibonacci(0)=')) {
            change.disconnect(seen);
            resolve();
          }
        };
        change.connect(seen);
      });
      const start = performance.now();
      deepButton(document)!.click();
      await arrived;
      await frame();
      return performance.now() - start;
    };
  }
}

// A cold load in a new context (nothing cached): navigation timings, and the first frame in
// which the page could be used.
async function load(browser: Browser, target: Target) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(install, target.kind);
  await page.addInitScript(() => {
    const w = window as Bench;
    const poll = () => {
      if (w.benchReady()) w.readyAt = performance.now();
      else requestAnimationFrame(poll);
    };
    requestAnimationFrame(poll);
  });
  await page.goto(target.url);
  await page.waitForFunction(() => (window as Bench).readyAt !== undefined);
  const timings = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
    return {
      firstByte: nav.responseStart,
      dom: nav.domContentLoadedEventEnd,
      ready: (window as Bench).readyAt!,
    };
  });
  await context.close();
  return timings;
}

test('the apps side by side: click → terminal line, and page load', async ({ browser }) => {
  test.setTimeout(600_000);
  expect(targets.length, 'OFFLOAD_BENCH_TARGETS names the apps').toBeGreaterThan(0);

  const pages: Page[] = [];
  for (const target of targets) {
    const page = await browser.newPage();
    await page.addInitScript(install, target.kind);
    await page.goto(target.url);
    await expect.poll(() => page.evaluate(() => (window as Bench).benchReady())).toBe(true);
    pages.push(page);
  }
  const clicks: number[][] = targets.map(() => []);
  for (let i = 0; i < WARMUP + CLICKS; i++) {
    for (const [j, page] of pages.entries()) {
      const ms = await page.evaluate(() => (window as Bench).benchClick());
      if (i >= WARMUP) clicks[j].push(ms);
    }
  }
  for (const page of pages) await page.close();

  const loads: { firstByte: number; dom: number; ready: number }[][] = targets.map(() => []);
  for (let i = 0; i < LOADS; i++) {
    for (const [j, target] of targets.entries()) loads[j].push(await load(browser, target));
  }

  const out: Record<string, Figures> = {};
  for (const [j, target] of targets.entries()) {
    const f = {
      click_to_line_ms: median(clicks[j]),
      first_byte_ms: median(loads[j].map((l) => l.firstByte)),
      dom_loaded_ms: median(loads[j].map((l) => l.dom)),
      interactive_ms: median(loads[j].map((l) => l.ready)),
    };
    out[target.key] = f;
    console.log(
      `${target.key}: click → line ${f.click_to_line_ms.toFixed(1)} ms (median of ${CLICKS}); ` +
        `page first byte ${f.first_byte_ms.toFixed(1)} ms, DOM content loaded ${f.dom_loaded_ms.toFixed(1)} ms, ` +
        `interactive ${f.interactive_ms.toFixed(1)} ms (median of ${LOADS})`,
    );
  }
  writeFileSync(OUT, JSON.stringify(out, null, 2));
});
