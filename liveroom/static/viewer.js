// The viewer room: video, danmaku, comments, likes, poll, coupons, flash sales, co-stream.
import { $, claims, el, formatMs, humanError, room, RoomConnection, signIn, signOut } from "/static/common.js";
import { DanmakuLayer } from "/static/danmaku.js";
import { play, playHls, publish } from "/static/media.js";
import { ShopViewer } from "/static/shop.js";
import { AuctionPanel } from "/static/auction.js";
import { GiftPanel } from "/static/gift.js";

const layer = new DanmakuLayer($("#danmaku"));
const players = new Map();   // slot -> {video, session}
const sales = new Map();     // sale id -> {sale, node}
let conn, token, shop, me, myStage = null, punishedUntil = null, videoStarted = false;
// Likes: the room's total as the server last said, the taps not sent yet, and those sent
// and not acknowledged. The total only grows: a stale like.total never takes it back.
let likesTotal = 0, pendingLikes = 0, sendingLikes = 0;
const panels = [];  // the auction card and the gifts: each takes the state and the items it knows

$("#title").textContent = room;
document.title = `${room} · liveroom`;
signIn(start);

function start(t) {
  token = t;
  me = claims(t);
  conn = new RoomConnection(t, { onItem, onState, onStatus, onSignedOut: signOut });
  shop = new ShopViewer($("#shop"), conn, me);
  panels.push(new AuctionPanel(conn, $("#cards"), { me }), new GiftPanel(conn, $("#gifts")));
  window.liveroom = { conn, layer, sales, players, shop, panels };
  $("#comment").addEventListener("submit", sendComment);
  $("#like").addEventListener("click", () => { pendingLikes++; showLikes(); });
  setInterval(flushLikes, 400);
  $("#hide-danmaku").addEventListener("change", e => layer.setHidden(e.target.checked));
  $("#costream").addEventListener("click", requestStage);
  $("#unmute").addEventListener("click", () => document.querySelectorAll("video.remote").forEach(v => { v.muted = false; }));
  $("#tap-to-play").addEventListener("click", () => document.querySelectorAll("video.remote").forEach(startPlayback));
  $("#host-video").addEventListener("loadedmetadata", event => startPlayback(event.target));
  $("#host-video").addEventListener("playing", () => { $("#tap-to-play").hidden = true; });
  setInterval(tickSales, 50);
}

function onStatus(status, detail) {
  $("#status").textContent = status === "error" ? humanError(detail) : status;
  $("#status").className = status === "connected" ? "ok" : "muted";
  // The video starts once the token has been accepted (a refused one asks for another).
  if (status === "connected" && !videoStarted) {
    videoStarted = true;
    watch("host");
  }
}

function onState(state) {
  likesTotal = state.like?.total ?? 0;
  showLikes();
  setPinned(state.danmaku?.pinned);
  $("#cards").replaceChildren();
  sales.clear();
  if (state.poll) showPoll(state.poll);
  for (const sale of state.sale?.sales || []) showSale(sale);
  for (const grant of state.coupon?.pending || []) showGrant(grant);
  if (state.costream) showStage(state.costream.guests || []);
  shop.state(state);
  panels.forEach(panel => panel.onState(state));
}

const ITEMS = {
  "danmaku.message": d => {
    layer.add(d.text, { mine: d.user.id === me.sub });
    window.liveroom.lastMessage = d;
  },
  "danmaku.pinned": d => setPinned(d),
  "danmaku.unpinned": () => setPinned(null),
  "danmaku.deleted": d => document.querySelectorAll(`[data-id="${CSS.escape(d.id)}"]`).forEach(n => n.remove()),
  "danmaku.muted": d => showError({ code: "muted" }, (punishedUntil = d.until)),
  "danmaku.banned": d => showError({ code: "banned" }, (punishedUntil = d.until)),
  "room.online": d => { $("#online").textContent = `● ${d.count}`; },
  "like.total": d => { likesTotal = Math.max(likesTotal, d.total); showLikes(); },
  "poll.started": showPoll,
  "poll.tally": d => updatePoll(d),
  "poll.ended": d => updatePoll(d, true),
  "coupon.drop": showDrop,
  "coupon.granted": showGrant,
  "sale.scheduled": showSale,
  "sale.started": d => updateSale(d.sale, { phase: "running", remaining: d.remaining, ends_at: d.ends_at }),
  "sale.stock": d => updateSale(d.sale, { remaining: d.remaining }),
  "sale.sold_out": d => updateSale(d.sale, { remaining: 0 }),
  "sale.ended": d => updateSale(d.sale, { phase: "ended", remaining: d.remaining }),
  "costream.stage": d => showStage(d.guests),
  "costream.accepted": goOnStage,
  "costream.rejected": () => { $("#costream-status").textContent = "The host declined your request."; },
  "costream.removed": leaveStage,
  // A host's other camera (path "camera") comes and goes without touching the program, and
  // so does a host path that ends while another keeps the program on air (`on_air`). A
  // promoted backup takes over the program's viewers on the server: a page already playing
  // the slot keeps its session.
  "media.publisher": d => d.path === "camera" ? null
    : d.state === "connected" || (d.state === "promoted" && !players.has(String(d.slot))) ? watch(d.slot)
    : d.state === "promoted" || d.on_air ? null : unwatch(d.slot),
};

