// The host console's cameras, for tests/test_media_cameras_console.py: the host publishes two
// cameras (aiortc, from the test); the console must list both with the main one on air, and
// its "Cut to" button must put the close camera on air (the program API, then the
// media.program item the console logs).
// node cameras.mjs <base url> <room> <host token> <chromium> <artifacts dir>
// Prints one JSON line of what it saw (harness.mjs); the Python test asserts on it.
import { harness } from "./harness.mjs";

const [base, room, hostToken, executablePath, artifacts] = process.argv.slice(2);
const { step, open, shot, run } = await harness({ base, room, executablePath, artifacts });

const cameras = page => page.evaluate(() => [...document.querySelectorAll("#cameras li[data-camera]")].map(li => ({
  name: li.dataset.camera, onAir: li.dataset.onAir === "true", sending: li.dataset.sending === "true",
  button: li.querySelector("button")?.textContent, disabled: li.querySelector("button")?.disabled })));

await run(async () => {
  const page = await open("/host", hostToken);
  await step("listed", async () => {
    // Both listed, and the close one sending (a camera not sending yet is refused a cut, 409
    // camera_not_sending: on a loaded machine its first frames can come after the listing).
    await page.waitForFunction(() => document.querySelectorAll("#cameras li[data-camera]").length === 2
      && document.querySelector('#cameras li[data-camera="close"]')?.dataset.sending === "true")
      .catch(async error => {  // what the console showed instead
        const shown = { cameras: await cameras(page), status: await page.textContent("#status"),
          list: await page.textContent("#cameras"), ingest: await page.textContent("#paths") };
        throw new Error(`${error.message} ${JSON.stringify(shown)}`);
      });
    return cameras(page);
  });
  await step("cut", async () => {
    await page.click('#cameras li[data-camera="close"] button');
    await page.waitForFunction(() => document.querySelector('#cameras li[data-camera="close"]')?.dataset.onAir === "true");
    await page.waitForFunction(() => [...document.querySelectorAll("#ingest li")].some(li => li.textContent.includes("camera wide → close")));
    await shot(page, "host-cameras");
    return { cameras: await cameras(page), error: await page.textContent("#camera-error"),
      events: await page.evaluate(() => [...document.querySelectorAll("#ingest li")].map(li => li.textContent)) };
  });
});
