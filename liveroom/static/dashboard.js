// The live dashboard: the server pushes `dashboard.stats` to staff members about once a
// second over the page's own Socket.IO connection (docs/plugins.md, dashboard); media
// health comes from the room's media items. Nothing is polled.
import { el } from "/static/common.js";
import { showProducts } from "/static/shop.js";

const stat = (key, label, title) => el("div", { class: "stat", title }, el("b", { "data-stat": key }, "–"), el("span", {}, label));
// Money comes as decimal strings ("9.90"): shown as they are, never through a float.
const money = amount => `¥${amount ?? "0.00"}`;

export class Dashboard {
  constructor(root) {
    this.root = root;
    this.media = new Map();
    this.poll = null;     // the open poll, for the console's "Close poll"
    this.stats = null;    // the last dashboard.stats
    this.render();
  }
  render() {
    this.root.replaceChildren(
      el("h3", {}, "Live dashboard ", el("span", { class: "muted", id: "dash-at" }, "waiting for figures…")),
      // What each count counts: people in the room (a person with two tabs is one), staff
      // included; distinct viewers who came; and, under Media, WebRTC playback sessions.
      el("div", { class: "stats" },
        stat("online", "in the room now", "people connected to the room now, on every node, hosts and moderators included"),
        stat("peak", "most in the room at once"),
        stat("viewers", "viewers so far", "distinct viewers (not staff) who have joined this room"), stat("dps", "danmaku / s"), stat("danmaku", "danmaku total"),
        stat("likes", "likes"), stat("likes-minute", "likes this minute"), stat("likes-peak", "likes / min (peak)"),
        stat("orders", "orders"), stat("gmv", "GMV"), stat("buyers", "buyers"), stat("conversion", "conversion"),
        stat("stock", "stock left"), stat("issued", "coupons issued"), stat("claimed", "coupons claimed")),
      el("p", { class: "muted" }, "Danmaku per second (60 s)"), el("canvas", { class: "chart", id: "dps-chart" }),
      el("p", { class: "muted" }, "Likes per minute"), el("canvas", { class: "chart", id: "likes-chart" }),
      el("p", { class: "muted" }, "Hot words"), el("div", { class: "words", id: "hot" }),
      el("p", { class: "muted" }, "Poll"), el("div", { id: "dash-poll" }, "no poll yet"),
      el("p", { class: "muted" }, "Sales"), el("ul", { class: "list", id: "dash-sales" }),
      el("p", { class: "muted" }, "Products: clicks, click → order"), el("ul", { class: "list", id: "dash-products" }),
      el("p", { class: "muted" }, "Media"), el("ul", { class: "list", id: "dash-media" }));
  }
  set(key, value) {
    const node = this.root.querySelector(`[data-stat="${key}"]`);
    if (node) node.textContent = value;
  }
  onState() {}
  onItem(item) {
    const d = item.data;
    switch (item.type) {
      case "dashboard.stats": this.show(d); break;
      case "room.online": this.set("online", d.count); break;
      case "media.stats": case "media.publisher": this.showMedia(item.type, d); break;
    }
  }
  show(stats) {
    this.stats = stats;
    const f = stats.figures || {};
    this.root.querySelector("#dash-at").textContent = `updated ${new Date(stats.at).toLocaleTimeString()}`;
    this.set("online", stats.online);
    this.set("peak", stats.peak_online);
    this.set("viewers", stats.viewers);
    this.set("conversion", stats.conversion == null ? "–" : `${(100 * stats.conversion).toFixed(1)}%`);
    const dm = f.danmaku || { total: 0, per_second: [], hot: [] };
    this.set("danmaku", dm.total);
    this.set("dps", dm.per_second.at(-1) ?? 0);
    bars(this.root.querySelector("#dps-chart"), dm.per_second, "#ff4d6d");
    this.root.querySelector("#hot").replaceChildren(...dm.hot.map(w => el("span", {}, `${w.word} ${w.count}`)));
    const likes = f.like || { total: 0, per_minute: [], peak: null };
    const thisMinute = Math.floor(stats.at / 60_000) * 60_000;
    this.set("likes", likes.total);
    this.set("likes-minute", likes.per_minute.find(m => m.minute === thisMinute)?.count ?? 0);
    this.set("likes-peak", likes.peak?.count ?? 0);
    bars(this.root.querySelector("#likes-chart"), likes.per_minute.slice(-30).map(m => m.count), "#3ecf8e");
    const sale = f.sale || { sales: [], orders: 0, gmv: 0, buyers: 0 };
    this.set("orders", sale.orders);
    this.set("gmv", money(sale.gmv));
    this.set("buyers", sale.buyers);
    this.set("stock", sale.sales.reduce((n, s) => n + (s.phase === "ended" ? 0 : s.remaining), 0));
    this.root.querySelector("#dash-sales").replaceChildren(...sale.sales.map(s => el("li", { "data-sale": s.id },
      el("span", { class: "text" }, `${s.title} · ${money(s.price)}`), el("span", {}, `${s.phase} · ${s.remaining}/${s.stock} left`))));
    const coupon = f.coupon || { issued: 0, claimed: 0 };
    this.set("issued", coupon.issued);
    this.set("claimed", coupon.claimed);
    if (f.poll) this.showPoll(f.poll);
    showProducts(this.root.querySelector("#dash-products"), f.showcase);
  }
  showPoll(poll) {
    this.poll = poll.open ? poll : null;
    const { question = "", options = [], counts = [], total = 0 } = poll;
    this.root.querySelector("#dash-poll").replaceChildren(el("b", {}, question, poll.open ? "" : " (closed)"),
      ...options.map((option, i) => el("div", { "data-option": i }, `${option}: `, el("b", {}, counts[i] || 0))),
      el("div", { class: "muted", "data-poll-total": total }, `${total} votes`));
  }
  showMedia(type, d) {
    const entry = this.media.get(d.slot) || {};
    if (type === "media.publisher" && d.path === "camera") return;  // another camera of the host
    if (type === "media.publisher" && d.on_air && !["connected", "promoted"].includes(d.state)) return;  // a path, not the program
    if (type === "media.publisher") entry.state = d.state;
    else Object.assign(entry, { fps: d.fps, kbps: Math.round(((d.bitrate_bps?.video || 0) + (d.bitrate_bps?.audio || 0)) / 1000), viewers: d.viewers });
    this.media.set(d.slot, entry);
    this.root.querySelector("#dash-media").replaceChildren(...[...this.media].map(([slot, m]) =>
      el("li", {}, el("span", { class: "text" }, `${slot}: ${m.state || "live"}`),
        el("span", {}, `${m.kbps ?? "–"} kb/s · ${m.fps ?? "–"} fps · ${m.viewers ?? 0} playing over WebRTC`))));
  }
}

// A bar chart on a canvas, scaled to its largest value.
export function bars(canvas, values, colour) {
  if (!canvas) return;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const max = Math.max(1, ...values), w = Math.min(canvas.width / Math.max(values.length, 1), 24 * ratio);
  g.fillStyle = colour;
  values.forEach((v, i) => { const h = (v / max) * (canvas.height - 12 * ratio); g.fillRect(i * w + 1, canvas.height - h, w - 2, h); });
  g.fillStyle = "#8b8f98";
  g.font = `${10 * ratio}px system-ui`;
  g.fillText(`max ${max}`, 4, 10 * ratio);
}
