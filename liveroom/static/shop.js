// Live commerce on the pages: the product showcase (the pinned card, the shopping bag) and the
// lucky bag (福袋) with its countdown on the server's clock. The viewer page uses ShopViewer,
// the host console ShopHost, the dashboard showProducts (docs/pages.md, docs/plugins.md).
import { el, formatMs, humanError } from "/static/common.js";

const ERRORS = {
  keyword_required: "Send the keyword in the chat to enter.",
  tier_required: "This one is for members only.",
  watch_more: "Keep watching a little longer to enter.",
  closed: "The draw has closed.",
  not_eligible: "Staff do not enter lucky bags.",
  bag_active: "A lucky bag is already open.",
};
const explain = error => ERRORS[error?.code] ? `${ERRORS[error.code]}${error.code === "watch_more" ? ` (${error.message})` : ""}` : humanError(error);

// A product card: picture, title, price (a decimal string, never a float), and a Buy link
// that counts the click (showcase.click) before opening the merchant's checkout.
function productCard(product, conn, extra = "") {
  const result = el("span", { class: "muted click-result" });
  const buy = el("button", { class: "primary buy-link", "data-sku": product.sku }, "Buy");
  buy.addEventListener("click", async () => {
    const ack = await conn.call("showcase.click", { sku: product.sku });
    result.textContent = ack.ok ? "" : humanError(ack.error);
    if (ack.ok) { buy.dataset.clicks = ack.clicks; window.open(ack.url, "_blank", "noopener"); }
  });
  return el("div", { class: `product ${extra}`, "data-sku": product.sku },
    el("img", { src: product.image, alt: "", loading: "lazy", referrerpolicy: "no-referrer", onerror: e => e.target.removeAttribute("src") }),
    el("div", { class: "product-text" }, el("b", { class: "title" }, product.title),
      el("span", { class: "price" }, `¥${product.price}`), buy, result));
}

export class ShopViewer {
  constructor(root, conn, me) {
    this.root = root;
    this.conn = conn;
    this.me = me;
    this.products = [];
    this.pinned = null;
    this.bag = null;      // the open bag
    this.last = null;     // the last result
    this.status = "";     // what happened to my entry
    this.entered = false;
    setInterval(() => this.tick(), 250);
  }
  state(state) {
    this.products = state.showcase?.products || [];
    this.pinned = state.showcase?.pinned || null;
    this.bag = state.luckybag?.open || null;
    this.last = state.luckybag?.last || null;
    this.entered = Boolean(state.luckybag?.entered);
    this.status = this.entered ? "You are in the draw ✓" : "";
    this.render();
  }
  item(item) {
    const d = item.data;
    switch (item.type) {
      case "showcase.products": this.products = d.products; this.pinned = d.pinned; break;
      case "showcase.pinned": this.pinned = d.product; break;
      case "showcase.unpinned": this.pinned = null; break;
      case "luckybag.started": this.bag = { ...d, entrants: 0 }; this.entered = false; this.status = ""; break;
      case "luckybag.entrants": if (this.bag?.bag === d.bag) this.bag.entrants = d.entrants; break;
      case "luckybag.entered": this.entered = true; this.status = "You are in the draw ✓"; if (this.bag) this.bag.entrants = d.entrants; break;
      case "luckybag.refused": this.status = explain(d); break;
      case "luckybag.drawn": this.bag = null; this.last = d; break;
      case "luckybag.won": this.status = `🎉 You won ${d.prize}!`; break;
      default: return;
    }
    this.render();
  }
  render() {
    const pinned = this.pinned ? productCard(this.pinned, this.conn, "pinned-product") : null;
    const list = this.products.length ? el("details", { class: "bag-list" },
      el("summary", {}, `🛍 ${this.products.length} products`),
      ...this.products.map(p => productCard(p, this.conn))) : null;
    this.root.replaceChildren(...[pinned, this.luckyCard(), list].filter(Boolean));
    this.tick();
  }
  luckyCard() {
    const bag = this.bag, last = this.last;
    if (bag) {
      const needs = [bag.keyword && `send “${bag.keyword}” in the chat`, bag.watch_minutes && `watch ${bag.watch_minutes} min`,
        bag.tiers?.length && `${bag.tiers.join("/")} members`].filter(Boolean);
      const enter = el("button", { class: "primary enter" }, bag.keyword ? `Send “${bag.keyword}”` : "Enter");
      enter.addEventListener("click", () => this.enter(bag));
      return el("div", { class: "card luckybag", "data-bag": bag.bag },
        el("h3", {}, "🧧 Lucky bag: ", bag.prize),
        el("p", {}, `${bag.winners} winner${bag.winners > 1 ? "s" : ""} · `, el("span", { class: "entrants" }, bag.entrants ?? 0), " in"),
        el("p", { class: "countdown" }),
        el("p", { class: "muted" }, needs.length ? `To enter: ${needs.join(", ")}` : "Anyone may enter"),
        this.entered ? null : enter, el("p", { class: "lucky-status" }, this.status));
    }
    if (!last) return this.status ? el("div", { class: "card luckybag" }, el("p", { class: "lucky-status" }, this.status)) : null;
    const mine = last.winners.some(w => w.id === this.me.sub);
    return el("div", { class: "card luckybag drawn", "data-bag": last.bag, "data-seed": last.seed },
      el("h3", {}, "🧧 ", last.prize, " · drawn"),
      el("p", {}, mine ? "🎉 You won!" : `${last.entrants} entered`),
      el("ul", { class: "list winners" }, ...last.winners.map(w => el("li", { "data-user": w.id }, w.name))),
      el("p", { class: "muted seed", title: `${last.algorithm}: re-run it from the entry list and this seed` },
        `seed ${last.seed.slice(0, 16)}…`), el("p", { class: "lucky-status" }, this.status));
  }
  async enter(bag) {
    const ack = bag.keyword
      ? await this.conn.call("danmaku.send", { text: bag.keyword })
      : await this.conn.call("luckybag.enter", { bag: bag.bag });
    if (!ack.ok) this.status = explain(ack.error);
    else if (!bag.keyword) { this.entered = true; this.status = "You are in the draw ✓"; bag.entrants = ack.entrants; }
    this.render();
  }
  tick() {
    const countdown = this.root.querySelector(".luckybag .countdown");
    if (!countdown || !this.bag) return;
    const left = this.bag.ends_at - this.conn.clock.now();
    countdown.dataset.remainingMs = Math.max(0, Math.round(left));
    countdown.textContent = left > 0 ? `Draw in ${formatMs(left)}` : "Drawing…";
  }
}

