// The auction card (plugins/auction.py): price, leader and countdown on the server's clock,
// live from auction.price on the priority lane. Viewers bid the lowest acceptable amount;
// the host console opens auctions and shows the same card without the bid button.
import { el, formatMs, humanError } from "/static/common.js";

export class AuctionPanel {
  constructor(conn, container, { me = null, host = false } = {}) {
    Object.assign(this, { conn, container, me, host, data: null, node: null, requestId: crypto.randomUUID() });
    setInterval(() => this.tick(), 200);
  }

  onState(state) {
    if (state.auction) this.show(state.auction);
  }

  onItem(item) {
    const d = item.data;
    if (item.type === "auction.opened") this.show(d);
    else if (item.type === "auction.price") this.update(d);
    else if (item.type === "auction.ended") this.ended(d);
    else if (item.type === "auction.won") this.ended(d);
  }

  show(data) {
    this.node?.remove();
    this.data = { ...data };
    const bid = this.host ? null : el("button", { class: "bid primary", onclick: () => this.bid() }, "Bid");
    this.node = el("div", { class: "card auction", "data-auction": data.auction },
      el("h3", {}, "🔨 ", data.title),
      el("p", {}, el("b", { class: "price" }), " ", el("span", { class: "leader muted" })),
      el("p", { class: "countdown" }), bid, el("p", { class: "result muted" }));
    this.container.prepend(this.node);
    this.render();
    if (data.result) this.ended(data.result);
  }

  update(data) {
    if (!this.data || data.auction !== this.data.auction) return this.show(data);
    // Items on the priority lane come in order; a bid's ack may be newer than the last item.
    if ((data.bids ?? 0) >= (this.data.bids ?? 0)) Object.assign(this.data, data);
    this.render();
  }

  ended(result) {
    if (!this.data || result.auction !== this.data.auction) return;
    this.data.phase = "ended";
    this.data.result = result;
    this.render();
    if (this.me && result.winner?.id === this.me.sub) return this.say(`You won at ¥${result.price} 🎉`, "won");
    const who = result.winner ? `Sold to ${result.winner.name} at ¥${result.price}` : result.price ? "Not sold: the reserve was not met" : "No bids";
    this.say(who, "ended");
  }

  render() {
    const d = this.data, node = this.node;
    if (!d || !node) return;
    node.querySelector(".price").textContent = d.price ? `¥${d.price}` : `starts at ¥${d.start}`;
    node.querySelector(".leader").textContent = d.leader ? `· ${d.leader.name} leads · ${d.bids} bids` : "· no bids yet";
    node.dataset.leader = d.leader?.id || "";
    node.dataset.price = d.price_minor ?? "";
    node.dataset.endsAt = d.ends_at;
    const button = node.querySelector(".bid");
    if (button) button.textContent = `Bid ¥${d.min_bid}`;
    this.tick();
  }

  tick() {
    const d = this.data, node = this.node;
    if (!d || !node) return;
    const left = d.ends_at - this.conn.clock.now(), over = d.phase === "ended" || left <= 0;
    node.querySelector(".countdown").textContent = over ? "Ended" : `Ends in ${formatMs(left)}`;
    const button = node.querySelector(".bid");
    if (button) button.disabled = over || this.busy;
  }

  async bid() {
    const d = this.data;
    this.busy = true;
    this.tick();
    const ack = await this.conn.call("auction.bid", { auction: d.auction, amount: d.min_bid, request_id: this.requestId });
    this.busy = false;
    this.requestId = crypto.randomUUID();
    if (ack.ok) {
      this.update({ ...d, bids: ack.bid, price: ack.amount, price_minor: ack.amount_minor, ends_at: ack.ends_at,
        leader: this.me ? { id: this.me.sub, name: this.me.name || this.me.sub } : d.leader });
      this.say(`You lead at ¥${ack.amount}`, "ok");
    } else {
      if (ack.error.min_bid) this.update({ ...d, ...ack.error, bids: d.bids });
      this.say(ack.error.code === "bid_too_low" ? `Outbid: now ¥${ack.error.price}, bid at least ¥${ack.error.min_bid}` : humanError(ack.error), ack.error.code);
    }
    this.tick();
  }

  say(text, code) {
    const result = this.node?.querySelector(".result");
    if (!result) return;
    result.textContent = text;
    result.dataset.code = code;
  }
}

// The host console's form: open an auction with the form's terms.
export function bindAuctionForm(conn, form, errorBox) {
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    const terms = { title: f.title, start_price: f.start_price, increment: f.increment,
      duration_s: Number(f.duration_s), extend_s: Number(f.extend_s), request_id: crypto.randomUUID() };
    if (f.reserve) terms.reserve = f.reserve;
    const ack = await conn.call("auction.open", terms);
    errorBox.textContent = ack.ok ? "" : humanError(ack.error);
  });
}
