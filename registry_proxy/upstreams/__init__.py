"""Other registries this one pulls from: the client that speaks to them as a registry client does."""
