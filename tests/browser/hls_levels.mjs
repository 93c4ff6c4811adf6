// Drives the viewer page's HLS fallback through every rung of the server's ladder, for
// tests/test_pages.py: hls.js must see each variant of the master playlist as a level, and
// the page's quality picker must switch to each in turn, with that level's fragments loaded,
// pictures of its size decoded and playback going on; then back to Auto.
// node hls_levels.mjs <base url> <room> <viewer token> <chromium> <artifacts dir>
// Prints one JSON line of what it saw (harness.mjs); the Python test asserts on it.
import { harness } from "./harness.mjs";

const [base, room, viewerToken, executablePath, artifacts] = process.argv.slice(2);
const { step, open, shot, run } = await harness({ base, room, executablePath, artifacts });

// What the page shows now: the video's picture (its size, and the frame counter the aiortc
// host draws as 16 bars, tests/media_support.py) and time, and what hls.js reported since
// the driver began listening (window.__hls, see "levels").
const sample = page => page.evaluate(() => {
  const video = document.querySelector("#host-video"), hls = window.liveroom.players.get("host").session.hls;
  const canvas = Object.assign(document.createElement("canvas"), { width: video.videoWidth, height: video.videoHeight });
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(video, 0, 0);
  const row = context.getImageData(0, canvas.height >> 1, canvas.width, 1).data;
  let counter = 0;
  for (let i = 0; i < 16; i++) counter = counter * 2 + (row[4 * Math.floor((i + 0.5) * canvas.width / 16)] > 128 ? 1 : 0);
  return { width: video.videoWidth, height: video.videoHeight, counter, time: video.currentTime,
    frames: video.getVideoPlaybackQuality().totalVideoFrames, level: hls.currentLevel, auto: hls.autoLevelEnabled,
    frags: window.__hls.frags.length, switched: window.__hls.switched.length,
    picker: document.querySelector("#quality").value, playing: document.querySelector("#quality").dataset.playing };
});

// Picks `index` in the quality picker ("-1": Auto) and waits for the end state: for a level,
// hls.js switched to it, loaded a fragment of it and the video shows pictures of its size;
// then playback goes on (0.5 s of media time and 5 more frames).
async function choose(page, index, level) {
  const before = await sample(page);
  const started = Date.now();
  await page.selectOption("#quality", String(index));
  await page.waitForFunction(({ index, level, before }) => {
    const video = document.querySelector("#host-video"), hls = window.liveroom.players.get("host").session.hls;
    if (index === -1) return hls.autoLevelEnabled;
    return window.__hls.frags.slice(before.frags).includes(index) && window.__hls.switched.slice(before.switched).includes(index)
      && video.videoWidth === level.width && video.videoHeight === level.height;
  }, { index, level, before }, { timeout: 10000 });
  const shownMs = Date.now() - started;
  const at = await sample(page);
  await page.waitForFunction(at => {
    const video = document.querySelector("#host-video");
    return video.currentTime >= at.time + 0.5 && video.getVideoPlaybackQuality().totalVideoFrames >= at.frames + 5;
  }, at, { timeout: 8000 });
  const after = await sample(page);
  const seen = await page.evaluate(before => ({ fragLevels: window.__hls.frags.slice(before.frags),
    switchedTo: window.__hls.switched.slice(before.switched) }), before);
  return { index, shownMs, before, at, after, ...seen };
}

await run(async () => {
  // The room takes no WebRTC viewers (media.max_viewers_per_room = 0): the server refuses the
  // page's WHEP with too_many_viewers, and the page falls back to HLS.
  const page = await open("/room", viewerToken, { context: { viewport: { width: 800, height: 600 } } });
  let levels = [];

  await step("levels", async () => {
    await page.waitForFunction(() => document.querySelector("#host-video").dataset.player, null, { timeout: 10000 });
    await page.evaluate(() => {
      const hls = window.liveroom.players.get("host").session.hls;
      window.__hls = { frags: [], switched: [] };
      hls.on("hlsFragLoaded", (_, { frag }) => window.__hls.frags.push(frag.level));
      hls.on("hlsLevelSwitched", (_, { level }) => window.__hls.switched.push(level));
    });
    await page.waitForFunction(() => document.querySelector("#host-video").currentTime > 0, null, { timeout: 10000 });
    const seen = await page.evaluate(() => ({
      player: document.querySelector("#host-video").dataset.player,
      levels: window.liveroom.players.get("host").session.hls.levels.map(l =>
        ({ width: l.width, height: l.height, bitrate: l.bitrate, url: String(l.url) })),
      options: [...document.querySelectorAll("#quality option")].map(o => ({ value: o.value, text: o.textContent })),
      pickerShown: !document.querySelector("#quality-picker").hidden }));
    levels = seen.levels;
    return { ...seen, playing: await sample(page) };
  });

  await step("switches", async () => {
    // Every level in turn, the one playing now last, so that each pick is a real switch.
    const playing = (await sample(page)).level;
    const order = [...levels.keys()].filter(i => i !== playing).concat(playing >= 0 ? [playing] : []);
    const switches = [];
    for (const index of order) {
      switches.push(await choose(page, index, levels[index]));
      await shot(page, `viewer-hls-level-${index}`);
    }
    return switches;
  });

  await step("auto", () => choose(page, -1, null));
});
