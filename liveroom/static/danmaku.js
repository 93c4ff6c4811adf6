// Danmaku flying across the video: lanes, speed by length, no overlaps, density that adapts.
//
// A message enters a lane only when the lane's last message has cleared the right edge
// (plus a gap) and cannot catch up with it before that one leaves on the left. Longer
// messages move faster so every message stays on screen for a similar time. When more
// arrive than the lanes can take, they wait (at most `maxWaiting`; the oldest waiting are
// dropped first), so a storm thins out instead of piling up.
export class DanmakuLayer {
  constructor(stage, { laneHeight = 30, gap = 24, baseSeconds = 7, maxWaiting = 40 } = {}) {
    Object.assign(this, { stage, laneHeight, gap, baseSeconds, maxWaiting });
    this.lanes = [];
    this.waiting = [];
    this.hidden = false;
    this.shown = 0;
    this.dropped = 0;
    setInterval(() => this.pump(), 100);
  }
  setHidden(hidden) {
    this.hidden = hidden;
    this.stage.classList.toggle("hidden", hidden);
    if (hidden) this.waiting.length = 0;
  }
  add(text, { mine = false } = {}) {
    if (this.hidden) return;
    this.waiting.push({ text, mine });
    while (this.waiting.length > this.maxWaiting) { this.waiting.shift(); this.dropped++; }
    this.pump();
  }
  pump() {
    const width = this.stage.clientWidth;
    const count = Math.max(1, Math.floor((this.stage.clientHeight * 0.75) / this.laneHeight));
    while (this.waiting.length) {
      const item = this.waiting[0];
      const node = document.createElement("span");
      node.className = "dm" + (item.mine ? " mine" : "");
      node.textContent = item.text;  // text, never HTML
      node.style.visibility = "hidden";
      this.stage.append(node);
      const w = node.offsetWidth;
      const speed = (width + w) / (this.baseSeconds * 1000) * (1 + Math.min(w / width, 1) * 0.3);
      const lane = this.freeLane(count, width, w, speed);
      if (lane < 0) { node.remove(); return; }
      this.waiting.shift();
      this.fly(node, lane, width, w, speed);
    }
  }
  freeLane(count, width, w, speed) {
    const now = performance.now();
    for (let i = 0; i < count; i++) {
      const last = this.lanes[i];
      if (!last || now >= last.leftAt) return i;
      if (last.at === null) continue;  // its animation has not started yet: the lane is busy
      const travelled = (now - last.at) * last.speed;
      const cleared = travelled >= last.w + this.gap;
      const catchesUp = speed > last.speed && now + width / speed < last.leftAt;
      if (cleared && !catchesUp) return i;
    }
    return -1;
  }
  fly(node, lane, width, w, speed) {
    const duration = (width + w) / speed;
    // The lane's clock starts when the animation really does (a busy page starts it frames
    // later than asked); until then the lane counts as busy, so nothing is placed behind a
    // message whose position is not known yet.
    const entry = { at: null, speed, w, leftAt: Infinity };
    this.lanes[lane] = entry;
    node.style.top = `${lane * this.laneHeight + 4}px`;
    node.style.visibility = "visible";
    node.dataset.lane = lane;
    // fill "both": a busy page can give the animation a start time a little in the future,
    // and run `onfinish` frames after the end; before and after, the message is held off
    // the right or left edge, never shown at its untransformed place on the left, over the
    // messages leaving there.
    const animation = node.animate(
      [{ transform: `translateX(${width}px)` }, { transform: `translateX(${-w}px)` }],
      { duration, easing: "linear", fill: "both" });
    this.shown++;
    animation.ready.then(() => {
      entry.at = animation.startTime ?? performance.now();
      entry.leftAt = entry.at + duration;
    });
    animation.onfinish = () => node.remove();
  }
}
