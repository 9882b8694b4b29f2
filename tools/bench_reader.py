"""Benchmark the reader app's worklist on a 100,000-capture hub database.

    python tools/bench_reader.py [--captures 100000] [--repeat 15] [--out benchmarks]

Writes benchmarks/reader-worklist.{json,md} and prints the table. Figures, not a timed test. A real
SQLite hub database (WAL, synchronous=FULL, migrated to head) is filled with synthetic capture rows
through the hub's own column mapping (tests/reader_helpers.py), the reader app is served by uvicorn on
loopback as `edgeret serve` runs it, and a logged-in reader asks for pages of 100 rows:

* server: the app's own time per page (its Server-Timing header: queries + template), and the HTTP
  round trip measured by the client, median and p95 over ``--repeat`` requests;
* browser: headless Debian chromium (Playwright) navigating to the page, from the request to the load
  event (Navigation Timing), median and p95 (skipped, and said so, without chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reader_helpers import PASSWORD, Client, bulk_captures, start_reader  # noqa: E402

from edgeret.hub.db import create_engine, migrate, sqlite_url  # noqa: E402
from edgeret.hub.store import private_database_file  # noqa: E402
from edgeret.reader import accounts  # noqa: E402

VIEWS = {  # name -> the worklist's query string
    "work-first queue (default)": "",
    "all, newest first": "queue=all",
    "referable only": "queue=all&referable=yes",
    "site + date range": "queue=all&site=south&since=2026-11-04&until=2026-12-04",
    "ungradable, not reviewed": "queue=all&ungradable=yes&unreviewed=yes",
    "device/hub disagree": "queue=all&disagree=yes",
    "sorted by bytes, largest first": "queue=all&sort=bytes&order=desc",
}


NAVIGATION_TIMING = """() => { const n = performance.getEntriesByType('navigation')[0];
    return [n.loadEventEnd - n.requestStart, n.domContentLoadedEventEnd - n.requestStart]; }"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def deep_cursor(client: Client, query: str, pages: int) -> str:
    """The 'after' cursor of page ``pages`` + 1, found by following the 'next 100' links."""
    import re
    from html import unescape

    path = f"/?{query}"
    for _ in range(pages):
        body = client.request("GET", path)[2].decode()
        match = re.search(r'id="next-page" href="([^"]+)"', body)
        path = unescape(match.group(1))
    return path


def server_times(client: Client, path: str, repeat: int) -> dict[str, float]:
    app, wall = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        status, headers, body = client.request("GET", path)
        wall.append((time.perf_counter() - started) * 1000)
        assert status == 200 and body.count(b'class="open"') > 0, (path, status)
        app.append(float(headers["server-timing"].split("dur=")[1]))
    return {"app_ms_median": round(statistics.median(app), 1), "app_ms_p95": round(pct(app, 0.95), 1),
            "http_ms_median": round(statistics.median(wall), 1), "http_ms_p95": round(pct(wall, 0.95), 1),
            "rows": body.count(b'class="open"')}


def browser_times(url: str, cookie: str, paths: dict[str, str], repeat: int) -> dict[str, dict] | str:
    from browser import launch, unavailable

    reason = unavailable()
    if reason:
        return reason
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        host = url.split("//")[1].split(":")[0]
        context.add_cookies([{"name": "edgeret_reader", "value": cookie, "domain": host, "path": "/"}])
        page = context.new_page()
        for name, path in paths.items():
            loads, shown = [], []
            for _ in range(repeat):
                page.goto(url + path)
                timing = page.evaluate(NAVIGATION_TIMING)
                loads.append(timing[0])
                shown.append(timing[1])
            out[name] = {"load_ms_median": round(statistics.median(loads), 1),
                         "load_ms_p95": round(pct(loads, 0.95), 1),
                         "dom_ready_ms_median": round(statistics.median(shown), 1)}
        chromium.close()
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Reader app: a worklist page of 100 rows from a 100,000-capture hub database",
        "",
        f"`python tools/bench_reader.py --captures {result['captures']}` on {result['machine']} "
        f"({result['cpus']} CPUs shared with other work), SQLite {result['sqlite']}, one reader logged in, "
        f"uvicorn on loopback; median and p95 of {result['repeat']} requests per view. Filling the "
        f"database took {result['fill_s']} s ({result['db_mb']} MB).",
        "",
        "Server: the app's own time (Server-Timing: the page's queries, its count of matching captures and "
        "the template) and the HTTP round trip seen by the client. Browser: headless Debian chromium "
        "(Playwright), request start to the load event (Navigation Timing; the page's CSS and script "
        "included, cached after the first).",
        "",
        "| view | rows | app ms (median / p95) | HTTP ms (median / p95) | browser load ms (median / p95) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    browser = result["browser"] if isinstance(result["browser"], dict) else {}
    for name, s in result["server"].items():
        b = browser.get(name)
        shown = f"{b['load_ms_median']} / {b['load_ms_p95']}" if b else "-"
        lines.append(f"| {name} | {s['rows']} | {s['app_ms_median']} / {s['app_ms_p95']} | "
                     f"{s['http_ms_median']} / {s['http_ms_p95']} | {shown} |")
    if not browser:
        lines += ["", f"Browser figures skipped: {result['browser']}."]
    lines += ["", " ".join((
        "Pages are keyset-paginated on indexed columns (`edgeret/reader/queries.py`): page 500 costs what",
        "page 1 does. The count of matching captures stops at 10,000 (the page then says 'more than",
        "10,000'); filters no index serves (device/hub disagreement, not yet reviewed) scan rows until",
        "then, which is most of their time. Each page also writes its audit row (one fsynced SQLite",
        "transaction).")), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()
    import sqlite3

    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "hub"
        store.mkdir(mode=0o700)
        private_database_file(store)
        engine = create_engine(sqlite_url(store))
        migrate(engine)
        started = time.perf_counter()
        bulk_captures(engine, args.captures, seed=7)
        fill = time.perf_counter() - started
        accounts.add_reader(engine, "bench", PASSWORD)
        engine.dispose()
        server = start_reader(store)
        try:
            client = Client(server.url)
            assert client.login("bench") == 303
            paths = {name: f"/?{query}" for name, query in VIEWS.items()}
            deep = max(1, min(499, args.captures // 100 - 1))
            paths[f"all, newest first, page {deep + 1}"] = deep_cursor(client, "queue=all", deep)
            results = {name: server_times(client, path, args.repeat) for name, path in paths.items()}
            browser = browser_times(server.url, client.cookies["edgeret_reader"], paths,
                                    max(5, args.repeat // 3))
        finally:
            server.stop()
        size = sum(p.stat().st_size for p in store.iterdir()) / 1e6
    result = {"captures": args.captures, "repeat": args.repeat, "fill_s": round(fill, 1),
              "db_mb": round(size, 1), "machine": platform.machine(), "cpus": os.cpu_count(),
              "sqlite": sqlite3.sqlite_version, "server": results, "browser": browser}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reader-worklist.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "reader-worklist.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