function onItem(item) {
  ITEMS[item.type]?.(item.data, item);
  shop.item(item);
  panels.forEach(panel => panel.onItem(item));
}

// --- comments and likes ---------------------------------------------------------------

async function sendComment(event) {
  event.preventDefault();
  const text = $("#text").value.trim();
  if (!text) return;
  const ack = await conn.call("danmaku.send", { text });
  if (ack.ok) { $("#text").value = ""; $("#comment-error").textContent = ""; return; }
  showError(ack.error, ["muted", "banned"].includes(ack.error.code) ? punishedUntil : null);
}

function showError(error, until) {
  const left = until > conn.clock.now() ? ` (${formatMs(until - conn.clock.now())} left)` : "";
  $("#comment-error").textContent = humanError(error) + left;
  $("#comment-error").dataset.code = error.code;
}

async function flushLikes() {
  if (!pendingLikes) return;
  const count = pendingLikes;
  [pendingLikes, sendingLikes] = [0, sendingLikes + count];
  const ack = await conn.call("like.send", { count });
  sendingLikes -= count;
  if (ack.ok) likesTotal = Math.max(likesTotal, ack.total);
  showLikes();
}

function showLikes() { $("#likes").textContent = likesTotal + pendingLikes + sendingLikes; }

function setPinned(message) {
  $("#pinned").hidden = !message;
  $("#pinned").replaceChildren(...(message ? ["📌 ", el("b", {}, message.user?.name || ""), " ", message.text] : []));
}

// --- poll -------------------------------------------------------------------------------

function showPoll(poll) {
  document.querySelector(".poll")?.remove();
  const options = poll.options.map((text, i) =>
    el("button", { class: "option", "data-option": i, onclick: () => vote(poll.poll, i) },
      el("span", { class: "bar" }), el("span", { class: "label" }, text), el("span", { class: "count" }, "0")));
  const card = el("div", { class: "card poll", "data-poll": poll.poll },
    el("h3", {}, "📊 ", poll.question), ...options, el("p", { class: "muted meta" }));
  card.endsAt = poll.ends_at;
  $("#cards").prepend(card);
  updatePoll(poll);
}

function updatePoll(data, ended = false) {
  const card = document.querySelector(`.poll[data-poll="${CSS.escape(data.poll)}"]`);
  if (!card) return data.question && ended ? showPoll(data) || updatePoll(data, true) : undefined;
  const total = data.total || 0;
  card.querySelectorAll(".option").forEach((button, i) => {
    const n = data.counts?.[i] || 0;
    button.querySelector(".count").textContent = n;
    button.querySelector(".bar").style.width = `${total ? (100 * n) / total : 0}%`;
    if (ended) button.disabled = true;
    if (ended && data.winners?.includes(i)) button.classList.add("winner");
  });
  card.dataset.total = total;
  card.querySelector(".meta").textContent = ended ? `Closed · ${total} votes` : `${total} votes`;
  if (ended) card.classList.add("ended");
}

async function vote(poll, option) {
  const ack = await conn.call("poll.vote", { poll, option });
  const card = document.querySelector(`.poll[data-poll="${CSS.escape(poll)}"]`);
  if (ack.ok) card?.querySelector(`[data-option="${option}"]`).classList.add("mine");
  else card.querySelector(".meta").textContent = humanError(ack.error);
}

// --- coupons ----------------------------------------------------------------------------

function popup(kind, key, ...children) {
  document.querySelector(`.popup[data-key="${CSS.escape(key)}"]`)?.remove();
  const node = el("div", { class: `card popup ${kind}`, "data-key": key }, ...children,
    el("button", { class: "close", title: "close", onclick: () => node.remove() }, "×"));
  $("#cards").prepend(node);
  return node;
}

