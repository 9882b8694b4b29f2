"""Build host only (torch allowed): data, training, export to bundles, and the reports of benchmarks."""
