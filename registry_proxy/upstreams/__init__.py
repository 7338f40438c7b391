"""Other registries served through this one: their client, where names go, and the cache."""
