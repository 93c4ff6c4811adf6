// WHIP publish and WHEP play (docs/media.md): all ICE candidates go in the offer.
const gathered = pc => new Promise(done => {
  if (pc.iceGatheringState === "complete") return done();
  pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
  setTimeout(done, 2000);
});

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch(url, { method: "POST", body: pc.localDescription.sdp,
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` } });
  if (response.status !== 201) {
    const body = await response.json().catch(() => ({}));
    pc.close();
    throw Object.assign(new Error(body.error?.message || `HTTP ${response.status}`), { code: body.error?.code });
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return response.headers.get("Location");
}

export async function publish(room, token, stream, backup = false) {
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const url = `/whip/${encodeURIComponent(room)}${backup ? "?path=backup" : ""}`;
  const location = await exchange(pc, url, token);
  return { pc, location, stop: () => stop(pc, location, token) };
}

// `wanted()` false: the page no longer wants this session (it asked again meanwhile); its
// tracks leave `video` to the session that replaced it.
export async function play(room, token, slot, video, wanted = () => true) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = event => { stream.addTrack(event.track); if (wanted()) video.srcObject = stream; };
  const url = `/whep/${encodeURIComponent(room)}?slot=${encodeURIComponent(slot)}`;
  const location = await exchange(pc, url, token);
  return { pc, location, stop: () => stop(pc, location, token) };
}

// The HLS fallback (docs/pages.md): the room's master playlist through hls.js (vendored,
// loaded only now) wherever Media Source Extensions exist, else the browser's own HLS
// (Safari on iPhone). Rejects with code "no_hls" when the server has no HLS for the room.
// With hls.js, `onLevels({levels, chosen, playing})` tells the page the variants (lowest
// bitrate first), the viewer's choice (-1: automatic) and the one playing, and
// `setLevel(index)` switches to one (-1: back to automatic).
export async function playHls(room, video, onLevels = () => {}) {
  const url = `/hls/${encodeURIComponent(room)}/master.m3u8`;
  const probe = await fetch(url, { cache: "no-store" }).catch(() => null);
  if (!probe?.ok) throw Object.assign(new Error("no HLS for this room"), { code: "no_hls" });
  const { default: Hls } = await import("/static/vendor/hls.min.mjs");
  const played = () => video.play().catch(() => {});
  if (Hls.isSupported()) {
    // No worker: hls.js would start it from a blob: URL, which the pages' CSP refuses.
    const hls = new Hls({ enableWorker: false, liveSyncDurationCount: 2 });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else hls.startLoad();  // a playlist or segment that failed: try again from the live edge
    });
    hls.on(Hls.Events.MANIFEST_PARSED, played);
    const report = () => onLevels({
      levels: hls.levels.map(({ width, height, bitrate }) => ({ width, height, bitrate })),
      chosen: hls.autoLevelEnabled ? -1 : hls.manualLevel, playing: hls.currentLevel });
    for (const event of ["MANIFEST_PARSED", "LEVELS_UPDATED", "LEVEL_SWITCHED"]) hls.on(Hls.Events[event], report);
    hls.loadSource(url);
    hls.attachMedia(video);
    const setLevel = index => {  // a variant at once (the buffer is flushed); Auto from the next fragment on
      if (index === -1) hls.loadLevel = -1;
      else hls.currentLevel = index;
      report();
    };
    return { kind: "hls.js", hls, setLevel, stop: () => { hls.destroy(); } };
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    played();
    return { kind: "native-hls", stop: () => { video.removeAttribute("src"); video.load(); } };
  }
  throw Object.assign(new Error("this browser cannot play HLS"), { code: "no_hls" });
}

async function stop(pc, location, token) {
  pc.close();
  await fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
}

export async function framesDecoded(pc) {
  let frames = 0;
  (await pc.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "video") frames = r.framesDecoded || 0; });
  return frames;
}
