// A recording played back with the room's danmaku flying at the times they were sent.
// /replay/{room}/{id}#token=...: the video is the recording's MP4 (range requests), the
// danmaku and other interactions come from its timeline (`t`: seconds into the video).
// window.replay.shown records what was shown and at which media time (for the tests).
import { DanmakuLayer } from "/static/danmaku.js";

const [, , room, id] = location.pathname.split("/").map(decodeURIComponent);
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const query = `?token=${encodeURIComponent(token)}`;
const base = `/recordings/${encodeURIComponent(room)}/${encodeURIComponent(id)}`;
const video = document.querySelector("#video");
const status = document.querySelector("#status");
const layer = new DanmakuLayer(document.querySelector("#danmaku"));
const replay = window.replay = { shown: [], items: [], ready: false };
let next = 0;

document.querySelector("#title").textContent = `${room} · ${id}`;
document.title = `${room} · replay · liveroom`;

const response = await fetch(`${base}.timeline.json${query}`);
if (!response.ok) {
  status.textContent = `cannot load this recording (${response.status})`;
} else {
  replay.items = (await response.json()).items.filter(item => item.t >= 0).sort((a, b) => a.t - b.t);
  video.src = `${base}.mp4${query}`;
  status.textContent = `${replay.items.length} interactions`;
  replay.ready = true;
}

// Everything whose time has come is shown; seeking picks up from the new position.
function tick() {
  while (next < replay.items.length && replay.items[next].t <= video.currentTime) show(replay.items[next++]);
}
video.addEventListener("seeked", () => {
  next = replay.items.findIndex(item => item.t >= video.currentTime);
  if (next < 0) next = replay.items.length;
});
video.addEventListener("timeupdate", tick);
setInterval(tick, 50);

function show(item) {
  const text = item.type === "danmaku.message" ? item.data.text : item.type;
  replay.shown.push({ type: item.type, t: item.t, at: video.currentTime, text });
  if (item.type === "danmaku.message") layer.add(item.data.text);
  const who = item.data?.user?.name ? `${item.data.user.name}: ` : "";
  const li = document.createElement("li");
  li.textContent = `${item.t.toFixed(1)} s · ${who}${text}`;
  document.querySelector("#events").prepend(li);
}
