// The host console: go live (WHIP), run of show, polls, flash sales, coupons, co-stream
// queue, moderation, and the live dashboard, all over one Socket.IO connection.
import { $, el, formatMs, humanError, room, RoomConnection, signIn, signOut } from "/static/common.js";
import { Dashboard } from "/static/dashboard.js";
import { publish } from "/static/media.js";
import { ShopHost } from "/static/shop.js";
import { AuctionPanel, bindAuctionForm } from "/static/auction.js";
import { bindPkForm, GiftPanel } from "/static/gift.js";

// The run of show is the server's (plugins/show.py): it runs on the server's clock, so it goes
// on when this tab closes. The console shows the room's plan (the five-stage template until
// the host sets another) and, on start, sends it with the drop, poll and sale of its forms.
let plan = [], stage = null, showOver = false;
const DOES = { "coupon.drop": "drops the coupon", "poll.create": "starts the poll", "sale.schedule": "schedules the flash sale",
  "danmaku.pin": "pins a message" };

let conn, token, dashboard, shop, live = [];
const messages = [];
const panels = [];  // the auction card and the gifts (auction.js, gift.js)

$("#title").textContent = room;
document.title = `${room} · host · liveroom`;
signIn(start);

function start(t) {
  token = t;
  $("#viewer-link").href = `/room/${encodeURIComponent(room)}`;
  dashboard = new Dashboard($("#dashboard"));
  conn = new RoomConnection(t, {
    onItem: item => { ITEMS[item.type]?.(item.data); dashboard.onItem(item); shop.item(item); panels.forEach(p => p.onItem(item)); },
    onState: state => { onState(state); dashboard.onState(state); shop.state(state); panels.forEach(p => p.onState(state)); },
    onStatus: (status, detail) => {
      $("#status").textContent = status === "error" ? humanError(detail) : status;
      $("#status").className = status === "connected" ? "ok" : "muted";
    },
    onSignedOut: signOut,
  });
  shop = new ShopHost($("#shop"), conn);
  panels.push(new AuctionPanel(conn, $("#auction-card"), { host: true }), new GiftPanel(conn, $("#gift-panel"), { host: true }));
  bindAuctionForm(conn, $("#auction-form"), $("#auction-error"));
  bindPkForm(conn, $("#pk-form"), $("#pk-error"));
  window.liveroom = { conn, dashboard, shop, panels, get live() { return live; } };
  bind();
  renderSteps();
  setInterval(showClock, 500);
}

function onState(state) {
  showMessages(state.danmaku?.recent || []);
  showHeld(state.danmaku?.review || []);
  showFaq(state.faq);
  plan = state.show?.plan || plan;
  stage = state.show?.stage || null;
  renderSteps();
  showQueue(state.costream?.queue || []);
  showStage(state.costream?.guests || []);
  $("#slow").value = state.danmaku?.slow_mode_s ?? 0;
}

const ITEMS = {
  "danmaku.message": addMessage,
  "show.stage": d => { stage = d; showOver = false; renderSteps(); },
  "show.ended": () => { stage = null; showOver = true; renderSteps(); },
  "show.action": d => { $("#show-error").textContent = d.ok ? "" : `${d.command}: ${humanError(d.error)}`; },
  "danmaku.held": addHeld,
  "faq.entries": d => showFaq({ entries: d.entries }),
  "faq.unanswered": d => addUnanswered(d),
  "danmaku.reviewed": d => { document.querySelector(`#held [data-id="${CSS.escape(d.id)}"]`)?.remove(); },
  "danmaku.deleted": d => { document.querySelector(`#messages [data-id="${CSS.escape(d.id)}"]`)?.remove(); },
  "costream.queue": d => showQueue(d.queue),
  "costream.stage": d => showStage(d.guests),
  "media.publisher": d => ingest(`${d.slot}: ${d.state}`, d),
  "media.failover": d => ingest(`failover ${d.from} → ${d.to} (${d.reason})`, { state: "failover" }),
  "media.program": d => {
    if (d.from) ingest(`camera ${d.from} → ${d.camera} (${d.reason})`, { state: "cut" });
    showCameras(d.camera, d.cameras.map(name => ({ name })));
  },
  "media.restream": d => showRestream(d),
  "media.stats": d => {
    if (d.slot !== "host") return;
    $("#live-status").textContent = `Live · ${Math.round(((d.bitrate_bps.video || 0) + (d.bitrate_bps.audio || 0)) / 1000)} kb/s`
      + ` · ${d.fps} fps · ${d.viewers} playing the video over WebRTC`;
    showPaths(d);
    if (d.ingest?.cameras) showCameras(d.ingest.camera, d.ingest.cameras);
  },
};

