"""Config: the repository's config.toml is exactly the built-in defaults; env overrides work."""

from __future__ import annotations

from pathlib import Path

import pytest

from liveroom.config import Config, load_config
from liveroom.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_config_toml_spells_out_the_built_in_defaults() -> None:
    loaded = load_config(ROOT / "config.toml", environ={})
    assert loaded.replace(plugins={}) == Config()
    import importlib

    from liveroom.config import build_section
    from liveroom.discovery import BUILTIN

    assert set(loaded.plugins) == set(BUILTIN)
    for name, target in BUILTIN.items():
        module, _, cls = target.partition(":")
        config_type = getattr(importlib.import_module(module), cls).config_type
        table = {k: v for k, v in loaded.plugins[name].items() if k != "enabled"}
        assert build_section(config_type, table, name) == config_type(), name


def test_short_and_long_env_names_override() -> None:
    config = load_config(
        None,
        environ={
            "LIVEROOM_PORT": "9001",
            "LIVEROOM_JWT_SECRET": "x" * 40,
            "LIVEROOM_ROOM_HISTORY_COUNT": "7",
            "LIVEROOM_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "LIVEROOM_PLUGINS_DANMAKU_MAX_LENGTH": "50",
        },
    )
    assert config.server.port == 9001
    assert config.auth.jwt_secret == "x" * 40
    assert config.room.history_count == 7
    assert config.server.allowed_origins == ("https://a.example", "https://b.example")
    assert config.plugins["danmaku"]["max_length"] == "50"


def test_env_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 1234\n")
    assert load_config(path, environ={}).server.port == 1234
    assert load_config(path, environ={"LIVEROOM_SERVER_PORT": "4321"}).server.port == 4321


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'eighty'\n", "expected a number"),
        ("[server]\nportt = 1\n", "unknown key"),
        ("[nonsense]\na = 1\n", "unknown config section"),
        ("[delivery]\ntick_ms = 2.5\n", "whole number"),
        ("[server\n", "cannot read config"),
        ("[server]\nallowed_origins = 5\n", "expected a list"),
        # Cluster mode is one switch: broker and store on Redis together (issue 15).
        ("[broker]\nkind = 'redis'\n", r"\[broker\] kind = 'redis' and \[store\] kind = 'embedded'"),
        ("[store]\nkind = 'redis'\n", r"\[broker\] kind = 'memory' and \[store\] kind = 'redis'"),
    ],
)
def test_bad_config_fails_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_a_key_two_sections_share_has_no_short_env_name() -> None:
    config = load_config(None, environ={"LIVEROOM_KIND": "memory", "LIVEROOM_STORE_KIND": "memory"})
    assert config.store.kind == "memory" and config.broker.kind == "memory"
    assert load_config(None, environ={"LIVEROOM_KIND": "memory"}).store.kind == "embedded"
