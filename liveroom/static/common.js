// Shared by the viewer, host and dashboard pages: sign-in, the Socket.IO connection
// (join, resume with `since`), server-clock sync, and DOM helpers that never parse HTML.
import { io } from "/static/vendor/socket.io.esm.min.js";

export const room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");

// el("div", {class: "x", onclick: f}, "text", child): strings become text nodes, never HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value != null) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = selector => document.querySelector(selector);

const ERRORS = {
  rate_limited: "You are going too fast. Wait a moment.",
  blocked: "That message contains a word that is not allowed here.",
  muted: "You are muted for now.",
  banned: "You are banned from this room.",
  slow_mode: "Slow mode is on: wait a little before the next message.",
  too_long: "That message is too long.",
  not_joined: "Not connected to the room yet.",
  forbidden: "You are not allowed to do that.",
  unauthorized: "Your sign-in is missing or has expired.",
  not_started: "Not on sale yet.",
  ended: "The sale has ended.",
  sold_out: "Sold out.",
  limit_reached: "You have bought the most allowed.",
  already_voted: "You already voted.",
  poll_closed: "The poll has closed.",
  already_claimed: "Already claimed.",
  exhausted: "All gone, sorry.",
  already_queued: "You are already in the queue.",
  queue_full: "The queue is full.",
  stage_full: "The stage is full.",
  poll_active: "A poll is already running.",
  timeout: "The server did not answer in time.",
  auction_active: "An auction is already running.",
  auction_ended: "The auction has ended.",
  insufficient_funds: "Not enough balance in your wallet.",
  unknown_gift: "That gift is not in the catalogue.",
  pk_active: "This room is already in a PK.",
  opponent_busy: "That room is already in a PK.",
  outcome_unknown: "Not sure it went through: try again (it counts once).",
};

export function humanError(error) {
  return ERRORS[error?.code] || error?.message || "Something went wrong.";
}

// The token: #token=... in the URL (kept out of server logs), else the last one used here.
// Without one the page shows the sign-in form alone (`body.signed-out` hides the rest)
// and starts only once a token is given.
const TOKEN_KEY = "liveroom.token";

export function signIn(onToken) {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) sessionStorage.setItem(TOKEN_KEY, fromHash);
  const saved = fromHash || sessionStorage.getItem(TOKEN_KEY);
  if (saved) return onToken(saved);
  signInForm(null, value => {
    document.body.classList.remove("signed-out");
    onToken(value);
  });
}

// The server refused the token (expired, wrong secret): ask for another and start over.
export function signOut(error) {
  sessionStorage.removeItem(TOKEN_KEY);
  signInForm(error, value => {
    history.replaceState(null, "", `${location.pathname}#token=${encodeURIComponent(value)}`);
    location.reload();
  });
}

function signInForm(error, done) {
  document.querySelector("form.signin")?.remove();
  document.body.classList.add("signed-out");
  const input = el("input", { name: "token", id: "token", placeholder: "paste a token from `liveroom token`", required: true,
    autocomplete: "off" });
  const form = el("form", { class: "signin card" }, el("h3", {}, "Sign in"),
    el("label", { for: "token" }, "Token"), input,
    el("p", { class: "error", role: "alert" }, error ? humanError(error) : ""),
    el("p", { class: "muted" }, "Ask the host for a link, or mint a token with ",
      el("code", {}, "liveroom token --user ID --room " + (room || "ROOM")), "."),
    el("button", { class: "primary" }, "Sign in"));
  form.addEventListener("submit", event => {
    event.preventDefault();
    const value = input.value.trim();
    sessionStorage.setItem(TOKEN_KEY, value);
    form.remove();
    done(value);
  });
  document.body.append(form);
  input.focus();
}

export function claims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

// Server clock (docs/protocol.md `time`): keep the offset of the lowest-round-trip sample.
export class Clock {
  constructor(socket) {
    this.socket = socket;
    this.offset = 0;
    this.rtt = Infinity;
  }
  now() {
    return Date.now() + this.offset;
  }
  async sync(samples = 6) {
    let best = { rtt: Infinity, offset: 0 };
    for (let i = 0; i < samples; i++) {
      const t0 = Date.now();
      const ack = await this.socket.timeout(10_000).emitWithAck("time", {}).catch(() => null);
      const t1 = Date.now();
      if (ack?.ok && t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: ack.server_time + (t1 - t0) / 2 - t1 };
      if (i < samples - 1) await new Promise(done => setTimeout(done, 120));
    }
    if (best.rtt < Infinity) [this.offset, this.rtt] = [best.offset, best.rtt];
    // Not one answer (a server too busy to answer in 10 s): the device clock may be off by
    // anything, so try again soon rather than in a minute.
    else if (this.rtt === Infinity) setTimeout(() => this.socket.connected && this.sync(), 2000);
    return this;
  }
}

