"""python client.py TOKEN [PORT] [ROOM]: joins the room, says hello, prints what is said.

Needs python-socketio's asyncio client: pip install "python-socketio[asyncio_client]".
"""

import asyncio
import sys

import socketio

token = sys.argv[1]
port = sys.argv[2] if len(sys.argv) > 2 else "8080"
room = sys.argv[3] if len(sys.argv) > 3 else "r1"
sio = socketio.AsyncClient()
last_seq, epoch, joining = None, None, False


async def join() -> None:
    """Join, and recover what was missed since the last seq seen (docs/protocol.md, `join`)."""
    global last_seq, epoch, joining
    joining = True
    ack = await sio.call("join", {"room": room, "since": last_seq, "epoch": epoch})
    joining = False
    if not ack["ok"]:
        return print(ack["error"]["code"], ack["error"]["message"], file=sys.stderr)
    if ack["reset"]:
        print("history gap: start over from", ack["state"])
    for item in ack["missed"]:
        show(item)
    last_seq, epoch = ack["seq"], ack["epoch"]


@sio.event
async def connect() -> None:
    await join()  # on every (re)connect
    sent = await sio.call("danmaku.send", {"room": room, "text": "hello!"})
    if not sent["ok"]:
        print(sent["error"]["code"], file=sys.stderr)  # e.g. rate_limited, too_long


@sio.on("batch")
async def batch(data: dict) -> None:
    skipped = data.get("skipped", [])
    for item in data["items"]:
        pass_skipped(skipped)
        if item["seq"] is None or item["seq"] == last_seq + 1:
            show(item)
        elif item["seq"] > last_seq + 1 and not joining:
            await join()  # a real gap: `missed` brings it (and the rest of this batch)
    pass_skipped(skipped)


def pass_skipped(skipped: list) -> None:
    """Seqs the server sampled out on purpose (the batch's `skipped` ranges) count as seen."""
    global last_seq
    for first, last in skipped:
        if first <= last_seq + 1 and last > last_seq:
            last_seq = last


def show(item: dict) -> None:
    global last_seq
    if item["seq"] is not None:
        last_seq = item["seq"]
    if item["type"] == "danmaku.message":
        print(f"{item['data']['user']['name']}: {item['data']['text']}", flush=True)


async def main() -> None:
    await sio.connect(f"http://127.0.0.1:{port}", auth={"token": token}, transports=["websocket"])
    await sio.wait()


asyncio.run(main())
