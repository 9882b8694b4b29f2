"""`edgeret plugins`: what is installed, where it came from, what it registers."""

from __future__ import annotations

import argparse

from edgeret.cli.output import print_json, print_table


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    host = args.host
    infos = host.plugin_infos()
    if args.json:
        print_json({
            "plugins": [
                {
                    "name": i.name,
                    "distribution": i.distribution,
                    "version": i.version,
                    "module": i.module,
                    "registers": i.registers,
                }
                for i in infos
            ],
            "failed": [
                {"name": f.name, "distribution": f.distribution, "error": f.error}
                for f in host.failures
            ],
            "disabled": sorted(host.disabled),
        })
        return 0
    rows = []
    for info in infos:
        registers = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registers.items())
        rows.append((info.name, f"{info.distribution} {info.version}".strip(), registers or "-"))
    print_table(("plugin", "distribution", "registers"), rows)
    for failure in host.failures:
        print(f"FAILED {failure.name} ({failure.distribution}): {failure.error}")
    if host.disabled:
        print(f"disabled: {', '.join(sorted(host.disabled))}")
    return 0
