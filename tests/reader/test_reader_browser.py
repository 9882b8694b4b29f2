"""The reader app in a real browser (Debian's chromium, Playwright), the app served by uvicorn on loopback
on a real SQLite hub store: log in, filter to referable, open one, zoom and pan, next/previous keys,
override its grade, then the database row and the audit log; a logged-out browser and a camera token are
turned away; forged forms are refused. Each step's screenshot is written under out/reader-browser/ (and
the pytest tmp dir) for a person to look at."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from browser import launch, unavailable  # noqa: E402
from reader_helpers import PASSWORD, add_reader, start_reader, store_with_images  # noqa: E402

from edgeret.hub.db import create_engine, sqlite_url  # noqa: E402
from edgeret.hub.db.repository import HubRepository  # noqa: E402
from edgeret.reader import queries  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REASON = unavailable()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=f"no browser: {REASON}")]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader-browser")
    store = root / "hub"
    records = store_with_images(store, n=12)
    add_reader(store, "alice")
    server = start_reader(store)
    engine = create_engine(sqlite_url(store))
    shots = root / "screenshots"
    shots.mkdir()
    yield server, engine, records, shots
    server.stop()
    engine.dispose()
    out = ROOT / "out" / "reader-browser"  # a copy where a person looks (out/ is not in git)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(shots, out)


@pytest.fixture(scope="module")
def browser(setting):
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = launch(playwright)
        except Error as exc:
            pytest.skip(f"chromium does not start here: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


def log_in(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{url}/")


def test_a_reader_filters_opens_zooms_and_overrides_a_referable_capture(setting, browser):
    server, engine, records, shots = setting
    url = server.url
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/")
    assert page.url == f"{url}/login"  # logged out: sent to the log-in form
    page.screenshot(path=str(shots / "01-login.png"))
    log_in(page, url)
    page.screenshot(path=str(shots / "02-worklist.png"), full_page=True)

    # filter to referable captures
    page.select_option("#f-referable", "yes")
    page.click("#apply")
    page.wait_for_url("**referable=yes**")
    referable = sorted((r for r in records if r["findings"].get("referable")), key=lambda r: r["received_at"])
    links = page.locator("a.open")
    assert links.count() == len(referable) > 0
    assert page.inner_text("#total") == str(len(referable))
    page.screenshot(path=str(shots / "03-referable.png"), full_page=True)

    # open the first: the oldest referable capture
    links.first.click()
    target = referable[0]["capture_id"]
    page.wait_for_url(f"**/captures/{target}?**")
    page.wait_for_function("document.getElementById('image').naturalWidth > 0")
    assert page.inner_text("#hub-result").startswith("dr-grade")
    assert page.locator("svg").count() >= 2  # quality and DR probability charts
    page.screenshot(path=str(shots / "04-capture.png"), full_page=True)

    # zoom in (buttons, then the wheel), the larger rendition loads, drag pans
    page.click("#zoom-in")
    page.click("#zoom-in")
    assert float(page.get_attribute("#viewer", "data-zoom")) == pytest.approx(2.25)
    box = page.locator("#viewer").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -200)
    page.wait_for_function("parseFloat(document.getElementById('viewer').dataset.zoom) > 2.3")
    page.wait_for_function("document.getElementById('image').src.includes('w=2048')")
    before = page.eval_on_selector("#image", "e => e.style.transform")
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 120, box["y"] + box["height"] / 2 - 80, steps=5)
    page.mouse.up()
    assert page.eval_on_selector("#image", "e => e.style.transform") != before
    assert page.inner_text("#zoom-level") != "100%"
    page.screenshot(path=str(shots / "05-zoomed.png"))

    # keyboard: j opens the next referable capture, k comes back
    page.keyboard.press("j")
    page.wait_for_url(f"**/captures/{referable[1]['capture_id']}?**")
    page.keyboard.press("k")
    page.wait_for_url(f"**/captures/{target}?**")

    # override the grade
    page.select_option("#d-grade", "4")
    page.select_option("#d-referable", "yes")
    page.select_option("#d-dme", "yes")
    page.fill("#d-comment", "new vessels at the disc")
    page.uncheck("input[name=then]")
    page.click("#override")
    page.wait_for_selector("#decisions li:has-text('override')")
    page.screenshot(path=str(shots / "06-decided.png"), full_page=True)

    (decision, *_) = queries.decisions(engine, target)
    assert (decision.reader, decision.action, decision.dr_grade, decision.referable, decision.dme,
            decision.comment) == ("alice", "override", 4, True, True, "new vessels at the disc")
    assert HubRepository(engine).row(target).dr_grade == referable[0]["findings"]["dr_grade"]  # untouched
    audit = [(e.reader, e.action) for e in queries.audit_rows(engine, capture_id=target)]
    for action in ("view", "image", "decision"):
        assert ("alice", action) in audit, action

    # the worklist shows the decision
    page.goto(f"{url}/?queue=all&referable=yes")
    assert "alice: override" in page.inner_text("#worklist")
    page.screenshot(path=str(shots / "07-worklist-decided.png"), full_page=True)
    page.click("text=Reports")
    page.fill("input[name=since]", "2026-11-01")
    page.click("text=Show")
    page.wait_for_url("**since=2026-11-01**")
    assert page.locator("#per-site tbody tr").count() == len({r["camera"] for r in records})
    page.screenshot(path=str(shots / "10-reports.png"), full_page=True)

    # a form forged into the app's own page without the CSRF token (script cannot fetch: the page's CSP
    # has no connect-src): refused, nothing stored
    with page.expect_navigation() as navigation:
        page.evaluate("""id => { const f = document.createElement('form');
            f.method = 'post'; f.action = '/captures/' + id + '/decision';
            for (const [k, v] of [['action', 'override'], ['dr_grade', '0'], ['referable', 'no']]) {
                const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }
            document.body.appendChild(f); f.submit(); }""", target)
    assert navigation.value.status == 403
    # a forged form on another site: the SameSite=Strict cookie stays home, so it is not logged in
    forged = context.new_page()
    forged.set_content(f"""<form method="post" action="{url}/captures/{target}/decision">
        <input name="action" value="override"><input name="dr_grade" value="0">
        <button id="go">go</button></form>""")
    with forged.expect_navigation() as navigation:
        forged.click("#go")
    assert navigation.value.status == 401
    forged.screenshot(path=str(shots / "08-forged-form-refused.png"))
    assert len(queries.decisions(engine, target)) == 1
    context.close()


def test_a_logged_out_browser_and_a_camera_token_are_turned_away(setting, browser):
    server, _, records, shots = setting
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(f"{server.url}/captures/{records[0]['capture_id']}")
    assert page.url == f"{server.url}/login" and response.status == 200
    camera = browser.new_context(extra_http_headers={"Authorization": "Bearer camera-token-0123456789"})
    response = camera.new_page().goto(f"{server.url}/")
    assert response.status == 401
    page.screenshot(path=str(shots / "09-logged-out.png"))
    camera.close()
    context.close()
