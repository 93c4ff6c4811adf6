// The live dashboard: figures from the room's items on the page's own Socket.IO connection,
// plus the host HTTP API's queries (hot words, likes per minute, orders, coupons) every few s.
import { el, query } from "/static/common.js";

const stat = (key, label) => el("div", { class: "stat" }, el("b", { "data-stat": key }, "0"), el("span", {}, label));

export class Dashboard {
  constructor(root, token, clock) {
    Object.assign(this, { root, token, clock });
    this.peak = 0;
    this.online = 0;
    this.perSecond = new Array(60).fill(0);   // danmaku per second, the last 60 s
    this.second = Math.floor(Date.now() / 1000);
    this.danmakuTotal = 0;
    this.sales = new Map();
    this.media = new Map();
    this.poll = null;
    this.render();
    setInterval(() => this.tick(), 1000);
    setInterval(() => this.refresh(), 3000);
    this.refresh();
  }
  render() {
    this.root.replaceChildren(
      el("h3", {}, "Live dashboard"),
      el("div", { class: "stats" }, stat("online", "online now"), stat("peak", "peak online"),
        stat("dps", "danmaku / s"), stat("danmaku", "danmaku total"), stat("likes", "likes"),
        stat("likes-peak", "likes / min (peak)"), stat("orders", "orders"), stat("gmv", "GMV"),
        stat("conversion", "conversion"), stat("stock", "stock left"), stat("issued", "coupons issued"),
        stat("claimed", "coupons claimed")),
      el("p", { class: "muted" }, "Danmaku per second (60 s)"), el("canvas", { class: "chart", id: "dps-chart" }),
      el("p", { class: "muted" }, "Likes per minute"), el("canvas", { class: "chart", id: "likes-chart" }),
      el("p", { class: "muted" }, "Hot words"), el("div", { class: "words", id: "hot" }),
      el("p", { class: "muted" }, "Poll"), el("div", { id: "dash-poll" }, "no poll yet"),
      el("p", { class: "muted" }, "Media"), el("ul", { class: "list", id: "dash-media" }));
  }
  set(key, value) {
    const node = this.root.querySelector(`[data-stat="${key}"]`);
    if (node) node.textContent = value;
  }
  onState(state) {
    if (state.like) this.set("likes", state.like.total);
    for (const sale of state.sale?.sales || []) this.sales.set(sale.id, { ...sale, remaining: sale.remaining ?? sale.stock });
    if (state.poll) this.showPoll(state.poll);
    this.refresh();
  }
  onItem(item) {
    const d = item.data;
    switch (item.type) {
      case "room.online": this.online = d.count; this.peak = Math.max(this.peak, d.count);
        this.set("online", d.count); this.set("peak", this.peak); break;
      case "danmaku.message": this.rollTo(Math.floor(Date.now() / 1000)); this.perSecond[59]++;
        this.set("danmaku", ++this.danmakuTotal); break;
      case "like.total": this.set("likes", d.total); break;
      case "poll.started": case "poll.tally": case "poll.ended": this.showPoll(d, item.type === "poll.ended"); break;
      case "sale.scheduled": this.sales.set(d.id, { ...d, remaining: d.stock }); break;
      case "sale.stock": case "sale.started": case "sale.ended":
        if (this.sales.has(d.sale)) this.sales.get(d.sale).remaining = d.remaining; break;
      case "sale.sold_out": if (this.sales.has(d.sale)) this.sales.get(d.sale).remaining = 0; break;
      case "media.stats": case "media.publisher": this.showMedia(item.type, d); break;
    }
  }
  rollTo(second) {
    const steps = Math.min(60, second - this.second);
    for (let i = 0; i < steps; i++) { this.perSecond.shift(); this.perSecond.push(0); }
    if (steps > 0) this.second = second;
  }
  tick() {
    this.rollTo(Math.floor(Date.now() / 1000));
    this.set("dps", this.perSecond[58]);
    bars(this.root.querySelector("#dps-chart"), this.perSecond, "#ff4d6d");
    let stock = 0;
    this.sales.forEach(s => { stock += s.remaining ?? 0; });
    this.set("stock", stock);
  }
  showPoll(poll, ended = false) {
    const box = this.root.querySelector("#dash-poll");
    this.poll = { ...(this.poll?.poll === poll.poll ? this.poll : {}), ...poll };
    const { question = "", options = [], counts = [], total = 0 } = this.poll;
    box.replaceChildren(el("b", {}, question, ended ? " (closed)" : ""),
      ...options.map((option, i) => el("div", { "data-option": i }, `${option}: `, el("b", {}, counts[i] || 0))),
      el("div", { class: "muted", "data-poll-total": total }, `${total} votes`));
  }
  showMedia(type, d) {
    const entry = this.media.get(d.slot) || {};
    if (type === "media.publisher") entry.state = d.state;
    else Object.assign(entry, { fps: d.fps, kbps: Math.round(((d.bitrate_bps?.video || 0) + (d.bitrate_bps?.audio || 0)) / 1000), viewers: d.viewers });
    this.media.set(d.slot, entry);
    this.root.querySelector("#dash-media").replaceChildren(...[...this.media].map(([slot, m]) =>
      el("li", {}, el("span", { class: "text" }, `${slot}: ${m.state || "live"}`),
        el("span", {}, `${m.kbps ?? "–"} kb/s · ${m.fps ?? "–"} fps · ${m.viewers ?? 0} viewers`))));
  }
  async refresh() {
    const [hot, likes, coupons] = await Promise.all([query(this.token, "danmaku/hot?limit=15"),
      query(this.token, "likes"), query(this.token, "coupons/rules")]);
    if (hot) this.root.querySelector("#hot").replaceChildren(...hot.words.map(w => el("span", {}, `${w.word} ${w.count}`)));
    if (likes) {
      this.set("likes", likes.total);
      this.set("likes-peak", likes.peak?.count ?? likes.peak ?? 0);
      bars(this.root.querySelector("#likes-chart"), likes.per_minute.slice(-30).map(m => m.count), "#3ecf8e");
    }
    if (coupons) {
      this.set("issued", coupons.rules.reduce((n, r) => n + (r.issued || 0), 0));
      this.set("claimed", coupons.rules.reduce((n, r) => n + (r.claimed || 0), 0));
    }
    await this.refreshSales();
  }
  async refreshSales() {
    let orders = 0, gmv = 0;
    const buyers = new Set();
    for (const sale of this.sales.values()) {
      const answer = await query(this.token, `sales/${encodeURIComponent(sale.id)}/orders?limit=1000`);
      for (const order of answer?.orders || []) { orders++; gmv += order.qty * sale.price; buyers.add(order.user.id ?? order.user); }
    }
    this.set("orders", orders);
    this.set("gmv", `¥${gmv.toFixed(2)}`);
    // conversion = buyers ÷ viewers (the peak of people in the room, the best we know here)
    this.set("conversion", this.peak ? `${((100 * buyers.size) / this.peak).toFixed(1)}%` : "–");
    this.root.dataset.buyers = buyers.size;
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
