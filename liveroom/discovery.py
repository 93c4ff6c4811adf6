"""Finding and building plugins: built-ins by name, third parties by entry point.

Built-ins are on unless their section says `enabled = false`. A third-party plugin (entry
point group `liveroom.plugins`) is on when its `[plugins.NAME]` section exists and does
not say `enabled = false`. A plugin not packaged yet (development, tests) may be named by
its section alone: `[plugins.NAME] load = "module:Class"`. Anything wrong here stops
start-up with a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from liveroom.config import build_section
from liveroom.errors import ConfigError
from liveroom.plugin import CheckedServices, Plugin, PluginHost

__all__ = ["ENTRY_POINT_GROUP", "available_plugins", "describe_config", "load_plugins"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "liveroom.plugins"
# The built-ins live in the repository's plugins/ folder, installed as liveroom.plugins.
BUILTIN = {
    "danmaku": "liveroom.plugins.danmaku:DanmakuPlugin",
    "sale": "liveroom.plugins.sale:SalePlugin",
    "poll": "liveroom.plugins.poll:PollPlugin",
    "like": "liveroom.plugins.like:LikePlugin",
    "coupon": "liveroom.plugins.coupon:CouponPlugin",
    "costream": "liveroom.plugins.costream:CostreamPlugin",
    "show": "liveroom.plugins.show:ShowPlugin",
    "showcase": "liveroom.plugins.showcase:ShowcasePlugin",
    "luckybag": "liveroom.plugins.luckybag:LuckyBagPlugin",
    "dashboard": "liveroom.plugins.dashboard:DashboardPlugin",
    "auction": "liveroom.plugins.auction:AuctionPlugin",
    "gift": "liveroom.plugins.gift:GiftPlugin",
}


def available_plugins() -> dict[str, str]:
    """name -> "module:Class", built-ins first; an entry point may not shadow a built-in."""
    found = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN:
            raise ConfigError(f"plugin entry point {entry.name!r} shadows a built-in plugin")
        found[entry.name] = entry.value
    return found


def load_plugins(
    tables: Mapping[str, Mapping[str, Any]], host: PluginHost
) -> tuple[list[Plugin], dict[str, PluginHost]]:
    """The enabled plugins in hook order (built-ins, then the others by name), and each one's
    host: the shared one with the plugin's own `CheckedServices` (its declared item types)."""
    available = available_plugins()
    for name, table in tables.items():
        target = table.get("load")
        if isinstance(target, str) and name not in available:
            available[name] = target
    unknown = set(tables) - set(available)
    if unknown:
        raise ConfigError(f"[plugins] unknown plugin(s): {', '.join(sorted(unknown))}")
    plugins: list[Plugin] = []
    hosts: dict[str, PluginHost] = {}
    off: list[str] = []
    for name in [*BUILTIN, *sorted(set(available) - set(BUILTIN))]:  # the hook order
        target = available[name]
        table = dict(tables.get(name, {}))
        table.pop("load", None)
        enabled = table.pop("enabled", name in BUILTIN or name in tables)
        if str(enabled).lower() in ("false", "0", "no", "off"):
            off.append(name)
            continue
        plugins.append(_build(name, target, table, host, hosts))
        log.info("plugin %s loaded from %s: %s", name, target, describe_config(plugins[-1].config))
    if off:
        log.info("plugins not loaded (off, or a third party's without its section): %s", ", ".join(off))
    host.plugins[:] = plugins
    return plugins, hosts


SECRET_NAME = re.compile(r"(^|_)(secret|password|token|key)(_file)?$|secret|password", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def describe_config(config: Any) -> str:
    """A plugin's config on one line, for the start-up log: secrets hidden, long values cut."""
    if not dataclasses.is_dataclass(config):
        return repr(config)[:200]
    fields = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        text = "***" if SECRET_NAME.search(field.name) and value else URL_CREDENTIALS.sub("***@", repr(value))
        fields.append(f"{field.name}={text if len(text) <= 60 else text[:57] + '...'}")
    return ", ".join(fields) or "(no settings)"


def _build(
    name: str, target: str, table: Mapping[str, Any], shared: PluginHost, hosts: dict[str, PluginHost]
) -> Plugin:
    module_name, _, class_name = target.partition(":")
    try:
        plugin_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"plugin {name!r} failed to load from {target}: {exc}") from exc
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, Plugin)):
        raise ConfigError(f"plugin {name!r}: {target} is not a liveroom.plugin.Plugin")
    if plugin_class.name != name:
        raise ConfigError(f"plugin {target} is named {plugin_class.name!r}, registered as {name!r}")
    config = build_section(plugin_class.config_type, table, f"plugins.{name}")
    services = CheckedServices(shared.services, name, plugin_class.item_types)
    host = hosts[name] = dataclasses.replace(shared, services=services)
    try:
        return plugin_class(config, host)
    except Exception as exc:
        raise ConfigError(f"plugin {name!r} failed to start: {exc}") from exc
