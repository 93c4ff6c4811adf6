// The official socket.io-client v4 with its default transports: long-polling first, then
// the upgrade to WebSocket; and a polling-only client sending a binary attachment. Prints
// one JSON line with what happened; pytest checks it.
import { io } from "socket.io-client";

const [url, token, pollerToken, room] = process.argv.slice(2);

const opened = {};  // the transport each engine opened on, before any upgrade

function connect(token, options) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, reconnection: false, ...options });
    socket.io.on("open", () => { opened[token] = socket.io.engine.transport.name; });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (err) => reject(err));
  });
}

const upgrader = await connect(token, {});
const firstTransport = opened[token];
await new Promise((resolve) => {
  if (upgrader.io.engine.transport.name === "websocket") resolve();
  upgrader.io.engine.on("upgrade", resolve);
});
const poller = await connect(pollerToken, { transports: ["polling"] });
const join = await upgrader.emitWithAck("join", { room });
const pollerJoin = await poller.emitWithAck("join", { room });
const got = new Promise((resolve) => {
  poller.on("batch", (batch) => {
    const item = batch.items.find((i) => i.type === "danmaku.message");
    if (item) resolve(item);
  });
});
const sent = await upgrader.emitWithAck("danmaku.send", { room, text: "polled, then upgraded" });
const item = await got;
const binary = await poller.emitWithAck("time", { blob: new Uint8Array([1, 2, 3]) });
const time = await upgrader.emitWithAck("time", {});
console.log(JSON.stringify({
  firstTransport, transport: upgrader.io.engine.transport.name, pollerTransport: poller.io.engine.transport.name,
  join, pollerJoin, sent, item, binary, time,
}));
upgrader.close();
poller.close();
// A poller's goodbye is a POST of its own: let it go out before exiting (else the server
// holds the session, and a shutdown waits out its grace for it).
setTimeout(() => process.exit(0), 300);
