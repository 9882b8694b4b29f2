"""Build-host training helpers shared by all tasks. Imports torch: never on a device."""
