"""Built-in interaction plugins, each written against `liveroom.plugin` like a third party's."""
