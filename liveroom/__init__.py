"""liveroom: a self-hostable real-time live-room interaction server."""

__version__ = "0.1.0"
