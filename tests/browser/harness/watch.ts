// What a page must not do: log a console error, throw, fail a request, or
// get an answer >= 400 the test did not say it expects. Every problem is
// collected; the fixture fails the test with the list at its end.

import type { ConsoleMessage, Page, Request, Response } from '@playwright/test';

interface Expected {
  status: number;
  url: RegExp;
}

export class PageWatch {
  private readonly problems: string[] = [];
  /** Aborted requests, with the navigation count when they were made:
   * judged at the end (the abort may come before the navigation commits). */
  private readonly aborted: Array<{ what: string; navigation: number }> = [];
  private expected: Expected[] = [];
  /** Main-frame navigations so far; a request made before the latest one
   * may be aborted by it (a poll cut short by leaving the page). */
  private navigations = 0;
  private readonly navigationOf = new WeakMap<Request, number>();

  constructor(page: Page) {
    page.on('request', (req) => this.navigationOf.set(req, this.navigations));
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.navigations += 1;
    });
    page.on('console', (msg) => this.onConsole(msg));
    page.on('pageerror', (err) => this.problems.push(`uncaught exception in the page: ${err.stack ?? err.message}`));
    page.on('requestfailed', (req) => this.onRequestFailed(req));
    page.on('response', (resp) => this.onResponse(resp));
  }

  /** Answers with `status` to a URL matching `url` are expected, as is the
   * console's "Failed to load resource" line the browser logs for each,
   * until the returned function is called (or the test ends). */
  expectStatus(status: number, url: RegExp): () => void {
    const entry = { status, url };
    this.expected.push(entry);
    return () => {
      this.expected = this.expected.filter((e) => e !== entry);
    };
  }

  private isExpected(status: number, url: string): boolean {
    return this.expected.some((e) => e.status === status && e.url.test(url));
  }

  private onConsole(msg: ConsoleMessage) {
    if (msg.type() !== 'error') return;
    const where = msg.location().url;
    const status = /the server responded with a status of (\d+)/.exec(msg.text());
    if (status && this.isExpected(Number(status[1]), where)) return;
    this.problems.push(`console error: ${msg.text()} (at ${where || 'unknown'})`);
  }

  private onRequestFailed(req: Request) {
    const failure = req.failure()?.errorText ?? 'unknown error';
    const what = `request failed: ${req.method()} ${req.url()}: ${failure}`;
    const navigation = this.navigationOf.get(req);
    if (failure === 'net::ERR_ABORTED' && navigation !== undefined) {
      this.aborted.push({ what, navigation });
      return;
    }
    this.problems.push(what);
  }

  /** Every problem seen: an aborted request counts unless the page left
   * for another one after it was made. */
  finish(): string[] {
    const aborted = this.aborted.filter((a) => a.navigation >= this.navigations).map((a) => a.what);
    return [...this.problems, ...aborted];
  }

  private onResponse(resp: Response) {
    const status = resp.status();
    if (status >= 400 && !this.isExpected(status, resp.url())) {
      this.problems.push(`unexpected answer ${status} to ${resp.request().method()} ${resp.url()}`);
    }
  }
}
