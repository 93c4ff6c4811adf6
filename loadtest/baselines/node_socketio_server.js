// The Node socket.io v4 baseline for `liveroom-loadtest compare`: the same commands and
// the same `batch` items as liveroom, one message per emit (`io.to(room).emit`).
// Tokens are not checked: it measures delivery, not auth.
"use strict";
const http = require("http");
const crypto = require("crypto");
const { Server } = require("socket.io");

const portFlag = process.argv.indexOf("--port");
const port = portFlag > 0 ? Number(process.argv[portFlag + 1]) : 8082;
const seqs = new Map();

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, { transports: ["websocket", "polling"], perMessageDeflate: false });

function publish(room, type, data) {
  const seq = (seqs.get(room) || 0) + 1;
  seqs.set(room, seq);
  io.to(room).emit("batch", { room, items: [{ seq, type, ts: Date.now(), data }] });
  return seq;
}

io.on("connection", (socket) => {
  socket.on("join", (data, ack) => {
    socket.join(data.room);
    ack({ ok: true, room: data.room, seq: seqs.get(data.room) || 0 });
  });
  socket.on("danmaku.send", (data, ack) => {
    const id = crypto.randomBytes(8).toString("hex");
    publish(data.room, "danmaku.message", { id, user: { id: socket.id, name: socket.id }, text: data.text });
    ack({ ok: true, id });
  });
  socket.on("bench.publish", (data, ack) => {
    const seq = publish(data.room, data.priority ? "bench.priority" : "bench.message", { text: data.text });
    ack({ ok: true, seq });
  });
  socket.on("time", (data, ack) => ack({ ok: true, server_time: Date.now() }));
});

httpServer.listen({ port, host: "127.0.0.1", backlog: 4096 });
