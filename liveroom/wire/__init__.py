"""The wire with no I/O: WebSocket (RFC 6455, `websocket`), Engine.IO v4 (`engineio`) and
Socket.IO v5 (`socketio`) as pure state machines and codecs, in the manner of websockets'
sans-I/O `Protocol` and h11: bytes in, events and bytes out, time passed in. The asyncio
side is `liveroom.engine_session` (a session on WebSocket or long-polling),
`liveroom.polling`, `liveroom.direct_engine`, `liveroom.front_door` and `liveroom.sio`."""
