"""The kernel: settings, serde, topic catalog, dead letters, errors; agents and role mapping."""