// One connection to one room: joins on every (re)connect with `since`/`epoch`, hands
// items to onItem in order, and calls onState with the plugins' snapshots on a (re)start.
//
// Loss is visible (docs/protocol.md, `batch`): the page keeps the last seq it saw, and
// counts the seqs in a batch's `skipped` ranges (sampled out on purpose) as seen. An item
// further on than the next seq is a real gap: the page joins again with `since`, shows what
// `missed` brings and carries on. Only the next seq is ever shown, so nothing is shown out
// of order or twice (a seq seen twice is dropped, and counted).
export class RoomConnection {
  constructor(token, { onItem, onState, onStatus, onSignedOut }) {
    this.token = token;
    this.handlers = { onItem, onState, onStatus: onStatus || (() => {}), onSignedOut: onSignedOut || (() => {}) };
    this.seq = null;
    this.epoch = null;
    this.recovering = false;
    this.stats = { joins: 0, gaps: 0, duplicates: 0 };
    this.socket = io(location.origin, { transports: ["websocket"], auth: { token } });
    this.clock = new Clock(this.socket);
    this.socket.on("connect", () => this.join());
    this.socket.on("disconnect", () => this.handlers.onStatus("reconnecting"));
    this.socket.on("connect_error", err => this.refused(err.data || { message: err.message }));
    this.socket.on("batch", batch => batch.room === room && this.takeBatch(batch));
    setInterval(() => this.socket.connected && this.clock.sync(), 60_000);
  }
  refused(error) {
    this.handlers.onStatus("error", error);
    if (error.code !== "unauthorized") return;  // anything else (unavailable...): retry
    this.socket.disconnect();  // a bad or expired token stays bad: ask for another
    this.handlers.onSignedOut(error);
  }
  async join() {
    const since = this.seq;
    const ack = await this.call("join", { since, epoch: this.epoch });
    if (!ack.ok) return this.handlers.onStatus("error", ack.error);
    const fresh = this.seq === null || ack.reset || ack.epoch !== this.epoch;
    this.epoch = ack.epoch;
    this.joins = ++this.stats.joins;
    this.lastJoin = { fresh, since, missed: ack.missed.length, items: ack.missed.map(({ seq, type }) => ({ seq, type })) };
    if (fresh) {
      this.seq = ack.seq;
      this.handlers.onState(ack.state || {}, ack);
    } else {
      ack.missed.forEach(item => this.take(item));
      this.seq = Math.max(this.seq, ack.seq);
    }
    this.online = ack.online;
    this.handlers.onItem({ seq: null, type: "room.online", data: { count: ack.online } });
    this.handlers.onStatus("connected", ack);
    this.clock.sync();
  }
  takeBatch({ items, skipped = [] }) {
    for (const item of items) {
      if (item.seq != null && this.seq != null) {
        this.passSkipped(skipped);
        if (item.seq > this.seq + 1) {
          // A gap that is not sampling: the rejoin's `missed` brings what is missing and
          // this item; nothing past the gap is shown before it.
          if (!this.recovering) this.recover();
          continue;
        }
      }
      this.take(item);
    }
    if (this.seq != null) this.passSkipped(skipped);
  }
  // Seqs the server left out on purpose count as seen.
  passSkipped(ranges) {
    for (const [from, to] of ranges) if (from <= this.seq + 1 && to > this.seq) this.seq = to;
  }
  async recover() {
    this.recovering = true;
    this.stats.gaps++;
    this.handlers.onStatus("catching up");
    try {
      await this.join();
    } finally {
      this.recovering = false;
    }
  }
  take(item) {
    if (item.type === "room.reset") {
      // The room's history started over: rejoin from scratch and rebuild from `state`.
      [this.seq, this.epoch] = [null, null];
      return this.join();
    }
    if (item.seq != null) {
      if (this.seq != null && item.seq <= this.seq) {
        this.stats.duplicates++;
        return;
      }
      this.seq = item.seq;
    }
    this.handlers.onItem(item);
  }
  async call(event, payload = {}) {
    try {
      return await this.socket.timeout(8000).emitWithAck(event, { room, ...payload });
    } catch {
      return { ok: false, error: { code: "timeout" } };
    }
  }
}

export function formatMs(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? `${h}:${String(m).padStart(2, "0")}` : String(m)) + ":" + String(r).padStart(2, "0");
}
