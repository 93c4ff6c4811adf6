// Plays a recording on the replay page (/replay/{room}/{id}) for tests/test_media_replay.py:
// the video must play and every danmaku of its timeline must fly when the video reaches
// the time it was sent. node replay.mjs <base url> <room> <recording id> <token> <chromium> <seconds>
// Prints one JSON line: what the page showed, each with the media time it was shown at.
import { chromium } from "playwright-core";
import { ARGS } from "./harness.mjs";

const [base, room, id, token, executablePath, seconds] = process.argv.slice(2);
const result = { errors: [] };
const browser = await chromium.launch({ executablePath, args: ARGS });
try {
  const page = await browser.newPage();
  page.on("pageerror", error => result.errors.push(`page: ${error.message}`));
  await page.goto(`${base}/replay/${room}/${id}#token=${token}`);
  await page.waitForFunction(() => window.replay?.ready, null, { timeout: 30000 });
  await page.evaluate(() => document.querySelector("#video").play());
  // Until the video has played `seconds` of media time (or ended).
  await page.waitForFunction(s => {
    const video = document.querySelector("#video");
    return video.ended || video.currentTime >= Number(s);
  }, seconds, { timeout: 60000 });
  Object.assign(result, await page.evaluate(() => {
    const video = document.querySelector("#video");
    return { items: window.replay.items.length, shown: window.replay.shown, currentTime: video.currentTime,
      frames: video.getVideoPlaybackQuality().totalVideoFrames, flying: document.querySelectorAll("#danmaku > *").length,
      width: video.videoWidth };
  }));
} catch (error) {
  result.errors.push(`driver: ${error.message.split("\n")[0]}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