function call(event, payload, errorBox) {
  return conn.call(event, payload).then(ack => {
    if (errorBox) $(errorBox).textContent = ack.ok ? "" : humanError(ack.error);
    return ack;
  });
}

function form(selector) {
  return Object.fromEntries(new FormData($(selector)));
}

function bind() {
  $("#go-live").addEventListener("click", goLive);
  $("#stop").addEventListener("click", stopLive);
  $("#poll-form").addEventListener("submit", e => { e.preventDefault(); startPoll(); });
  $("#poll-close").addEventListener("click", () => dashboard.poll && call("poll.close", { poll: dashboard.poll.poll }, "#poll-error"));
  $("#sale-form").addEventListener("submit", e => { e.preventDefault(); scheduleSale(); });
  $("#drop-form").addEventListener("submit", e => { e.preventDefault(); dropCoupon(); });
  $("#rule-form").addEventListener("submit", e => { e.preventDefault(); addRule(); });
  $('#rule-form [name="trigger"]').addEventListener("change", showTriggerFields);
  showTriggerFields();
  $("#slow-set").addEventListener("click", () => call("danmaku.slow", { interval_s: Number($("#slow").value) }, "#mod-error"));
  $("#faq-form").addEventListener("submit", e => { e.preventDefault(); saveFaq(); });
  $("#unpin").addEventListener("click", () => call("danmaku.unpin", {}, "#mod-error"));
  $("#show-start").addEventListener("click", startShow);
  $("#show-next").addEventListener("click", () => call("show.next", {}, "#show-error"));
  $("#restream-form").addEventListener("submit", e => { e.preventDefault(); restreams("POST", "", form("#restream-form")); });
  restreams("GET").then(d => d?.restreams?.forEach(showRestream));
  program("GET").then(d => d && showCameras(d.program.camera, d.program.cameras));
}

// --- cameras (docs/media.md "Multi-camera"): one button per camera, the one on air marked ---

let cameras = new Map();  // name -> {sending}: the latest known of each camera

