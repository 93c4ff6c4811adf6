// node client.mjs TOKEN [PORT] [ROOM]: joins the room, says hello, prints what is said.
import { io } from "socket.io-client";

const [token, port = "8080", room = "r1"] = process.argv.slice(2);
const socket = io(`http://127.0.0.1:${port}`, { auth: { token }, transports: ["websocket"] });
let lastSeq = null, epoch = null, joining = false;

// Join, and recover what was missed since the last seq seen (docs/protocol.md, `join`).
async function join() {
  joining = true;
  const ack = await socket.emitWithAck("join", { room, since: lastSeq, epoch });
  joining = false;
  if (!ack.ok) return console.error(ack.error.code, ack.error.message);
  if (ack.reset) console.log("history gap: start over from", JSON.stringify(ack.state));
  ack.missed.forEach(show);
  [lastSeq, epoch] = [ack.seq, ack.epoch];
}

socket.on("connect", async () => {
  await join(); // on every (re)connect
  const sent = await socket.emitWithAck("danmaku.send", { room, text: "hello!" });
  if (!sent.ok) console.error(sent.error.code); // e.g. rate_limited, too_long
});
socket.on("batch", ({ items, skipped = [] }) => {
  for (const item of items) {
    passSkipped(skipped);
    if (item.seq === null || item.seq === lastSeq + 1) show(item);
    else if (item.seq > lastSeq + 1 && !joining) join(); // a real gap: `missed` brings it
  }
  passSkipped(skipped);
});
socket.on("connect_error", (err) => console.error(err.data?.code, err.message));

// Seqs the server sampled out on purpose (the batch's `skipped` ranges) count as seen.
function passSkipped(skipped) {
  for (const [from, to] of skipped) if (from <= lastSeq + 1 && to > lastSeq) lastSeq = to;
}

function show(item) {
  if (item.seq !== null) lastSeq = item.seq;
  if (item.type === "danmaku.message") console.log(`${item.data.user.name}: ${item.data.text}`);
}
