"""GET /media/demo: a small page that publishes with WHIP and plays with WHEP from a browser.

It doubles as the browser-side client for the Chromium tests: `whip(room, token)`,
`whep(room, token, slot)` and `framesDecoded()` are on `window`.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["demo_page"]

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>liveroom media</title>
<video id="local" autoplay muted playsinline width="320"></video>
<video id="remote" autoplay muted playsinline width="320"></video>
<script>
const ice = pc => new Promise(done => {
  if (pc.iceGatheringState === "complete") return done();
  pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
});

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await ice(pc);  // liveroom takes no trickled candidates: send them all in the offer
  const res = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (res.status !== 201) throw new Error(res.status + " " + await res.text());
  await pc.setRemoteDescription({type: "answer", sdp: await res.text()});
  return res.headers.get("Location");
}

window.whip = async (room, token) => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true});
  document.getElementById("local").srcObject = stream;
  const pc = window.publishPc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  return exchange(pc, "/whip/" + encodeURIComponent(room), token);
};

window.whep = async (room, token, slot = "host") => {
  const pc = window.playPc = new RTCPeerConnection();
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  pc.ontrack = event => { document.getElementById("remote").srcObject = event.streams[0] ||
    new MediaStream([event.track]); };
  return exchange(pc, "/whep/" + encodeURIComponent(room) + "?slot=" + encodeURIComponent(slot), token);
};

window.framesDecoded = async () => {
  let frames = 0, codec = null;
  const stats = await window.playPc.getStats();
  stats.forEach(report => {
    if (report.type === "inbound-rtp" && report.kind === "video") {
      frames = report.framesDecoded || 0;
      codec = report.codecId && stats.get(report.codecId) ? stats.get(report.codecId).mimeType : null;
    }
  });
  return {frames, codec};
};
</script>
"""


async def demo_page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")
