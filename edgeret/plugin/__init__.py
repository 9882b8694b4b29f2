"""The plugin host: hook specifications, typed registration objects, the pluggy host that loads them."""
