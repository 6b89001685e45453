import { test as base, expect } from '@playwright/test';

export { expect };
export type { Page } from '@playwright/test';

/** What the browser said it refused under a content security policy, in any page or frame. */
const REFUSAL = /Content Security Policy|Refused to (load|execute|apply|frame|connect|display|evaluate|compile|create)/i;

/**
 * Every journey runs with the pages' content security policy on, and fails on any console
 * message about a refused script, style, frame or connection, in any page of its context and
 * any frame of those. A journey that expects a refusal reads `refusals` and empties it.
 */
export const test = base.extend<{ refusals: string[] }>({
  refusals: [
    async ({ context }, use) => {
      const refusals: string[] = [];
      context.on('console', (message) => {
        if (REFUSAL.test(message.text())) refusals.push(`${message.page()?.url()}: ${message.text()}`);
      });
      // Chromium logs most refusals itself; the event catches any it does not.
      await context.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (event) => {
          console.error(`Refused by the Content Security Policy: ${event.violatedDirective} ${event.blockedURI}`);
        });
      });
      await use(refusals);
      expect(refusals, 'what the content security policy refused').toEqual([]);
    },
    { auto: true },
  ],
});
