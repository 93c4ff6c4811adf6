// Live commerce on the pages, for tests/test_pages.py: the host console lists two products and
// pins one; the viewer sees the pinned card and clicks Buy (counted, the checkout link
// opened); the host starts a lucky bag; the viewer sees its countdown, enters, and sees the
// draw (she is the only entrant: she wins); the console's dashboard counts the click.
// node shop.mjs <base url> <room> <host token> <viewer token> <chromium> <artifacts dir>
import { harness } from "./harness.mjs";

const [base, room, hostToken, viewerToken, executablePath, artifacts] = process.argv.slice(2);
const { step, open, shot, run } = await harness({ base, room, executablePath, artifacts });
// The Buy button opens the merchant's checkout: kept, not followed (no network in tests).
const init = "window.open = url => { window.__opened = url; return null; };";

await run(async () => {
  const host = await open("/host", hostToken);
  const viewer = await open("/room", viewerToken, { init });

  await step("pinned", async () => {
    await host.fill('#products-form [name="products"]', [
      "tea-1 | Tea set | 19.90 | https://shop.example/img/tea-1.jpg | https://shop.example/checkout/tea-1",
      "cup-2 | Tea cup | 5 | https://shop.example/img/cup-2.jpg | https://shop.example/checkout/cup-2",
    ].join("\n"));
    await host.click("#products-form button.primary");
    await host.click('#products li[data-sku="tea-1"] button.pin');
    const card = viewer.locator('.pinned-product[data-sku="tea-1"]');
    await card.waitFor();
    const shown = { title: await card.locator(".title").textContent(), price: await card.locator(".price").textContent(),
      listed: await viewer.locator(".bag-list .product").count() };
    await card.locator(".buy-link").click();
    await viewer.waitForFunction(() => document.querySelector(".pinned-product .buy-link")?.dataset.clicks === "1");
    shown.opened = await viewer.evaluate(() => window.__opened);
    return shown;
  });

  await step("dashboard_clicks", async () => {
    const clicks = host.locator('#dash-products li[data-sku="tea-1"] [data-clicks]');
    await host.waitForFunction(() => document.querySelector('#dash-products li[data-sku="tea-1"] [data-clicks]')?.textContent === "1");
    return Number(await clicks.textContent());
  });

  await step("countdown", async () => {
    await host.fill('#luckybag-form [name="prize"]', "Lucky tea");
    await host.fill('#luckybag-form [name="duration_s"]', "10");
    await host.click("#luckybag-form button.primary");
    const countdown = viewer.locator(".luckybag .countdown");
    await viewer.waitForFunction(() => Number(document.querySelector(".luckybag .countdown")?.dataset.remainingMs) > 0);
    const seen = { text: await countdown.textContent(), remaining_ms: Number(await countdown.getAttribute("data-remaining-ms")) };
    await shot(viewer, "shop-viewer-countdown");
    await viewer.click(".luckybag button.enter");
    await viewer.waitForFunction(() => document.querySelector(".luckybag .lucky-status")?.textContent.includes("in the draw"));
    seen.host_countdown = await host.locator("#luckybag-status .countdown").textContent();
    return seen;
  });

  await step("drawn", async () => {
    await viewer.locator(".luckybag.drawn").waitFor({ timeout: 60000 });
    await host.locator("#luckybag-status .drawn").waitFor({ timeout: 60000 });
    await shot(viewer, "shop-viewer-drawn");
    await shot(host, "shop-host");
    return {
      viewer: await viewer.locator(".luckybag.drawn").textContent(),
      winners: await viewer.locator(".luckybag.drawn .winners li").allTextContents(),
      seed: await viewer.locator(".luckybag.drawn").getAttribute("data-seed"),
      host: await host.locator("#luckybag-status .drawn").textContent(),
    };
  });
});
