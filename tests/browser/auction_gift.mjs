// The auction card and the gifts on liveroom's pages, for tests/test_pages_auction_gift.py:
// the host console opens an auction; Alice and Bob bid from the viewer page (each bid in the
// anti-snipe window moves the countdown's end); everyone sees the price, the leader and the
// end; Alice sends gifts through the wallet; the console starts a PK that ends with a winner.
// node auction_gift.mjs <base url> <room> <host token> <alice token> <bob token> <opponent room> <chromium> <artifacts dir>
// Prints one JSON line of what it saw (harness.mjs); the Python test asserts on it.
import { harness } from "./harness.mjs";

const [base, room, hostToken, aliceToken, bobToken, opponent, executablePath, artifacts] = process.argv.slice(2);
const { step, open, shot, run } = await harness({ base, room, executablePath, artifacts });

const card = page => page.evaluate(() => {
  const node = document.querySelector(".auction");
  return node && { leader: node.dataset.leader, price: node.dataset.price, endsAt: Number(node.dataset.endsAt),
    countdown: node.querySelector(".countdown").textContent, result: node.querySelector(".result").textContent };
});

await run(async () => {
  const host = await open("/host", hostToken);
  const alice = await open("/room", aliceToken);
  const bob = await open("/room", bobToken);

  await step("auction", async () => {
    await host.fill('#auction-form [name="start_price"]', "100");
    await host.fill('#auction-form [name="increment"]', "10");
    // Every bid is in the anti-snipe window (longer than the auction), so each moves the end;
    // 10 s leaves a loaded machine (a CPU hog on one of two cores) time to get each bid in
    // before the end it follows; the step waits for the end, extend_s after Bob's bid.
    await host.fill('#auction-form [name="duration_s"]', "10");
    await host.fill('#auction-form [name="extend_s"]', "10");
    await host.click("#auction-form button");
    for (const page of [alice, bob]) await page.waitForSelector(".auction .bid:not([disabled])");
    const opened = await card(alice);
    await alice.click(".auction .bid");
    await bob.waitForFunction(() => document.querySelector(".auction").dataset.leader === "alice");
    const afterAlice = await card(bob);
    await bob.waitForFunction(() => !document.querySelector(".auction .bid").disabled);
    await bob.click(".auction .bid");
    for (const page of [alice, host]) await page.waitForFunction(() => document.querySelector(".auction")?.dataset.leader === "bob");
    const afterBob = await card(alice);
    for (const page of [alice, bob, host]) await page.waitForFunction(() => document.querySelector(".auction .countdown").textContent === "Ended");
    await alice.waitForFunction(() => document.querySelector(".auction .result").textContent.startsWith("Sold to"));
    await bob.waitForFunction(() => document.querySelector(".auction .result").dataset.code === "won");
    await shot(alice, "auction-alice");
    return { opened, afterAlice, afterBob, alice: await card(alice), bob: await card(bob), host: await card(host) };
  });

  await step("gifts", async () => {
    await alice.click('.gift-buttons [data-gift="rose"]');
    await alice.click('.gift-buttons [data-gift="heart"]');
    await bob.waitForFunction(() => document.querySelectorAll(".gift-feed li").length === 2);
    await bob.waitForFunction(() => document.querySelector(".gift-board li")?.dataset.user === "alice");
    await host.waitForFunction(() => document.querySelector("#gift-panel .gift-totals").dataset.totalMinor === "1100");
    await shot(bob, "gifts-bob");
    return {
      feed: await bob.$$eval(".gift-feed li", items => items.map(li => li.dataset.gift)),
      board: await bob.$$eval(".gift-board li", items => items.map(li => li.textContent)),
      totals: await host.$eval("#gift-panel .gift-totals", node => node.textContent),
    };
  });

  await step("pk", async () => {
    await host.fill('#pk-form [name="opponent"]', opponent);
    // 12 s (10 at least): the rocket is given and scored within it; the step waits for the end.
    await host.fill('#pk-form [name="duration_s"]', "12");
    await host.click("#pk-form button");
    await alice.waitForSelector(".pk:not([hidden])");
    await alice.click('.gift-buttons [data-gift="rocket"]');
    await bob.waitForFunction(() => document.querySelector(".pk .pk-scores").textContent.includes("500.00"));
    const during = await bob.$eval(".pk .pk-scores", node => node.textContent);
    for (const page of [alice, bob, host]) await page.waitForFunction(() => document.querySelector(".pk").dataset.winner, null, { timeout: 60000 });
    await shot(host, "pk-host");
    return {
      during,
      winners: await Promise.all([alice, bob, host].map(page => page.$eval(".pk", node => node.dataset.winner))),
      clock: await alice.$eval(".pk .pk-clock", node => node.textContent),
    };
  });
});
