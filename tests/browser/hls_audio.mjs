// Plays a room through the viewer page's HLS fallback with the sound on, for
// tests/test_pages.py: hls.js must pick up the master playlist's AAC rendition (EXT-X-MEDIA),
// load its playlist and fragments, and Chromium must decode and play its audio (the host's
// tone, heard through an AnalyserNode) while the video plays on.
// node hls_audio.mjs <base url> <room> <viewer token> <chromium> <artifacts dir>
// Prints one JSON line of what it saw (harness.mjs); the Python test asserts on it.
import { harness } from "./harness.mjs";

const [base, room, viewerToken, executablePath, artifacts] = process.argv.slice(2);
const { step, open, shot, run } = await harness({ base, room, executablePath, artifacts });

// The video's progress, what Chromium decoded, and what hls.js reported since the driver
// began listening (window.__audio).
const sample = page => page.evaluate(() => {
  const video = document.querySelector("#host-video");
  return { time: video.currentTime, frames: video.getVideoPlaybackQuality().totalVideoFrames, muted: video.muted,
    audioBytes: video.webkitAudioDecodedByteCount, videoBytes: video.webkitVideoDecodedByteCount,
    audioFrags: window.__audio.frags, audioPlaylists: window.__audio.playlists, levels: window.__audio.levels.length };
});

await run(async () => {
  // The room takes no WebRTC viewers (media.max_viewers_per_room = 0): the server refuses the
  // page's WHEP with too_many_viewers, and the page falls back to HLS.
  const page = await open("/room", viewerToken, { context: { viewport: { width: 800, height: 600 } } });

  await step("audio", async () => {
    await page.waitForFunction(() => document.querySelector("#host-video").dataset.player, null, { timeout: 10000 });
    await page.evaluate(() => {
      const hls = window.liveroom.players.get("host").session.hls;
      window.__audio = { frags: 0, playlists: 0, levels: [] };
      hls.on("hlsFragLoaded", (_, { frag }) => { if (frag.type === "audio") window.__audio.frags++; });
      hls.on("hlsAudioTrackLoaded", () => window.__audio.playlists++);  // the live audio.m3u8, reloaded
    });
    await page.waitForFunction(() => document.querySelector("#host-video").currentTime > 0, null, { timeout: 10000 });
    await page.click("#unmute");  // what a viewer does: Sound on
    // What the element plays, heard through Web Audio (a copy of its output: captureStream),
    // every 250 ms: its level and loudest frequency.
    await page.evaluate(async () => {
      const video = document.querySelector("#host-video"), context = new AudioContext();
      await context.resume();
      const analyser = Object.assign(context.createAnalyser(), { fftSize: 4096 });
      context.createMediaStreamSource(new MediaStream(video.captureStream().getAudioTracks())).connect(analyser);
      setInterval(() => {
        const wave = new Float32Array(analyser.fftSize), spectrum = new Float32Array(analyser.frequencyBinCount);
        analyser.getFloatTimeDomainData(wave);
        analyser.getFloatFrequencyData(spectrum);
        const peak = spectrum.reduce((best, db, bin) => db > spectrum[best] ? bin : best, 0);
        window.__audio.levels.push({ rms: Math.sqrt(wave.reduce((sum, x) => sum + x * x, 0) / wave.length),
          peakHz: peak * context.sampleRate / analyser.fftSize });
      }, 250);
    });
    const before = await sample(page);
    // The end state: 1 s more of media played, with audio decoded and heard, 10 more video
    // frames, and at least 2 more audio fragments and a reload of the audio playlist.
    await page.waitForFunction(before => {
      const video = document.querySelector("#host-video"), audio = window.__audio;
      return video.currentTime >= before.time + 1 && video.getVideoPlaybackQuality().totalVideoFrames >= before.frames + 10
        && video.webkitAudioDecodedByteCount > before.audioBytes && audio.frags >= before.audioFrags + 2
        && audio.playlists >= 1 && audio.levels.length >= before.levels + 4;
    }, before, { timeout: 15000 }).catch(async error => {
      throw new Error(`${error.message.split("\n")[0]}: before ${JSON.stringify(before)}, now ${JSON.stringify(await sample(page))}`);
    });
    const after = await sample(page);
    await shot(page, "viewer-hls-audio");
    return page.evaluate(({ before, after }) => {
      const hls = window.liveroom.players.get("host").session.hls;
      return { player: document.querySelector("#host-video").dataset.player, before, after,
        tracks: hls.audioTracks.map(t => ({ groupId: t.groupId, name: t.name, codec: t.audioCodec ?? null, url: String(t.url) })),
        track: hls.audioTrack, levelCodecs: hls.levels.map(l => l.audioCodec ?? null),
        heard: window.__audio.levels.slice(before.levels) };
    }, { before, after });
  });
});