function showDrop(drop) {
  const button = el("button", { class: "grab" }, "Grab it");
  const node = popup("coupon", drop.rule, el("h3", {}, "🎟 ", drop.title), el("p", {}, `${drop.count} coupons, first come first served`), button);
  button.addEventListener("click", async () => {
    const ack = await conn.call("coupon.grab", { rule: drop.rule });
    if (ack.ok) showGrant({ ...ack.grant, title: drop.title, rule: drop.rule });
    else node.querySelector("p").textContent = humanError(ack.error);
  });
}

function showGrant(grant) {
  const button = el("button", { class: "claim" }, "Claim");
  const node = popup("coupon granted", grant.rule, el("h3", {}, "🎁 You got a coupon"), el("p", {}, grant.title), button);
  button.addEventListener("click", async () => {
    const ack = await conn.call("coupon.claim", { rule: grant.rule });
    node.querySelector("p").textContent = ack.ok || ack.error?.code === "already_claimed" ? `${grant.title} · claimed ✓` : humanError(ack.error);
    if (ack.ok) { button.remove(); node.classList.add("claimed"); }
  });
}

// --- flash sales: the countdown runs on the server's clock --------------------------------

function showSale(sale) {
  const id = sale.id;
  const buy = el("button", { class: "buy", disabled: true }, "Buy");
  const node = el("div", { class: "card sale", "data-sale": id },
    el("h3", {}, "⚡ ", sale.title), el("p", {}, el("b", { class: "price" }, `¥${sale.price}`), " · ",
      el("span", { class: "stock" }), " left"),
    el("p", { class: "countdown" }), buy, el("p", { class: "result muted" }));
  document.querySelector(`.sale[data-sale="${CSS.escape(id)}"]`)?.remove();
  $("#cards").prepend(node);
  const entry = { sale: { ...sale, remaining: sale.remaining ?? sale.stock }, node, requestId: crypto.randomUUID() };
  sales.set(id, entry);
  buy.addEventListener("click", () => buyNow(entry));
  updateSale(id, {});
}

function updateSale(id, change) {
  const entry = sales.get(id);
  if (!entry) return;
  Object.assign(entry.sale, change);
  entry.node.querySelector(".stock").textContent = entry.sale.remaining;
  tickSale(entry);
}

function tickSales() { sales.forEach(tickSale); }

function tickSale(entry) {
  const { sale, node } = entry;
  const now = conn.clock.now();
  const before = now < sale.starts_at, over = sale.phase === "ended" || now >= sale.ends_at;
  const open = !before && !over && sale.remaining > 0;
  const countdown = node.querySelector(".countdown");
  countdown.dataset.remainingMs = Math.max(0, sale.starts_at - now);
  countdown.textContent = before ? `Starts in ${formatMs(sale.starts_at - now)}`
    : over ? "Ended" : sale.remaining > 0 ? `On sale · ends in ${formatMs(sale.ends_at - now)}` : "Sold out";
  const buy = node.querySelector(".buy");
  if (open && buy.disabled && !entry.busy) { buy.disabled = false; buy.dataset.openedAt = now; }
  if (!open) buy.disabled = true;
}

async function buyNow(entry) {
  entry.busy = true;
  const ack = await conn.call("sale.buy", { sale: entry.sale.id, qty: 1, request_id: entry.requestId });
  entry.busy = false;
  const result = entry.node.querySelector(".result");
  result.textContent = ack.ok ? `Ordered ✓ (order ${ack.order.id})` : humanError(ack.error);
  result.dataset.code = ack.ok ? "ok" : ack.error.code;
  if (ack.ok) entry.requestId = crypto.randomUUID();
}

// --- video and co-streaming ---------------------------------------------------------------

async function watch(slot, attempt = 0) {
  slot = String(slot);
  if (myStage != null && slot === String(myStage.slot)) return;
  unwatch(slot);
  let video = slot === "host" ? $("#host-video")
    : el("video", { autoplay: true, muted: true, playsinline: true, "data-slot": slot, onloadedmetadata: e => startPlayback(e.target) });
  video.muted = true;
  video.classList.add("remote");
  if (slot !== "host") $("#videos").append(video);
  const entry = { video, kind: "whep" };
  players.set(slot, entry);
  const wanted = () => players.get(slot) === entry;
  try {
    const session = await play(room, token, slot, video, wanted);
    // Watched again while this one was negotiating (a guest's `costream.stage` and its
    // `media.publisher` item come together): this session ends now, or it would stay open
    // on the server, counted against the viewer's sessions and refusing the one wanted.
    if (!wanted()) return session.stop();
    entry.session = session;
    if (slot === "host") { $("#offline").hidden = true; fallBackIfStuck(entry); }
  } catch (error) {
    const current = wanted();
    // The publisher is there but its tracks are not yet (it is just coming up), a guest
    // is on stage and about to publish, or this viewer's other sessions are still
    // connecting (too_many_sessions: a stage's members are asked for at once), or the
    // server's media worker was too busy to answer in time (outcome_unknown): ask again.
    const coming = ["no_media", "too_many_sessions", "outcome_unknown"].includes(error.code) || (slot !== "host" && error.code === "not_publishing");
    const retry = current && coming && attempt < 10;
    // Not live yet: the next `media.publisher connected` starts it (HLS has nothing either).
    if (slot === "host" && current && !retry && error.code !== "not_publishing") return fallBack(entry);
    if (slot !== "host") video.remove();
    if (current) players.delete(slot);
    if (retry) setTimeout(() => players.has(slot) || !onStage(slot) || watch(slot, attempt + 1), 1000);
  }
}

