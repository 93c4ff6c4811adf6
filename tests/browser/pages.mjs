// Drives liveroom's pages in headless Chromium for tests/test_pages.py (the show).
// node pages.mjs <base url> <room> <host token> <alice token> <bob token> <carol token> <dan token> <chromium> <artifacts dir>
// Prints one JSON line of what it saw (harness.mjs); the Python test asserts on it.
import { devices } from "playwright-core";
import { harness, WebSocketTap } from "./harness.mjs";

const [base, room, hostToken, aliceToken, bobToken, carolToken, danToken, executablePath, artifacts] = process.argv.slice(2);
// Alice is on a phone: Chromium's mobile emulation (touch, a phone's user agent and pixel
// ratio) at 390x844. Her Socket.IO WebSocket goes through the driver, which can drop a frame.
const PHONE = { ...devices["Pixel 7"], viewport: { width: 390, height: 844 } };
const aliceLink = new WebSocketTap();
const SKEW_MS = 5000;  // Bob's device clock is 5 s fast: the server-clock sync must hide it
const { step, open, shot, run } = await harness({ base, room, executablePath, artifacts });

// Frames the page's WHEP session for `slot` has decoded, polled until at least `least`.
async function framesOf(page, slot, least = 10, timeout = 45000) {
  const deadline = Date.now() + timeout;
  let frames = 0;
  while (Date.now() < deadline && frames < least) {
    frames = await page.evaluate(async slot => {
      const pc = window.liveroom.players.get(slot)?.session?.pc;
      let n = 0;
      if (pc) (await pc.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "video") n = r.framesDecoded || 0; });
      return n;
    }, slot);
    if (frames < least) await page.waitForTimeout(200);
  }
  return frames;
}

// A comment from a viewer's page, once the server has acknowledged it (the page clears the
// field); a refusal fails the step with what the page showed.
async function say(page, text) {
  await page.$eval("#comment-error", node => { node.textContent = ""; });
  await page.fill("#text", text);
  await page.click("#comment button");
  const outcome = await page.waitForFunction(() => document.querySelector("#text").value === ""
    || document.querySelector("#comment-error").textContent);
  const error = await page.textContent("#comment-error");
  if (error) throw new Error(`"${text}" refused: ${error}`);
  return outcome;
}

