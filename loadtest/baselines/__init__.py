"""Baseline servers for `liveroom-loadtest compare`: the same commands, one message per emit."""
