// The official socket.io-client v4 with socket.io-msgpack-parser at /socket.io-msgpack/:
// on WebSocket, and polling then upgrade (binary packets as base64 while polling). Prints
// one JSON line with what happened; pytest checks it.
import { io } from "socket.io-client";
import parser from "socket.io-msgpack-parser";

const [url, token, pollerToken, room] = process.argv.slice(2);

function connect(token, options) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { path: "/socket.io-msgpack/", parser, auth: { token }, reconnection: false, ...options });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (err) => reject(err));
  });
}

const direct = await connect(token, { transports: ["websocket"] });
const poller = await connect(pollerToken, { transports: ["polling"] });
const join = await direct.emitWithAck("join", { room, since: null });
const pollerJoin = await poller.emitWithAck("join", { room });
const got = new Promise((resolve) => {
  poller.on("batch", (batch) => {
    const item = batch.items.find((i) => i.type === "danmaku.message");
    if (item) resolve({ room: batch.room, item });
  });
});
const sent = await direct.emitWithAck("danmaku.send", { room, text: "packed 弹幕" });
const received = await got;
const bad = await poller.emitWithAck("danmaku.send", { room, text: 42 });
let refused = null;
try {
  await connect("not-a-token", { transports: ["websocket"] });
} catch (err) {
  refused = { message: err.message, data: err.data };
}
console.log(JSON.stringify({ join, pollerJoin, sent, received, bad, refused }));
direct.close();
poller.close();
// A poller's goodbye is a POST of its own: let it go out before exiting (else the server
// holds the session, and a shutdown waits out its grace for it).
setTimeout(() => process.exit(0), 300);