await run(async () => {
  const host = await open("/host", hostToken, { context: { viewport: { width: 1280, height: 900 } } });
  const alice = await open("/room", aliceToken, { context: PHONE, tap: aliceLink });
  const bob = await open("/room", bobToken, { context: { viewport: { width: 1100, height: 700 } },
    init: `{ const real = Date.now; Date.now = () => real() + ${SKEW_MS}; }` });
  const viewers = [alice, bob];
  for (const page of viewers) {
    await page.evaluate(() => {  // every text the danmaku layer was given
      const layer = window.liveroom.layer, add = layer.add.bind(layer);
      window.__shown = [];
      layer.add = (text, options) => { window.__shown.push(text); return add(text, options); };
    });
  }
  const shown = (page, text) => page.evaluate(text => window.__shown.filter(t => t === text).length, text);

  await step("console", async () => {
    // Every field of the host console has a label; what the header says of the socket.
    const unlabelled = await host.$$eval("input, select, textarea", nodes =>
      nodes.filter(n => !n.labels?.length && !n.getAttribute("aria-label")).map(n => n.name || n.id));
    return { unlabelled, status: await host.textContent("#status"),
      stats: await host.$$eval(".stat", nodes => nodes.map(n => n.querySelector("span").textContent)) };
  });

  await step("live", async () => {
    await host.check("#backup");  // a second ingest path from the same camera
    await host.click("#go-live");
    await host.waitForFunction(() => document.querySelector("#live-status").textContent.startsWith("Live"));
    return Promise.all(viewers.map(page => framesOf(page, "host")));
  });

  await step("danmaku", async () => {
    const xss = "<img src=x onerror=window.__xss=1>";
    for (const text of ["hello from alice 你好", xss]) await say(alice, text);
    const dm = bob.locator("#danmaku .dm", { hasText: "hello from alice" });
    await dm.waitFor();
    const x1 = (await dm.boundingBox()).x;
    await bob.waitForTimeout(400);
    const x2 = (await dm.boundingBox()).x;
    await bob.locator("#danmaku .dm", { hasText: "<img" }).waitFor();
    await shot(bob, "viewer-danmaku");
    return { x1, x2, texts: await bob.$$eval("#danmaku .dm", nodes => nodes.map(n => n.textContent)),
      images: await bob.$$eval("#danmaku img, #cards img", nodes => nodes.length),
      xss: await bob.evaluate(() => window.__xss ?? null),
      lanes: await bob.$$eval("#danmaku .dm", nodes => nodes.map(n => n.dataset.lane)) };
  });

  await step("resume", async () => {
    // Alice's connection drops; Bob comments meanwhile; Alice's page reconnects by itself
    // and gets the comment from `missed` (join with `since`).
    await alice.evaluate(() => window.liveroom.conn.socket.io.engine.close());
    await alice.waitForFunction(() => !window.liveroom.conn.socket.connected);
    await say(bob, "while you were away");
    await alice.locator("#danmaku .dm", { hasText: "while you were away" }).waitFor();
    return { ...(await alice.evaluate(() => ({ joins: window.liveroom.conn.joins, ...window.liveroom.conn.lastJoin }))),
      shown: await shown(alice, "while you were away") };
  });

  await step("gap", async () => {
    // A real gap: the batch frame carrying Bob's next comment never reaches Alice's page.
    // The comment after it shows a seq further on than the next one, with nothing `skipped`:
    // the page joins again with `since`, and shows both from `missed`.
    const before = await alice.evaluate(() => ({ ...window.liveroom.conn.stats, seq: window.liveroom.conn.seq }));
    const dropped = aliceLink.dropNext("lost in transit");
    await say(bob, "lost in transit");
    await dropped;
    await say(bob, "after the gap");
    for (const text of ["lost in transit", "after the gap"]) {
      await alice.locator("#danmaku .dm", { hasText: text }).waitFor();
    }
    const after = await alice.evaluate(() => ({ ...window.liveroom.conn.stats, seq: window.liveroom.conn.seq,
      lastJoin: window.liveroom.conn.lastJoin }));
    return { before, after, dropped: aliceLink.dropped,
      shown: [await shown(alice, "lost in transit"), await shown(alice, "after the gap")] };
  });

  await step("poll", async () => {
    await host.click("#poll-form button.primary");
    await Promise.all(viewers.map(page => page.locator(".poll .option").first().waitFor()));
    await alice.click('.poll [data-option="0"]');
    await bob.click('.poll [data-option="1"]');
    const totals = await Promise.all([...viewers, host].map(page => page.waitForFunction(() => {
      const total = document.querySelector(".poll")?.dataset.total ?? document.querySelector("[data-poll-total]")?.dataset.pollTotal;
      return total === "2" && total;
    }).then(handle => handle.jsonValue())));
    const counts = await Promise.all(viewers.map(page => page.$$eval(".poll .count", nodes => nodes.map(n => Number(n.textContent)))));
    await shot(alice, "viewer-phone-poll");
    return { totals, counts };
  });

  await step("sale", async () => {
    // The host schedules a sale; resolves to its id once both viewers show its card.
    const schedule = async startsIn => {
      const before = await alice.evaluate(() => window.liveroom.sales.size);
      await host.fill('#sale-form [name="starts_in_s"]', String(startsIn));
      await host.fill('#sale-form [name="stock"]', "5");
      await host.click("#sale-form button");
      await Promise.all(viewers.map(page => page.waitForFunction(n => window.liveroom.sales.size > n, before)));
      return alice.evaluate(() => [...window.liveroom.sales.keys()].at(-1));
    };
    const card = id => `.sale[data-sale="${id}"]`;
    // One that opens in 2 s (scheduled first: it comes while the other is checked): both
    // buttons open at the start, never before, and both buy.
    const soon = await schedule(2);
    // A sale ten minutes away (however slow the machine, it has not started when checked):
    // the button is disabled, the server refuses a buy, and both countdowns follow the
    // server's clock.
    const later = await schedule(600);
    const disabledBefore = await Promise.all(viewers.map(page => page.locator(`${card(later)} .buy`).isDisabled()));
    const earlyBuy = await bob.evaluate(sale => window.liveroom.conn.call("sale.buy", { sale, qty: 1, request_id: "early" }), later);
    const samples = [];
    for (let i = 0; i < 3; i++) {
      // Each page's server clock against the real time, read in the page at the same moment
      // (performance.timeOrigin + now: the machine's clock, which Bob's skewed Date.now
      // does not touch; the server runs on this machine).
      samples.push(await Promise.all(viewers.map(page => page.evaluate(selector => {
        const real = performance.timeOrigin + performance.now(), clock = window.liveroom.conn.clock;
        return { error: clock.now() - real, rtt: clock.rtt,
          remaining: Number(document.querySelector(`${selector} .countdown`).dataset.remainingMs) };
      }, card(later)))));
      await alice.waitForTimeout(200);
    }
    await shot(bob, "viewer-sale-countdown");
    const startsAt = await alice.evaluate(id => window.liveroom.sales.get(id).sale.starts_at, soon);
    const buy = `${card(soon)} .buy`;
    await Promise.all(viewers.map(page => page.locator(`${buy}:not([disabled])`).waitFor()));
    const openedAt = await Promise.all(viewers.map(page => page.$eval(buy, b => Number(b.dataset.openedAt))));
    for (const page of viewers) await page.click(buy);
    const results = await Promise.all(viewers.map(page => page.waitForFunction(selector =>
      document.querySelector(`${selector} .result`).dataset.code, card(soon)).then(h => h.jsonValue())));
    await shot(alice, "viewer-phone-sale");
    return { startsAt, samples, disabledBefore, earlyBuy, openedLate: openedAt.map(at => at - startsAt), results };
  });

  await step("coupon", async () => {
    await host.click("#drop-form button");
    await Promise.all(viewers.map(page => page.locator(".popup.coupon .grab").waitFor()));
    await shot(alice, "viewer-phone-coupon");
    await alice.click(".popup.coupon .grab");
    await alice.locator(".popup.granted .claim").click();
    await alice.locator(".popup.claimed").waitFor();
    await bob.click(".popup.coupon .grab");
    await bob.locator(".popup.granted .claim").waitFor();
    return { alice: await alice.textContent(".popup.claimed p") };
  });

  await step("header", async () => {
    // Live on the Go live card; the header speaks of the socket only.
    await host.waitForFunction(() => document.querySelector("#live-status").textContent.includes("over WebRTC"));
    return { status: await host.textContent("#status"), live: await host.textContent("#live-status") };
  });

  await step("phone", async () => {
    // Alice's phone, with the poll, sale and coupon cards on her page: one column, nothing
    // wider than the screen, the video on top and still in view (and playing) once she
    // has scrolled down to the cards.
    const look = () => alice.evaluate(() => {
      const box = selector => {
        const r = document.querySelector(selector).getBoundingClientRect();
        return { top: Math.round(r.top), bottom: Math.round(r.bottom), left: Math.round(r.left), width: Math.round(r.width) };
      };
      const video = document.querySelector("#host-video");
      return { width: innerWidth, height: innerHeight, scrollWidth: document.documentElement.scrollWidth, scrollY,
        coarse: matchMedia("(pointer: coarse)").matches, screen: box("#screen"), comment: box("#comment"),
        playing: !video.paused && video.readyState >= 2, time: video.currentTime };
    });
    const top = await look();
    await alice.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    const scrolled = await look();
    await alice.waitForFunction(t => document.querySelector("#host-video").currentTime >= t + 1, scrolled.time);
    const later = await look();
    await alice.screenshot({ path: `${artifacts}/viewer-phone-scrolled.png` });
    await alice.evaluate(() => window.scrollTo(0, 0));
    return { top, scrolled, later };
  });

  await step("likes", async () => {
    await alice.evaluate(() => {
      [window.__likeCommands, window.__likesSent] = [0, 0];
      const call = window.liveroom.conn.call.bind(window.liveroom.conn);
      window.liveroom.conn.call = (event, payload) => {
        if (event === "like.send") [window.__likeCommands, window.__likesSent] = [window.__likeCommands + 1, window.__likesSent + payload.count];
        return call(event, payload);
      };
    });
    for (let i = 0; i < 10; i++) await alice.click("#like");
    await alice.waitForFunction(() => window.__likesSent === 10);  // every tap sent, in batches
    await alice.waitForFunction(() => document.querySelector("#likes").textContent === "10");  // and counted
    return { commands: await alice.evaluate(() => window.__likeCommands), shown: await alice.textContent("#likes") };
  });

  await step("costream", async () => {
    await bob.click("#costream");
    const accept = host.locator("#queue li", { hasText: "Bob" }).locator(".accept");
    await accept.click();
    await bob.locator("#videos video.self").waitFor();
    const frames = await framesOf(alice, "1");
    await shot(alice, "viewer-phone-costream");
    await shot(bob, "viewer-guest-on-stage");
    // The room's WHEP viewers, as the server counts them: at most Alice and Bob on the
    // host and Alice on Bob (a session the page asked for twice while negotiating, left
    // open, made a fourth). Fewer when a loaded machine's host path was lost meanwhile.
    let viewers = Infinity;
    for (const deadline = Date.now() + 15000; viewers > 3 && Date.now() < deadline; await alice.waitForTimeout(200)) {
      const metrics = await (await fetch(`${base}/metrics`)).text();
      const line = metrics.split("\n").find(l => l.startsWith(`liveroom_media_viewers{room="${room}"}`));
      viewers = line ? Number(line.split(" ").pop()) : 0;
    }
    return { frames, viewers, stage: await host.textContent("#stage"), guest: await bob.textContent("#costream-status") };
  });

  await step("dashboard", async () => {
    const page = await open("/dashboard", hostToken, { context: { viewport: { width: 1100, height: 900 } } });
    const read = async target => target.$$eval("[data-stat]", nodes => Object.fromEntries(nodes.map(n => [n.dataset.stat, n.textContent])));
    await host.waitForFunction(() => document.querySelector('[data-stat="claimed"]').textContent === "1");
    await page.waitForFunction(() => document.querySelector('[data-stat="claimed"]').textContent === "1"
      && document.querySelector('[data-stat="orders"]').textContent === "2");
    await page.waitForTimeout(300);
    await shot(host, "host-console");
    await shot(page, "dashboard");
    const types = target => target.evaluate(() => [...window.__types]);
    return { host: await read(host), page: await read(page),
      hot: await host.$$eval("#hot span", nodes => nodes.map(n => n.textContent)),
      hostTypes: await types(host), viewerTypes: [...await types(alice), ...await types(bob)] };
  });

  // Carol comes once the dashboards' counts were read, and plays through HLS beside the
  // steps below (nothing of hers is counted by them): the show is that much shorter.
  const hls = step("hls", async () => {
    // Carol's WHEP is refused as from a room whose WebRTC viewers are full: her page plays
    // the host through HLS (hls.js, Chromium has MSE with H.264) and the video advances.
    const full = { status: 503, contentType: "application/json",
      body: JSON.stringify({ error: { code: "too_many_viewers", message: "full" } }) };
    const carol = await open("/room", carolToken, { context: { viewport: { width: 800, height: 600 } },
      route: ["**/whep/**", route => route.fulfill(full)] });
    const mse = await carol.evaluate(() => MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"'));
    await carol.waitForFunction(() => document.querySelector("#host-video").dataset.player);
    const player = await carol.$eval("#host-video", v => v.dataset.player);
    const time = () => carol.$eval("#host-video", v => v.currentTime);
    await carol.waitForFunction(() => document.querySelector("#host-video").currentTime > 0);
    const t1 = await time();
    await carol.waitForFunction(t1 => document.querySelector("#host-video").currentTime >= t1 + 1, t1);
    const t2 = await time();
    const levels = await carol.evaluate(() => window.liveroom.players.get("host").session.hls.levels.length);
    const pickerHidden = await carol.$eval("#quality-picker", n => n.hidden);
    await shot(carol, "viewer-hls");
    await carol.context().close();
    return { mse, player, t1, t2, levels, pickerHidden };
  });

  // The primary ingest path fails over beside the steps below too (they read no video).
  const ingest = step("ingest", async () => {
    // Both ingest paths report their own figures; the primary's camera track stops, the
    // server fails over to the backup, and the viewers' video goes on.
    const paths = () => host.$$eval("#paths li[data-path]", nodes => nodes.map(n =>
      ({ path: n.dataset.path, active: n.dataset.active, fps: Number(n.dataset.fps), kbps: Number(n.dataset.kbps), problem: n.dataset.problem })));
    // A wait that gives up says what the console showed then (paths, ingest events).
    const until = (what, predicate) => host.waitForFunction(predicate).catch(async error => {
      const events = await host.$$eval("#ingest li", nodes => nodes.map(n => n.textContent)).catch(() => []);
      throw new Error(`${what}: ${error.message.split("\n")[0]}; paths ${JSON.stringify(await paths().catch(() => null))}; ingest ${JSON.stringify(events)}`);
    });
    await until("the backup sending", () => Number(document.querySelector('#paths [data-path="backup"]')?.dataset.fps) > 0);
    const before = await paths();
    const framesBefore = await framesOf(alice, "host", 1);
    await host.evaluate(() => {
      const sender = window.liveroom.live[0].pc.getSenders().find(s => s.track?.kind === "video");
      window.__paused = [sender, sender.track];
      return sender.replaceTrack(null);
    });
    // The primary is silent, the backup on air, and the last switch was primary → backup
    // (on a loaded machine the paths may have flapped before: the end state is what counts).
    await until("the failover to the backup", () => {
      const primary = document.querySelector('#paths [data-path="primary"]');
      const backup = document.querySelector('#paths [data-path="backup"]');
      const last = document.querySelector('#ingest li[data-state="failover"]');
      return primary?.dataset.problem === "silence" && backup?.dataset.active === "true"
        && last?.textContent.includes("failover primary → backup");
    });
    const after = await paths();
    const framesAfter = await framesOf(alice, "host", framesBefore + 15);
    await shot(host, "host-console-ingest");
    await host.evaluate(() => window.__paused[0].replaceTrack(window.__paused[1]));
    return { before, after, framesBefore, framesAfter,
      events: await host.$$eval("#ingest li", nodes => nodes.map(n => n.textContent)) };
  });

  await step("rule", async () => {
    // A coupon rule "after 1 like" from the host's form; Alice taps like and is granted one.
    await host.selectOption('#rule-form [name="trigger"]', "activity");
    await host.selectOption('#rule-form [name="activity"]', "like");
    await host.fill('#rule-form [name="count"]', "1");
    await host.fill('#rule-form [name="title"]', "Thanks for the like");
    await host.evaluate(() => {  // the rule's ack, when the server has it (not a fixed wait)
      const conn = window.liveroom.conn, call = conn.call.bind(conn);
      conn.call = async (event, payload) => {
        const ack = await call(event, payload);
        if (event === "coupon.rule") window.__ruleAck = ack;
        return ack;
      };
    });
    await host.click("#rule-form button");
    const ack = await host.waitForFunction(() => window.__ruleAck).then(h => h.jsonValue());
    if (!ack.ok) throw new Error(`the rule was refused: ${JSON.stringify(ack.error)}`);
    await alice.click("#like");
    await alice.locator(".popup.granted", { hasText: "Thanks for the like" }).waitFor();
    return true;
  });

  await step("moderation", async () => {
    await host.locator("#messages li", { hasText: "<img" }).getByText("Delete").click();
    await host.locator("#messages li", { hasText: "<img" }).waitFor({ state: "detached" });
    // A second console opened now lists the messages sent before it opened (the staff's
    // join state), as the first one does, without the deleted one. It opens meanwhile.
    const late = open("/host", hostToken, { context: { viewport: { width: 1280, height: 900 } } });
    await host.locator("#messages li", { hasText: "while you were away" }).getByText("Pin").click();
    await alice.locator("#pinned", { hasText: "while you were away" }).waitFor();
    await host.locator("#messages li", { hasText: "hello from alice" }).getByText("Mute 10 min").click();
    // Alice's page hears of it (danmaku.muted), then her next comment is refused.
    const muted = () => alice.waitForFunction(() => document.querySelector("#comment-error").dataset.code === "muted");
    await muted();
    await alice.$eval("#comment-error", node => { node.textContent = ""; delete node.dataset.code; });
    await alice.fill("#text", "can I still talk?");
    await alice.click("#comment button");
    await muted();
    await shot(alice, "viewer-phone-muted");
    const texts = page => page.$$eval("#messages li .text", nodes => nodes.map(n => n.textContent));
    const lateConsole = await late;
    const recent = { host: await texts(host), late: await texts(lateConsole) };
    await lateConsole.context().close();
    return { pinned: await alice.textContent("#pinned"), error: await alice.textContent("#comment-error"), recent };
  });

  await step("show", async () => {
    // The run of show (the server runs it): its first stage drops the coupon of the coupon form.
    await host.fill('#drop-form [name="title"]', "Opening gift");
    await host.click("#show-start");
    await bob.locator(".popup.coupon", { hasText: "Opening gift" }).waitFor();
    await host.waitForFunction(() => document.querySelector('[data-step="0"]').className === "current");
    await shot(host, "host-console-show");
    return host.$$eval("#steps li", nodes => nodes.map(n => n.className));
  });

  // Dan signs in on a page of his own while Bob's page takes a danmaku storm (after the
  // dashboard's counts were read).
  const signin = step("signin", async () => {
    // Dan opens a viewer link without a token: the sign-in form alone, nothing started.
    // A bad token is refused and asked for again; a good one signs him in.
    // His first WHEP answer is the server's while a publisher's tracks are coming up
    // (400 no_media, as a viewer present when the host goes live may get): he asks again.
    let whepPosts = 0;
    const noMedia = { status: 400, contentType: "application/json",
      body: JSON.stringify({ error: { code: "no_media", message: "the offer receives none of the published tracks" } }) };
    const page = await open("/room", null, { context: { viewport: { width: 800, height: 600 } },
      route: ["**/whep/**", route => (route.request().method() === "POST" && !whepPosts++ ? route.fulfill(noMedia) : route.continue())] });
    const whep = [];  // what his page asked of WHEP and was answered, in order
    page.on("response", response => {
      const url = new URL(response.url());
      if (!url.pathname.startsWith("/whep/")) return;
      const at = whep.push(`${response.request().method()} ${url.search} ${response.status()}`) - 1;
      if (response.status() >= 400) response.json().then(body => { whep[at] += ` ${body.error?.code}`; }, () => {});
    });
    const visible = () => page.evaluate(() => Object.fromEntries(["form.signin", "main", "#status", "#online"]
      .map(selector => [selector, document.querySelector(selector)?.checkVisibility() ?? false])));
    const alone = { visible: await visible(), started: await page.evaluate(() => Boolean(window.liveroom)) };
    await page.fill("form.signin input", "not-a-token");
    await page.click("form.signin button");
    await page.waitForFunction(() => document.querySelector("form.signin .error")?.textContent);
    const refused = { visible: await visible(), error: await page.textContent("form.signin .error") };
    await page.fill("form.signin input", danToken);
    await page.click("form.signin button");
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "connected");
    const signedIn = { visible: await visible(), frames: await framesOf(page, "host"), whepPosts, whep,
      player: await page.evaluate(() => { const e = window.liveroom.players.get("host"); return e ? [e.kind, e.session?.pc?.connectionState ?? null] : null; }) };
    await page.context().close();
    return { alone, refused, signedIn };
  });

  await step("storm", async () => {
    // 150 messages at once into Bob's danmaku layer: no two in a lane ever overlap, the
    // extra wait (at most 40) and the oldest of those are dropped.
    await bob.evaluate(() => { for (let i = 0; i < 150; i++) window.liveroom.layer.add(`storm ${i} ` + "弹".repeat(i % 17)); });
    let overlaps = 0, onScreen = 0;
    for (let sample = 0; sample < 5; sample++) {
      // Boxes of nothing (a message between its end and its removal may measure 0x0) hide nothing.
      const boxes = (await bob.$$eval("#danmaku .dm", nodes => nodes.filter(n => n.style.visibility === "visible")
        .map(n => ({ lane: n.dataset.lane, ...JSON.parse(JSON.stringify(n.getBoundingClientRect())) }))))
        .filter(box => box.width > 0 && box.height > 0);
      onScreen = Math.max(onScreen, boxes.length);
      const lanes = new Map();
      for (const box of boxes) lanes.set(box.lane, [...(lanes.get(box.lane) || []), box]);
      for (const lane of lanes.values()) {
        lane.sort((a, b) => a.x - b.x);
        for (let i = 1; i < lane.length; i++) if (lane[i - 1].x + lane[i - 1].width > lane[i].x + 1) overlaps++;
      }
      await bob.waitForTimeout(250);
    }
    await shot(bob, "viewer-danmaku-storm");
    return { overlaps, onScreen, ...(await bob.evaluate(() => ({ dropped: window.liveroom.layer.dropped, waiting: window.liveroom.layer.waiting.length }))) };
  });

  await signin;

  await Promise.all([hls, ingest]);

  await step("integrity", async () => {
    // Over the whole show: no page was sent an item (a seq) twice, and only the gap the
    // driver made sent a page back to `join`.
    const stats = page => page.evaluate(() => window.liveroom.conn.stats);
    return { host: await stats(host), alice: await stats(alice), bob: await stats(bob) };
  });
});
