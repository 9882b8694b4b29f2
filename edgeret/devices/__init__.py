"""Device profiles (YAML data) and the choice of backend that runs a task on a device."""
