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
  const result = { errors: [] };
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
  };

  // A page of the room in a context of its own, once its Socket.IO connection is live.
  async function open(path, token, viewport, init, route) {
    const context = await browser.newContext({ viewport });
    if (init) await context.addInitScript(init);
    if (route) await context.route(...route);
    const page = await context.newPage();
    page.on("pageerror", error => result.errors.push(`${path}: ${error.message}`));
    page.on("dialog", dialog => { result.errors.push(`dialog: ${dialog.message()}`); dialog.dismiss(); });
    await page.goto(`${base}${path}/${room}#token=${token}`);
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "live");
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
