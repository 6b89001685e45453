import { test } from '@playwright/test';

// `make bench`: how fast the task page is ready, median of 10 cold loads (a new browser
// context each time, so nothing is cached): the first byte of the HTML, DOMContentLoaded, and
// hydrated (the "Live" badge: only the hydrated page opens its stream).
test('task page: first byte, DOM content loaded, hydrated', async ({ browser }) => {
  const runs: { firstByte: number; dom: number; live: number }[] = [];
  for (let i = 0; i < 10; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    // Recorded in the page itself when the badge turns Live, so polling adds nothing.
    await page.addInitScript(() => {
      new MutationObserver((_, observer) => {
        const badge = document.querySelector('.connection.live');
        if (badge) {
          (window as unknown as { liveAt: number }).liveAt = performance.now();
          observer.disconnect();
        }
      }).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
    });
    await page.goto('/');
    await page.waitForFunction(() => (window as unknown as { liveAt?: number }).liveAt !== undefined);
    runs.push(
      await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
        return {
          firstByte: nav.responseStart,
          dom: nav.domContentLoadedEventEnd,
          live: (window as unknown as { liveAt: number }).liveAt,
        };
      }),
    );
    await context.close();
  }
  const median = (key: 'firstByte' | 'dom' | 'live') => {
    const sorted = runs.map((r) => r[key]).sort((a, b) => a - b);
    return ((sorted[4] + sorted[5]) / 2).toFixed(1);
  };
  console.log(
    `task page, median of 10 cold loads: first byte ${median('firstByte')} ms, ` +
      `DOM content loaded ${median('dom')} ms, hydrated ("Live") ${median('live')} ms`,
  );
});
