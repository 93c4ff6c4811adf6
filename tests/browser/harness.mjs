// What the browser drivers share (pages.mjs, hls_levels.mjs): Debian's chromium through
// playwright-core, named steps whose failures are recorded rather than thrown, liveroom's
// pages opened signed in, and screenshots. A driver prints one JSON line of what it saw;
// the Python test asserts on it.
import { chromium } from "playwright-core";

export const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required"];

export async function harness({ base, room, executablePath, artifacts }) {
  const result = { errors: [], http: [] };
  const browser = await chromium.launch({ executablePath, args: ARGS });

  // One named part of the run: what it returns, or its error (which fails only the tests reading it).
  const step = async (name, fn) => {
    const started = Date.now();
    try {
      result[name] = await fn();
    } catch (error) {
      result.errors.push(`${name}: ${error.message.split("\n")[0]}`);
    }
    result[`${name}_ms`] = Date.now() - started;
    // Progress on stderr: what a run that never finished got to.
    console.error(`${name}: ${result[`${name}_ms`]} ms${name in result ? "" : " (failed)"}`);
  };

  // A page of the room in a context of its own, once its Socket.IO connection is up.
  // `context`: playwright's context options (viewport, isMobile...); `init`: a script run
  // before the page's own; `route`: [pattern, handler] for its HTTP requests; `tap`: a
  // WebSocketTap (below) its Socket.IO WebSocket goes through.
  async function open(path, token, { context: options = {}, init, route, tap } = {}) {
    const context = await browser.newContext(options);
    // Waits are on conditions; on a loaded machine (a CPU hog on one of two cores, other
    // servers on the other) a page load alone has taken 30 s.
    context.setDefaultTimeout(45000);
    context.setDefaultNavigationTimeout(90000);
    if (init) await context.addInitScript(init);
    if (route) await context.route(...route);
    if (tap) await context.routeWebSocket(/\/socket\.io\//, ws => tap.attach(ws));
    const page = await context.newPage();
    page.on("pageerror", error => result.errors.push(`${path}: ${error.message}`));
    page.on("dialog", dialog => { result.errors.push(`dialog: ${dialog.message()}`); dialog.dismiss(); });
    page.on("response", async response => {  // what a person would see as errors in the console
      if (response.status() < 400) return;
      const body = await response.text().catch(() => "");
      result.http.push(`${response.status()} ${response.request().method()} ${new URL(response.url()).pathname} ${body.slice(0, 120)}`);
    });
    await page.goto(`${base}${path}/${room}${token ? `#token=${token}` : ""}`);
    if (!token) return page;
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "connected");
    await page.evaluate(() => {  // every item type the page receives
      const conn = window.liveroom.conn, take = conn.take.bind(conn);
      window.__types = new Set();
      conn.take = item => { window.__types.add(item.type); return take(item); };
    });
    return page;
  }

  const shot = (page, name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });

  // The driver's body; whatever it throws is recorded, and the result printed in any case.
  async function run(body) {
    try {
      await body();
    } catch (error) {
      result.errors.push(`driver: ${error.message.split("\n")[0]}`);
    } finally {
      await browser.close();
    }
    console.log(JSON.stringify(result));
  }

  return { step, open, shot, run };
}

// A page's Socket.IO WebSocket, relayed by the driver (playwright's routeWebSocket), which
// can drop the next server-to-page `batch` frame that carries a given text: a real gap in
// what the page receives, as a lost frame on a broken path would make.
export class WebSocketTap {
  constructor() {
    this.dropping = null;
    this.dropped = [];  // [{seqs, texts}] of the frames dropped
  }
  attach(ws) {
    const server = ws.connectToServer();
    server.onMessage(message => {
      if (this.dropping && typeof message === "string" && message.startsWith('42["batch"') && message.includes(this.dropping.text)) {
        const [, batch] = JSON.parse(message.slice(2));
        this.dropped.push({ seqs: batch.items.map(item => item.seq), texts: batch.items.map(item => item.data?.text) });
        this.dropping.done();
        this.dropping = null;
        return;
      }
      ws.send(message);
    });
  }
  // Resolves once the next batch frame carrying `text` has been dropped.
  dropNext(text) {
    return new Promise(done => { this.dropping = { text, done }; });
  }
}