// Videos start muted, which browsers let play by themselves; some phones still refuse
// (iOS in Low Power Mode, data savers): then the video waits for a tap.
function startPlayback(video) {
  video.play().catch(error => {
    if (error.name === "NotAllowedError" && video.paused) $("#tap-to-play").hidden = false;
  });
}

// WHEP refused (the room's WebRTC viewers are full, the media plane is down) or its
// connection failed (UDP blocked): play the host through HLS when the server has it.
function fallBackIfStuck(entry) {
  const pc = entry.session.pc;
  const stuck = () => players.get("host") === entry && entry.kind === "whep" && pc.connectionState !== "connected";
  pc.addEventListener("connectionstatechange", () => pc.connectionState === "failed" && stuck() && fallBack(entry));
  setTimeout(() => stuck() && fallBack(entry), 10_000);
}

async function fallBack(entry) {
  entry.session?.stop();
  entry.video.srcObject = null;
  entry.kind = "hls";
  try {
    entry.session = await playHls(room, entry.video, levels => players.get("host") === entry && showQualities(entry, levels));
    if (players.get("host") !== entry) return entry.session.stop();
    entry.kind = entry.session.kind;
    entry.video.dataset.player = entry.kind;
    $("#offline").hidden = true;
  } catch {
    if (players.get("host") === entry) players.delete("host");
  }
}

// The HLS fallback's quality picker: Auto (hls.js picks by bandwidth) or one variant.
function showQualities(entry, { levels, chosen, playing }) {
  const select = $("#quality");
  const names = levels.map(level => `${level.height}p · ${Math.round(level.bitrate / 1000)} kb/s`);
  if ([...select.options].slice(1).map(o => o.textContent).join() !== names.join()) {
    select.replaceChildren(el("option", { value: -1 }, "Auto"), ...names.map((name, i) => el("option", { value: i }, name)));
  }
  select.onchange = () => entry.session.setLevel(Number(select.value));  // this player's (a later fallback has its own)
  select.options[0].textContent = chosen === -1 && names[playing] ? `Auto (${levels[playing].height}p)` : "Auto";
  select.value = String(chosen);
  select.dataset.playing = playing;
  $("#quality-picker").hidden = levels.length < 2;
}

function unwatch(slot) {
  slot = String(slot);
  const entry = players.get(slot);
  if (!entry) return;
  entry.session?.stop();
  players.delete(slot);
  if (slot !== "host") return entry.video.remove();
  entry.video.srcObject = null;
  delete entry.video.dataset.player;
  $("#offline").hidden = false;
  $("#quality-picker").hidden = true;
}

let stageSlots = new Set();
const onStage = slot => slot === "host" || stageSlots.has(String(slot));

function showStage(guests) {
  const slots = stageSlots = new Set(guests.map(g => String(g.slot)));
  for (const slot of players.keys()) if (slot !== "host" && !slots.has(slot)) unwatch(slot);
  for (const g of guests) if (!players.has(String(g.slot)) && g.id !== me.sub) watch(g.slot);
}

async function requestStage() {
  const ack = await conn.call("costream.request");
  $("#costream-status").textContent = ack.ok ? `You are number ${ack.position} in the queue.` : humanError(ack.error);
}

async function goOnStage(grant) {
  $("#costream-status").textContent = "You are on stage!";
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const video = el("video", { autoplay: true, muted: true, playsinline: true, class: "self" });
    video.srcObject = stream;
    $("#videos").append(video);
    myStage = { slot: grant.slot, stream, video, session: await publish(room, grant.token, stream) };
  } catch (error) {
    $("#costream-status").textContent = `Could not publish: ${error.message}`;
  }
}

function leaveStage() {
  if (!myStage) return;
  myStage.session?.stop();
  myStage.stream.getTracks().forEach(t => t.stop());
  myStage.video.remove();
  myStage = null;
  $("#costream-status").textContent = "You left the stage.";
}
