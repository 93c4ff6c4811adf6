"""Prometheus metrics, one registry per node (so several nodes can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("liveroom_connections", "Connected Socket.IO clients", registry=r)
        self.rooms = Gauge("liveroom_rooms", "Rooms with members on this node", registry=r)
        self.items_sent = Counter("liveroom_items_sent", "Items delivered (item x recipient)", registry=r)
        self.batches_sent = Counter(
            "liveroom_batches_sent", "batch events written to connections", registry=r
        )
        self.items_sampled_out = Counter(
            "liveroom_items_sampled_out",
            "Normal items left out of live delivery by the per-viewer cap (still in history)",
            registry=r,
        )
        self.invariant_violations = Counter(
            "liveroom_invariant_violations",
            "Room members found without a live transport at a flush ([delivery] check_members)",
            registry=r,
        )
        self.tick_interval = Gauge(
            "liveroom_tick_interval_seconds",
            "Current delivery tick interval (stretches under load)",
            registry=r,
        )
        self.publications = Counter("liveroom_publications", "Items published to rooms", ["type"], registry=r)
        self.commands = Counter("liveroom_commands", "Commands handled", ["command"], registry=r)
        self.errors = Counter("liveroom_errors", "Error acks and refused connections", ["code"], registry=r)
        self.bad_input = Counter(
            "liveroom_bad_input",
            "Malformed input, by layer (http, websocket, engineio, socketio); logged once per connection",
            ["layer"],
            registry=r,
        )
        self.disconnects = Counter(
            "liveroom_server_disconnects", "Connections closed by the server", ["reason"], registry=r
        )
        self.tick_seconds = Histogram(
            "liveroom_tick_seconds",
            "Time spent in one delivery tick",
            registry=r,
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        )

        self.command_seconds = Histogram(
            "liveroom_command_seconds",
            "From a command's arrival at the dispatcher to its ack (the server's share of ack latency)",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
