// Gifts (plugins/gift.py): the catalogue as buttons (each gift paid through the merchant's
// wallet, with a request id kept until it has a definite answer), the room's gift feed and
// leaderboard, and a PK's scores, countdown and winner. The host console starts a PK.
import { el, formatMs, humanError, room } from "/static/common.js";

const ICONS = { rose: "🌹", heart: "💖", rocket: "🚀" };

export class GiftPanel {
  constructor(conn, container, { host = false } = {}) {
    Object.assign(this, { conn, container, host, pk: null, pending: new Map() });
    container.replaceChildren(...[
      host ? null : el("div", { class: "row gift-buttons" }),
      el("p", { class: "error gift-error", role: "alert" }),
      el("div", { class: "card pk", hidden: true }, el("h3", {}, "⚔ PK"), el("p", { class: "pk-scores" }), el("p", { class: "pk-clock muted" })),
      el("p", { class: "muted gift-totals" }),
      el("ol", { class: "list gift-board" }),
      el("ul", { class: "list gift-feed" })].filter(Boolean));
    setInterval(() => this.tickPk(), 250);
  }

  q(selector) { return this.container.querySelector(selector); }

  onState(state) {
    const g = state.gift;
    if (!g) return;
    if (!this.host) this.showCatalogue(g.catalogue || []);
    this.showBoard({ leaderboard: g.leaderboard, ...g.totals });
    if (g.pk) (g.pk.ended ? this.pkEnded(g.pk) : this.showPk(g.pk));
  }

  onItem(item) {
    const d = item.data;
    if (item.type === "gift.sent") this.addGift(d);
    else if (item.type === "gift.leaderboard") this.showBoard(d);
    else if (item.type === "gift.pk.started") this.showPk({ ...d, scores: {} });
    else if (item.type === "gift.pk.score") this.showPk(d);
    else if (item.type === "gift.pk.ended") this.pkEnded(d);
  }

  showCatalogue(catalogue) {
    this.q(".gift-buttons").replaceChildren(...catalogue.map(g =>
      el("button", { class: "gift", "data-gift": g.gift, onclick: () => this.send(g.gift) }, `${ICONS[g.gift] || "🎁"} ${g.gift} ¥${g.price}`)));
  }

  async send(gift) {
    // A gift keeps its request id until the server says ok or a refusal: a retry after
    // outcome_unknown (or a timeout) is the same gift, debited once.
    const requestId = this.pending.get(gift) || crypto.randomUUID();
    this.pending.set(gift, requestId);
    const ack = await this.conn.call("gift.send", { gift, count: 1, request_id: requestId });
    const unknown = !ack.ok && ["outcome_unknown", "timeout"].includes(ack.error.code);
    if (!unknown) this.pending.delete(gift);
    const box = this.q(".gift-error");
    box.textContent = ack.ok ? "" : unknown ? "Not sure it went through: tap again to retry (you are charged once)." : humanError(ack.error);
    box.dataset.code = ack.ok ? "ok" : ack.error.code;
  }

  addGift(d) {
    const feed = this.q(".gift-feed");
    if (feed.querySelector(`[data-id="${CSS.escape(d.id)}"]`)) return;
    feed.prepend(el("li", { "data-id": d.id, "data-gift": d.gift }, `${ICONS[d.gift] || "🎁"} ${d.user.name} sent ${d.count} × ${d.gift} (¥${d.value})`));
    while (feed.children.length > 30) feed.lastChild.remove();
  }

  showBoard(d) {
    this.q(".gift-board").replaceChildren(...(d.leaderboard || []).map(row =>
      el("li", { "data-user": row.id }, `${row.rank}. ${row.name} · ¥${row.value}`)));
    const totals = this.q(".gift-totals");
    totals.textContent = `Gifts this show: ${d.gifts ?? 0} · ¥${d.total ?? "0.00"}`;
    totals.dataset.totalMinor = d.total_minor ?? 0;
  }

  showPk(d) {
    if (this.pk?.id === d.id && this.pk.ended) return;
    const scores = { ...(this.pk?.id === d.id ? this.pk.scores : {}) };
    for (const [side, score] of Object.entries(d.scores || {})) scores[side] = Math.max(scores[side] || 0, score);
    this.pk = { ...d, scores, ended: false };
    this.renderPk();
  }

  pkEnded(d) {
    this.pk = { ...d, ended: true };
    this.renderPk();
  }

  renderPk() {
    const d = this.pk, card = this.q(".pk");
    card.hidden = false;
    card.dataset.pk = d.id;
    card.dataset.winner = d.ended ? d.winner || "draw" : "";
    const [a, b] = d.rooms;
    const fmt = side => `${side}${side === room ? " (here)" : ""} ¥${((d.scores[side] || 0) / 100).toFixed(2)}`;
    card.querySelector(".pk-scores").textContent = `${fmt(a)} vs ${fmt(b)}`;
    this.tickPk();
  }

  tickPk() {
    const d = this.pk;
    if (!d) return;
    const left = d.ends_at - this.conn.clock.now();
    this.q(".pk-clock").textContent = d.ended ? (d.winner ? `Winner: ${d.winner}` : "A draw")
      : left > 0 ? `Ends in ${formatMs(left)}` : "Counting…";
  }
}

export function bindPkForm(conn, form, errorBox) {
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    const ack = await conn.call("gift.pk.start", { opponent: f.opponent, duration_s: Number(f.duration_s), request_id: crypto.randomUUID() });
    errorBox.textContent = ack.ok ? "" : humanError(ack.error);
  });
}