// The host console's card: the product list (one per line: sku | title | price | image | url),
// pin and unpin, and a lucky bag with its conditions.
export class ShopHost {
  constructor(root, conn) {
    this.root = root;
    this.conn = conn;
    this.products = [];
    this.pinned = null;
    this.bag = null;
    this.last = null;
    root.querySelector("#products-form").addEventListener("submit", e => { e.preventDefault(); this.saveProducts(); });
    root.querySelector("#luckybag-form").addEventListener("submit", e => { e.preventDefault(); this.startBag(); });
    root.querySelector("#product-unpin").addEventListener("click", () => this.act("showcase.unpin", {}));
    setInterval(() => this.tick(), 250);
  }
  error(text) { this.root.querySelector("#shop-error").textContent = text; }
  async act(event, payload) {
    const ack = await this.conn.call(event, payload);
    this.error(ack.ok ? "" : explain(ack.error));
    return ack;
  }
  state(state) {
    this.products = state.showcase?.products || [];
    this.pinned = state.showcase?.pinned?.sku || null;
    this.bag = state.luckybag?.open || null;
    this.last = state.luckybag?.last || null;
    this.render();
  }
  item(item) {
    const d = item.data;
    switch (item.type) {
      case "showcase.products": this.products = d.products; this.pinned = d.pinned?.sku || null; break;
      case "showcase.pinned": this.pinned = d.product.sku; break;
      case "showcase.unpinned": this.pinned = null; break;
      case "luckybag.started": this.bag = { ...d, entrants: 0 }; break;
      case "luckybag.entrants": if (this.bag?.bag === d.bag) this.bag.entrants = d.entrants; break;
      case "luckybag.drawn": this.bag = null; this.last = d; break;
      default: return;
    }
    this.render();
  }
  render() {
    this.root.querySelector("#products").replaceChildren(...this.products.map(p => el("li", { "data-sku": p.sku },
      el("span", { class: "text" }, `${p.sku} · ${p.title} · ¥${p.price}${p.sku === this.pinned ? " · 📌 pinned" : ""}`),
      el("button", { class: "pin", onclick: () => this.act("showcase.pin", { sku: p.sku }) }, "Pin"))));
    const status = this.root.querySelector("#luckybag-status");
    status.dataset.bag = this.bag?.bag || "";
    const last = this.last;
    status.replaceChildren(this.bag ? el("span", {}, `Open: ${this.bag.prize} · `, el("b", { class: "entrants" }, this.bag.entrants ?? 0),
      " entered · ", el("span", { class: "countdown" }))
      : last ? el("span", { class: "drawn", "data-seed": last.seed }, `Drawn: ${last.prize} · ${last.entrants} entered · won by `,
        last.winners.map(w => w.name).join(", ") || "nobody") : el("span", { class: "muted" }, "No lucky bag yet"));
    this.tick();
  }
  tick() {
    const countdown = this.root.querySelector("#luckybag-status .countdown");
    if (!countdown || !this.bag) return;
    const left = this.bag.ends_at - this.conn.clock.now();
    countdown.dataset.remainingMs = Math.max(0, Math.round(left));
    countdown.textContent = left > 0 ? `draw in ${formatMs(left)}` : "drawing…";
  }
  saveProducts() {
    const lines = this.root.querySelector('[name="products"]').value.split("\n").map(l => l.trim()).filter(Boolean);
    const products = lines.map(line => {
      const [sku, title, price, image, url] = line.split("|").map(part => part.trim());
      return { sku, title, price_minor: Math.round(Number(price) * 100), image, url };
    });
    this.act("showcase.set", { products });
  }
  startBag() {
    const form = new FormData(this.root.querySelector("#luckybag-form"));
    const tiers = String(form.get("tiers") || "").split(",").map(t => t.trim()).filter(Boolean);
    this.act("luckybag.start", {
      prize: form.get("prize"), winners: Number(form.get("winners")), duration_s: Number(form.get("duration_s")),
      keyword: String(form.get("keyword") || ""), watch_minutes: Number(form.get("watch_minutes") || 0), tiers,
      request_id: crypto.randomUUID(),
    });
  }
}

// The dashboard's products: clicks, distinct clickers and click -> order conversion.
export function showProducts(list, showcase) {
  if (!list) return;
  list.replaceChildren(...(showcase?.products || []).map(p => el("li", { "data-sku": p.sku },
    el("span", { class: "text" }, `${p.title}${p.sku === showcase.pinned ? " 📌" : ""}`),
    el("span", {}, el("b", { "data-clicks": p.clicks }, p.clicks), ` clicks · ${p.clickers} people`,
      p.conversion == null ? "" : ` · ${p.orders} orders · `,
      p.conversion == null ? "" : el("b", { class: "conversion" }, `${(100 * p.conversion).toFixed(1)}%`)))));
}
