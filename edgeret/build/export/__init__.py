"""`edgeret export --device NAME`: per-device export, accuracy gate, bundle; plus `bench`.

* `targets`  -- device profile -> target backend, artifact format, exporter per precision
* `gate`     -- held-out sets from the phantom generators, task metrics, the accuracy gate
* `pipeline` -- torch runtime model, calibration, export attempts with fallback, golden pairs, bundle
* `bench`    -- latency / throughput / peak memory per backend, `--compare` side by side

Build host only (torch is imported inside functions); the bundle format itself
and `verify` live in the torch-free `edgeret.bundle.manifest`.
"""