async function program(method, body = undefined) {
  const res = await fetch(`/api/rooms/${encodeURIComponent(room)}/program`, {
    method, body: body && JSON.stringify(body),
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" } });
  const data = await res.json().catch(() => ({}));
  $("#camera-error").textContent = res.ok || method === "GET" ? "" : humanError(data.error);
  return res.ok ? data : null;
}

// From a media.program item (names only), the program API or media.stats (with `sending`).
function showCameras(onAir, list) {
  cameras = new Map(list.map(c => [c.name, { sending: c.sending ?? cameras.get(c.name)?.sending ?? true }]));
  if (!cameras.size) { $("#cameras").replaceChildren(el("li", { class: "muted" }, "not live")); return; }
  $("#cameras").replaceChildren(...[...cameras].map(([name, c]) =>
    el("li", { "data-camera": name, "data-on-air": String(name === onAir), "data-sending": String(c.sending) },
      el("span", { class: "text" }, el("b", {}, name), name === onAir ? " · on air" : c.sending ? " · ready" : " · not sending"),
      el("button", { disabled: name === onAir, onclick: () => program("POST", { camera: name })
        .then(d => d && showCameras(d.program.camera, d.program.cameras)) }, name === onAir ? "On air" : "Cut to"))));
}

// --- restreams (docs/media.md): each destination's state, from media.restream items ---------

async function restreams(method, path = "", body = undefined) {
  const res = await fetch(`/api/rooms/${encodeURIComponent(room)}/restreams${path}`, {
    method, body: body && JSON.stringify(body),
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" } });
  const data = await res.json().catch(() => ({}));
  $("#restream-error").textContent = res.ok || method === "GET" ? "" : humanError(data.error);
  return res.ok ? data : null;
}

function showRestream(d) {
  let li = document.querySelector(`#restreams [data-id="${CSS.escape(d.id)}"]`);
  if (["removed", "ended"].includes(d.state)) { li?.remove(); return; }
  if (!li) $("#restreams").append(li = el("li", { "data-id": d.id }));
  li.dataset.state = d.state;
  li.replaceChildren(el("span", { class: "text" }, `${d.target} · ${d.state}${d.error ? ` · ${d.error}` : ""}`),
    el("button", { onclick: () => restreams("DELETE", `/${encodeURIComponent(d.id)}`) }, "Remove"));
}

// --- interactions -------------------------------------------------------------------------

function pollPayload() {
  const f = form("#poll-form");
  const options = f.options.split("\n").map(s => s.trim()).filter(Boolean);
  return { question: f.question, options, duration_s: Number(f.duration_s) };
}

function salePayload() {
  const f = form("#sale-form");
  return { sku: f.sku, title: f.title, price: f.price, stock: Number(f.stock),
    per_user_limit: Number(f.per_user_limit), duration_s: Number(f.duration_s), starts_in_s: Number(f.starts_in_s) };
}

function dropPayload() {
  const f = form("#drop-form");
  return { title: f.title, count: Number(f.count) };
}

function startPoll() {
  return call("poll.create", pollPayload(), "#poll-error");
}

function scheduleSale() {
  const { starts_in_s, ...sale } = salePayload();
  return call("sale.schedule", { ...sale, starts_at: Math.round(conn.clock.now() + starts_in_s * 1000) }, "#sale-error");
}

function dropCoupon() {
  return call("coupon.drop", dropPayload(), "#coupon-error");
}

// A watch-time rule asks for minutes; an activity rule for which activity and how many times.
function showTriggerFields() {
  const watch = $('#rule-form [name="trigger"]').value === "watch_time";
  $('#rule-form [name="minutes"]').closest("label").hidden = !watch;
  for (const name of ["activity", "count"]) $(`#rule-form [name="${name}"]`).closest("label").hidden = watch;
}

function addRule() {
  const f = form("#rule-form");
  const rule = { title: f.title, trigger: f.trigger, budget: Number(f.budget) };
  if (f.trigger === "watch_time") rule.minutes = Number(f.minutes);
  else Object.assign(rule, { activity: f.activity, count: Number(f.count) });
  return call("coupon.rule", rule, "#coupon-error");
}

// --- going live -------------------------------------------------------------------------------

async function goLive() {
  $("#go-live").disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    $("#preview").srcObject = stream;
    live = [await publish(room, token, stream)];
    if ($("#backup").checked) live.push(await publish(room, token, stream, true));
    $("#live-status").textContent = `Live${live.length > 1 ? " (with a backup path)" : ""}.`;
    $("#stop").disabled = false;
  } catch (error) {
    $("#live-status").textContent = `Could not go live: ${error.message}`;
    $("#go-live").disabled = false;
  }
}

async function stopLive() {
  await Promise.all(live.map(session => session.stop()));
  live = [];
  $("#preview").srcObject?.getTracks().forEach(t => t.stop());
  $("#preview").srcObject = null;
  $("#live-status").textContent = "Not live.";
  $("#paths").replaceChildren(el("li", { class: "muted" }, "no path is sending"));
  $("#go-live").disabled = false;
  $("#stop").disabled = true;
}

function ingest(text, d) {
  const when = new Date().toLocaleTimeString();
  $("#ingest").prepend(el("li", { "data-state": d.state }, el("span", { class: "text" }, `${when} ${text}`),
    ["promoted", "failover"].includes(d.state) ? el("b", {}, "failover") : null));
}

// Each ingest path's health from the host slot's media.stats: with a backup path the
// server measures both (`ingest`); a single path is the slot's own figures.
function showPaths(d) {
  const paths = d.ingest?.paths || { primary: { fps: d.fps, video_bitrate_bps: d.bitrate_bps.video || 0, problem: null } };
  const active = d.ingest?.active || "primary";
  $("#paths").replaceChildren(...["primary", "backup"].filter(name => paths[name]).map(name => {
    const p = paths[name], kbps = Math.round(p.video_bitrate_bps / 1000);
    return el("li", { "data-path": name, "data-active": String(name === active), "data-fps": p.fps, "data-kbps": kbps,
      "data-problem": p.problem || "" },
      el("span", { class: "text" }, el("b", {}, name), ` · ${name === active ? "on air" : "standby"}`,
        p.problem ? ` · ${p.problem}` : ""),
      el("span", {}, `${kbps} kb/s video · ${p.fps} fps`));
  }));
}

// --- co-stream ------------------------------------------------------------------------------

function showQueue(queue) {
  $("#queue").replaceChildren(...queue.map(user => el("li", { "data-user": user.id },
    el("span", { class: "text" }, user.lane && user.lane !== "general" ? `${user.name} (${user.lane})` : user.name),
    el("button", { class: "accept", onclick: () => call("costream.accept", { user: user.id }, "#costream-error") }, "Accept"),
    el("button", { class: "reject", onclick: () => call("costream.reject", { user: user.id }, "#costream-error") }, "Reject"))));
}

function showStage(guests) {
  $("#stage").replaceChildren(...guests.map(g => el("li", { "data-user": g.id },
    el("span", { class: "text" }, `#${g.slot} ${g.name}`),
    el("button", { onclick: () => call("costream.remove", { user: g.id }, "#costream-error") }, "Remove"))));
}

// --- moderation -------------------------------------------------------------------------------

// On a (re)start: the messages sent before the console opened (the staff join state).
function showMessages(recent) {
  messages.splice(0).forEach(row => row.remove());
  recent.forEach(addMessage);
}

function addMessage(d) {
  const act = (event, payload) => () => call(event, payload, "#mod-error");
  const row = el("li", { "data-id": d.id },
    el("span", { class: "text" }, el("b", {}, d.user.name), " ", d.text),
    el("button", { onclick: act("danmaku.pin", { id: d.id }) }, "Pin"),
    el("button", { onclick: act("danmaku.delete", { id: d.id }) }, "Delete"),
    el("button", { onclick: act("danmaku.mute", { user: d.user.id, duration_s: 600 }) }, "Mute 10 min"),
    el("button", { onclick: act("danmaku.ban", { user: d.user.id, duration_s: 3600 }) }, "Ban 1 h"));
  $("#messages").prepend(row);
  messages.push(row);
  if (messages.length > 100) messages.shift().remove();
}

// --- review queue (message hooks that held a message; docs/plugins.md) -------------------------

function showHeld(held) {
  $("#held").replaceChildren();
  held.forEach(addHeld);
}

function addHeld(d) {
  const act = event => () => call(event, { id: d.id }, "#review-error");
  $("#held").append(el("li", { "data-id": d.id },
    el("span", { class: "text" }, el("b", {}, d.user.name), " ", d.text, el("span", { class: "muted" }, ` (${d.by}: ${d.reason})`)),
    el("button", { class: "approve", onclick: act("danmaku.review.approve") }, "Approve"),
    el("button", { class: "drop", onclick: act("danmaku.review.drop") }, "Drop")));
}

// --- FAQ bot (plugins/faq.py; the card shows when the plugin is on) ---------------------------

function showFaq(faq) {
  if (!faq) return;
  $("#faq").hidden = false;
  $("#faq-entries").replaceChildren(...faq.entries.map(e => el("li", { "data-id": e.id },
    el("span", { class: "text" }, el("b", {}, e.questions.join(" / ")), " → ", e.answer),
    el("button", { onclick: () => call("faq.remove", { id: e.id }, "#faq-error") }, "Remove"))));
  if (faq.unanswered) {
    $("#faq-unanswered").replaceChildren();
    faq.unanswered.forEach(addUnanswered);
  }
}

function addUnanswered(d) {
  const list = $("#faq-unanswered");
  [...list.children].filter(li => li.dataset.question === d.question).forEach(li => li.remove());
  list.prepend(el("li", { "data-question": d.question },
    el("span", { class: "text" }, d.question, el("span", { class: "muted" }, ` (${d.summary})`)),
    el("button", { onclick: () => { $('#faq-form [name="questions"]').value = d.question; $('#faq-form [name="answer"]').focus(); } }, "Answer")));
}

function saveFaq() {
  const f = form("#faq-form");
  const questions = f.questions.split("\n").map(q => q.trim()).filter(Boolean);
  call("faq.set", { questions, answer: f.answer.trim() }, "#faq-error").then(ack => {
    if (!ack.ok) return;
    $("#faq-form").reset();
    [...$("#faq-unanswered").children].filter(li => questions.includes(li.dataset.question)).forEach(li => li.remove());
  });
}

// --- run of show, run by the server (plugins/show.py) ---------------------------------------------

// The forms are the editor of the plan's drop, poll and sale: their values go with the plan on start.
const FROM_FORMS = { "coupon.drop": dropPayload, "poll.create": pollPayload, "sale.schedule": salePayload };

function planFromForms() {
  return plan.map(s => ({ ...s, actions: (s.actions || []).map(a => FROM_FORMS[a.command] ? { command: a.command, payload: FROM_FORMS[a.command]() } : a) }));
}

async function startShow() {
  const planned = await call("show.plan", { stages: planFromForms() }, "#show-error");
  if (planned.ok) await call("show.start", {}, "#show-error");
}

function renderSteps() {
  const index = stage ? stage.index : showOver ? plan.length : -1;
  $("#steps").replaceChildren(...plan.map((s, i) => {
    const does = (s.actions || []).map(a => DOES[a.command] || a.command).join(", ");
    return el("li", { "data-step": i, class: i < index ? "done" : i === index ? "current" : "" },
      el("span", { class: "text" }, `${s.name} · ${Math.round(s.duration_s / 60 * 10) / 10} min`, does ? ` · ${does}` : ""),
      el("span", { class: "left muted" }));
  }));
  showClock();
}

function showClock() {
  if (!conn) return;
  const row = stage && document.querySelector(`[data-step="${stage.index}"] .left`);
  if (row) row.textContent = `${formatMs(Math.max(0, stage.ends_at - conn.clock.now()))} left`;
  $("#show-clock").textContent = stage ? `stage ${stage.index + 1} of ${stage.count}` : showOver ? "show over" : "";
}
