"""`edgeret devices [show NAME]`: device profiles and which backend runs here."""

from __future__ import annotations

import argparse

from edgeret.cli.output import print_json, print_table
from edgeret.devices.backend_chain import resolve_backends
from edgeret.plugin.host import device_catalog


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    parser.add_argument("name", nargs="?", help="device name or alias (for `show`)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    host = args.host
    catalog = device_catalog(host, args.devices_dir)
    backends = host.backends()
    if args.action == "show":
        if not args.name:
            from edgeret.errors import EdgeretError

            raise EdgeretError("devices show: give a device name, e.g. `edgeret devices show jetson`")
        return _show(catalog.resolve(args.name), backends, args.json, requested=args.name)
    profiles = list(catalog)
    if args.json:
        print_json({"devices": [
            {**p.to_dict(), "backend_here": resolve_backends(p, backends).chosen}
            for p in profiles
        ]})
        return 0
    rows = [
        (p.name, ", ".join(p.aliases) or "-", p.cpu_arch, p.accelerator,
         " > ".join(p.backends), ", ".join(p.precisions),
         resolve_backends(p, backends).chosen or "none")
        for p in profiles
    ]
    print_table(("device", "aliases", "arch", "accelerator", "backends", "precisions",
                 "runs here on"), rows)
    return 0


def _show(profile, backends, as_json: bool, requested: str) -> int:
    resolution = resolve_backends(profile, backends)
    steps = [{"backend": s.name, "available": s.ok, "reason": s.reason} for s in resolution.steps]
    if as_json:
        print_json({
            "requested": requested,
            "profile": profile.to_dict(),
            "backend_resolution": {"chosen": resolution.chosen, "steps": steps},
        })
        return 0
    if requested != profile.name:
        print(f"'{requested}' is an alias of '{profile.name}'")
    for key, value in profile.to_dict().items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    print("backend resolution on this machine:")
    for step in resolution.steps:
        mark = "use " if step.name == resolution.chosen else "skip"
        print(f"  {mark} {step.name}: {step.reason}")
    if resolution.chosen is None:
        print("  (no backend of this profile can run here; export for it still works)")
    return 0
