// Two official socket.io-client v4 clients exchange danmaku through one liveroom node,
// then a bad token is refused. Prints one JSON line with what happened; pytest checks it.
import { io } from "socket.io-client";

const [url, aliceToken, bobToken, room] = process.argv.slice(2);

function connect(token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (err) => reject(err));
  });
}

const alice = await connect(aliceToken);
const bob = await connect(bobToken);
const received = new Promise((resolve) => {
  bob.on("batch", (batch) => {
    const item = batch.items.find((i) => i.type === "danmaku.message");
    if (item) resolve({ room: batch.room, item });
  });
});
const joinA = await alice.emitWithAck("join", { room, since: null });
const joinB = await bob.emitWithAck("join", { room, since: null });
const sent = await alice.emitWithAck("danmaku.send", { room, text: "hello from node" });
const got = await received;
const badShape = await alice.emitWithAck("danmaku.send", { room, text: 42 });
const time = await alice.emitWithAck("time", {});

let refused = null;
try {
  await connect("not-a-token");
} catch (err) {
  refused = { message: err.message, data: err.data };
}
alice.close();
bob.close();
console.log(JSON.stringify({ joinA, joinB, sent, got, badShape, time, refused }));
process.exit(0);
