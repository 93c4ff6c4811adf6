"""liveroom's load generator: many Socket.IO viewers over raw WebSockets, in several processes.

Run it as `liveroom-loadtest SCENARIO` (or `python -m liveroom.loadtest`); see
docs/benchmarks.md for the scenarios and the figures they produce.
"""
