"""The web console in a real Chromium against real servers: every page, hostile content, the keyboard, axe-core.

Each flow runs on ``tuco serve`` and under uvicorn (``tuco.asgi``), with authentication off and on. Each test
saves a screenshot of every page it visits (the directory is printed; copied to /work/notes/console-shots when
that exists). A script error, a dialog, a CSP violation or a write by hostile content fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser.console import AXE, Problems, Server, key_path, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("heavy")]

LAB = {
    "lab/binary": bytes(range(40)) + b"\xff\xfe\x00",
    "lab/json": b'{"name":"tuco","list":[1,2,3],"nested":{"ok":true}}',
    "lab/text": "hello, wörld\nsecond line".encode(),
}


def tree_names(page: Any) -> list[str]:
    """The names the tree shows, in order."""
    names: list[str] = page.locator("#tree li .name").all_inner_texts()
    return names


def hexdump(data: bytes) -> str:
    """What the console's hex view shows: offset, 16 bytes in hex, and their printable ASCII."""
    lines = []
    for at in range(0, len(data), 16):
        row = data[at : at + 16]
        hexed = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{at:08x}  {hexed:<47}  {text}")
    return "\n".join(lines)


def open_prefix(page: Any, prefix: str) -> None:
    page.fill("#prefix", prefix)
    page.click("#search-form button[type=submit]")
    page.wait_for_function("p => document.getElementById('list-status').dataset.prefix === p", arg=prefix)


def open_key(page: Any, key: str, name: str) -> None:
    page.locator("#tree li").filter(has=page.locator(".name", has_text=name)).locator("button").first.click()
    page.wait_for_function("k => document.getElementById('key-name')?.textContent === k", arg=key)


def press(page: Any, name: str) -> None:
    """Click the button of the key's pane called exactly ``name``."""
    page.locator("#detail").get_by_role("button", name=name, exact=True).click()


def test_sign_in_browse_view_edit_conflict_delete_and_live_updates(
    server: Server, new_page: Any, shots: Path, problems: Problems
) -> None:
    """10,000 keys browsed by folder and by page; text, JSON and binary shown; edits, conflicts and live changes."""
    from playwright.sync_api import expect

    values = {
        f"app/r{r}/s{s}/k{k:02d}": f"value {r}-{s}-{k}".encode()
        for r in range(10)
        for s in range(10)
        for k in range(90)
    }
    values.update({f"flat/k{i:04d}": b"%d" % i for i in range(1000)})
    assert len(values) == 10_000
    server.seed({**values, **LAB})
    other = server.client()
    page = new_page()

    page.goto(server.url + "/")
    if server.token:
        expect(page.locator("#signin-page")).to_be_visible()
        page.screenshot(path=shots / "01-sign-in.png")
        page.fill("#token", "not-" + server.token)
        page.click("#signin-form button[type=submit]")
        expect(page.locator("#signin-error")).to_have_text("The server refused this token.")
        page.fill("#token", server.token)
        page.click("#signin-form button[type=submit]")
    expect(page.locator("#keys-page")).to_be_visible()
    assert page.url == server.url + "/"  # the token is never in the address
    expect(page.locator("#who")).to_have_text("Signed in with a token" if server.token else "Authentication is off")
    expect(page.locator("#list-status")).to_have_text("200 keys on this page, at revision 10003.")
    assert tree_names(page) == ["app/"]
    expect(page.locator("#tree .count")).to_have_text(["200 keys"])
    page.screenshot(path=shots / "02-keys-root.png")

    page.locator("#tree button").first.click()  # the folder app/
    page.wait_for_function("() => document.getElementById('list-status').dataset.prefix === 'app/'")
    assert tree_names(page) == ["r0/"]
    open_prefix(page, "app/r3/s4/")
    assert tree_names(page) == [f"k{k:02d}" for k in range(90)]
    expect(page.locator("#next-page")).to_be_disabled()
    expect(page.locator("#crumbs button")).to_have_text(["(all keys)", "app/", "r3/", "s4/"])
    page.locator("#crumbs button", has_text="r3/").click()
    page.wait_for_function("() => document.getElementById('list-status').dataset.prefix === 'app/r3/'")
    assert tree_names(page) == ["s0/", "s1/", "s2/"]
    expect(page.locator("#tree .count")).to_have_text(["90 keys", "90 keys", "20 keys"])
    page.screenshot(path=shots / "03-keys-folders.png")

    open_prefix(page, "flat/")
    assert tree_names(page)[0] == "k0000" and tree_names(page)[-1] == "k0199"
    for number in range(2, 6):
        page.click("#next-page")
        expect(page.locator("#page-number")).to_have_text(f"Page {number}")
    names = tree_names(page)
    assert (len(names), names[0], names[-1]) == (200, "k0800", "k0999")
    expect(page.locator("#next-page")).to_be_disabled()
    page.screenshot(path=shots / "04-keys-page-5.png")
    page.click("#prev-page")
    expect(page.locator("#page-number")).to_have_text("Page 4")
    assert tree_names(page)[0] == "k0600"

    open_prefix(page, "lab/")
    assert tree_names(page) == ["binary", "json", "text"]
    open_key(page, "lab/text", "text")
    expect(page.locator("#value")).to_have_text("hello, wörld\nsecond line")
    expect(page.locator("#meta-size")).to_have_text("25 bytes")
    expect(page.locator(".modes [aria-pressed=true]")).to_have_text("Text")
    page.screenshot(path=shots / "05-view-text.png")
    open_key(page, "lab/json", "json")
    expect(page.locator(".modes [aria-pressed=true]")).to_have_text("JSON")
    assert page.locator("#value").text_content() == json.dumps(json.loads(LAB["lab/json"]), indent=2)
    page.screenshot(path=shots / "06-view-json.png")
    open_key(page, "lab/binary", "binary")
    expect(page.locator(".modes [aria-pressed=true]")).to_have_text("Hex")
    assert page.locator("#value").text_content() == hexdump(LAB["lab/binary"])
    page.screenshot(path=shots / "07-view-binary.png")

    # Edit, If-Match the revision shown.
    open_key(page, "lab/text", "text")
    press(page, "Edit")
    page.fill("#editor", "edited in the browser")
    page.screenshot(path=shots / "08-edit.png")
    press(page, "Save")
    expect(page.locator("#announce")).to_have_text("Saved lab/text.")
    expect(page.locator("#value")).to_have_text("edited in the browser")
    assert other.get(key_path("lab/text")).content == b"edited in the browser"

    # Another client changes the key while it is being edited: both values shown, the user keeps theirs.
    open_key(page, "lab/json", "json")
    press(page, "Edit")
    page.fill("#editor", "mine")
    assert other.put(key_path("lab/json"), content=b'{"theirs":true}').status_code == 201
    press(page, "Save")
    expect(page.locator("#conflict-notice")).to_be_visible()
    expect(page.locator("#conflict-theirs")).to_have_text('{\n  "theirs": true\n}')
    expect(page.locator("#conflict-mine")).to_have_text("mine")
    page.screenshot(path=shots / "09-conflict.png")
    press(page, "Save mine over theirs")
    expect(page.locator("#value")).to_have_text("mine")
    assert other.get(key_path("lab/json")).content == b"mine"

    # A delete whose key changed meanwhile is refused and shown; then a plain delete.
    open_key(page, "lab/binary", "binary")
    assert other.put(key_path("lab/binary"), content=b"\x00changed").status_code == 201
    page.click("#detail button.danger")
    press(page, "Delete it")
    expect(page.locator("#conflict-notice")).to_contain_text("Not deleted: someone changed this key")
    expect(page.locator("#value")).to_have_text(hexdump(b"\x00changed"))
    page.screenshot(path=shots / "10-delete-conflict.png")
    page.locator("#conflict-notice").get_by_role("button", name="Keep it", exact=True).click()
    assert other.get(key_path("lab/binary")).content == b"\x00changed"
    open_key(page, "lab/text", "text")
    page.click("#detail button.danger")
    press(page, "Delete it")
    expect(page.locator("#detail")).to_have_text("Deleted lab/text.")
    expect(page.locator('#tree li[data-key="lab/text"]')).to_have_class("gone")
    assert other.get(key_path("lab/text")).status_code == 404

    # Create-only, then the same name again.
    page.click("#new-key")
    expect(page.locator("#new-name")).to_have_value("lab/")
    page.fill("#new-name", "lab/created")
    page.fill("#new-value", "made here")
    press(page, "Create")
    expect(page.locator("#announce")).to_have_text("Created lab/created.")
    page.click("#new-key")
    page.fill("#new-name", "lab/created")
    press(page, "Create")
    expect(page.locator("#edit-status")).to_have_text(
        "Not created: a key of that name exists already (open it to edit it)."
    )
    assert other.get(key_path("lab/created")).content == b"made here"

    # Live: another client's writes under the open prefix appear; the open key's change is announced.
    open_key(page, "lab/json", "json")
    written = other.put(key_path("lab/live"), content=b"fresh")
    revision = int(written.headers["x-tuco-revision"])
    expect(page.locator('#tree li[data-key="lab/live"]')).to_have_class("fresh")
    expect(page.locator("#live li").first).to_have_text(f"put lab/live at revision {revision}")
    assert other.put(key_path("lab/json"), content=b"[1]").status_code == 201
    expect(page.locator("#changed-notice")).to_contain_text(
        f"This key changed on the server at revision {revision + 1}."
    )
    assert other.delete(key_path("lab/created")).status_code == 200
    expect(page.locator('#tree li[data-key="lab/created"]')).to_have_class("gone")
    page.screenshot(path=shots / "11-live.png")
    press(page, "Show the new value")
    expect(page.locator("#value")).to_have_text("[\n  1\n]")

    page.click("#nav-status")
    expect(page.locator("#readiness")).to_have_text("Ready (phase: serving)")
    keys = "[...document.querySelectorAll('#metrics tr')].find(r => r.cells[0].textContent === 'tuco_keys')"
    assert page.evaluate(f"{keys}.cells[1].textContent") == "10003"
    page.screenshot(path=shots / "12-status.png", full_page=True)

    if server.token:
        page.click("#sign-out")
        expect(page.locator("#signin-page")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('tuco.token')") is None
    problems.check(page)
    assert {line.split("status of ")[1][:3] for line in problems.network} <= {"401", "412"}
    other.close()


HOSTILE = '<img src=x onerror="window.__pwned.push(1);alert(1)">'
SCRIPT = "<script>window.__pwned.push(2);alert(2)</script>"
FOLDER = '<svg onload="window.__pwned.push(3);alert(3)">'
FRAME = '"><iframe srcdoc=x>'


@pytest.mark.parametrize(
    "server", [("native", True), ("asgi", False)], indirect=True, ids=["native-token", "uvicorn-open"]
)
def test_hostile_keys_and_values_execute_nothing(
    server: Server, new_page: Any, shots: Path, problems: Problems
) -> None:
    """Keys and values carrying HTML and script are shown as text in the tree, views, editor, conflict and live list."""
    from playwright.sync_api import expect

    keys = {
        f"evil/{HOSTILE}": SCRIPT.encode(),
        f"evil/{FOLDER}/inside": b"x",
        f"evil/{FRAME}": json.dumps({HOSTILE: "</pre>" + SCRIPT}).encode(),
    }
    server.seed(keys)
    other = server.client()
    page = new_page()
    sign_in(page, server)
    open_prefix(page, "evil/")
    assert tree_names(page) == [FRAME, HOSTILE, f"{FOLDER}/"]
    open_key(page, f"evil/{HOSTILE}", HOSTILE)
    expect(page.locator("#value")).to_have_text(SCRIPT)
    press(page, "Edit")
    expect(page.locator("#editor")).to_have_value(SCRIPT)
    page.fill("#editor", HOSTILE)
    assert other.put(key_path(f"evil/{HOSTILE}"), content=HOSTILE.encode()).status_code == 201
    press(page, "Save")
    expect(page.locator("#conflict-theirs")).to_have_text(HOSTILE)
    expect(page.locator("#conflict-mine")).to_have_text(HOSTILE)
    page.screenshot(path=shots / "01-hostile-conflict.png")
    press(page, "Keep theirs")
    open_key(page, f"evil/{FRAME}", FRAME)
    assert page.locator("#value").text_content() == json.dumps({HOSTILE: "</pre>" + SCRIPT}, indent=2)
    press(page, "Text")
    press(page, "Hex")
    page.locator("#tree button", has_text=f"{FOLDER}/").click()
    page.wait_for_function("p => document.getElementById('list-status').dataset.prefix === p", arg=f"evil/{FOLDER}/")
    expect(page.locator("#crumbs button").last).to_have_text(f"{FOLDER}/")
    assert other.put(key_path(f"evil/{FOLDER}/{HOSTILE}"), content=SCRIPT.encode()).status_code == 201
    expect(page.locator("#live li").first).to_contain_text(f"put evil/{FOLDER}/{HOSTILE} at revision")
    open_key(page, f"evil/{FOLDER}/{HOSTILE}", HOSTILE)
    page.screenshot(path=shots / "02-hostile-live.png")
    page.click("#new-key")
    page.fill("#new-name", f"evil/{HOSTILE}")
    press(page, "Create")
    expect(page.locator("#edit-status")).to_contain_text("Not created")
    problems.check(page)
    assert page.evaluate("document.querySelectorAll('#main img, #main script, #main svg, #main iframe').length") == 0
    other.close()


@pytest.mark.parametrize("server", [("native", False)], indirect=True, ids=["native-open"])
def test_the_csp_blocks_inline_script_and_the_test_sees_it(server: Server, new_page: Any, problems: Problems) -> None:
    """An inline script added to the page does not run and is reported as a violation: the listener works."""
    page = new_page()
    sign_in(page, server)
    page.evaluate(
        """() => { const s = document.createElement("script");
        s.textContent = "window.__pwned.push('inline')"; document.body.append(s); }"""
    )
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("window.__pwned") == []
    assert page.evaluate("window.__csp")[0].startswith("script-src-elem inline")
    assert problems.errors and "Content Security Policy" in problems.errors[0]


def axe_violations(page: Any) -> list[str]:
    """The serious and critical axe-core violations of the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{violation['id']} ({violation['impact']}): {[node['target'] for node in violation['nodes']]}"
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("server", [("native", True)], indirect=True, ids=["native-token"])
def test_axe_finds_no_serious_violation_on_any_page(
    server: Server, new_page: Any, shots: Path, problems: Problems
) -> None:
    """axe-core (vendored, injected past the CSP in this test only) finds nothing serious on each page and view."""
    from playwright.sync_api import expect

    server.seed(LAB)
    page = new_page(bypass_csp=True)
    page.goto(server.url + "/ui/")
    page.wait_for_selector("#signin-page:not([hidden])")
    found = {"sign-in": axe_violations(page)}
    sign_in(page, server)
    open_prefix(page, "lab/")
    open_key(page, "lab/json", "json")
    found["keys"] = axe_violations(page)
    press(page, "Edit")
    found["edit"] = axe_violations(page)
    press(page, "Cancel")
    page.click("#new-key")
    found["new"] = axe_violations(page)
    page.click("#nav-status")
    expect(page.locator("#readiness")).to_be_visible()
    found["status"] = axe_violations(page)
    page.screenshot(path=shots / "01-status-axe.png")
    assert found == {"sign-in": [], "keys": [], "edit": [], "new": [], "status": []}


def focused(page: Any) -> str:
    """The focused element, as a person would name it: its label or text."""
    name: str = page.evaluate(
        """() => { const e = document.activeElement;
        return e.labels && e.labels.length ? e.labels[0].textContent.trim() : e.textContent.trim(); }"""
    )
    return " ".join(name.split())


@pytest.mark.parametrize("server", [("asgi", True)], indirect=True, ids=["uvicorn-token"])
def test_the_keyboard_alone_signs_in_browses_and_edits(
    server: Server, new_page: Any, shots: Path, problems: Problems
) -> None:
    """Tab order is the reading order; Enter opens a folder and a key, and Enter on Save saves."""
    from playwright.sync_api import expect

    assert server.token is not None
    server.seed(LAB)
    page = new_page()
    page.goto(server.url + "/ui/")
    page.wait_for_selector("#signin-page:not([hidden])")
    assert focused(page) == "Token"  # focus starts in the token field
    page.keyboard.type(server.token)
    page.keyboard.press("Enter")
    expect(page.locator("#keys-page")).to_be_visible()
    page.reload()  # the token stays for the tab; the focus starts at the top of the page again
    expect(page.locator("#keys-page")).to_be_visible()
    expect(page.locator("#tree li")).to_have_count(1)
    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(focused(page))
    assert order == [
        "Skip to the content",
        "Keys",
        "Status",
        "Sign out",
        "Prefix",
        "Show",
        "(all keys)",
        "folder lab/ 3 keys",
    ]
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('list-status').dataset.prefix === 'lab/'")
    for _ in range(40):
        if focused(page) == "key json":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('key-name')?.textContent === 'lab/json'")
    for _ in range(40):
        if focused(page) == "Edit":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert focused(page) == "Value"  # the editor has the focus
    page.keyboard.press("Control+A")
    page.keyboard.type("typed")
    page.keyboard.press("Tab")
    assert focused(page) == "Save"
    page.keyboard.press("Enter")
    expect(page.locator("#announce")).to_have_text("Saved lab/json.")
    page.screenshot(path=shots / "01-keyboard-saved.png")
    with server.client() as other:
        assert other.get(key_path("lab/json")).content == b"typed"
    problems.check(page)


@pytest.mark.parametrize("server", [("native", True)], indirect=True, ids=["native-token"])
def test_a_token_limited_to_a_prefix_browses_from_that_prefix(
    server: Server, new_page: Any, shots: Path, problems: Problems
) -> None:
    """A token with write on lab/ only: told it may not list every key, it browses and edits under lab/."""
    from playwright.sync_api import expect

    server.seed({**LAB, "secret/plans": b"hidden"})
    with server.client() as admin:
        created = admin.post("/v1/tokens", json={"grants": [{"prefix": "lab/", "permission": "write"}]})
        assert created.status_code == 201
        token = created.json()["token"]
    page = new_page()
    page.goto(server.url + "/ui/")
    page.fill("#token", token)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#list-status")).to_have_text(
        "This token may not list the keys under this prefix. Type a prefix it may read."
    )
    expect(page.locator("#live-state")).to_contain_text("No live changes: forbidden")
    page.screenshot(path=shots / "01-limited-root.png")
    open_prefix(page, "lab/")
    assert tree_names(page) == ["binary", "json", "text"]
    expect(page.locator("#live-state")).to_have_text("Watching “lab/” live.")
    open_key(page, "lab/text", "text")
    press(page, "Edit")
    page.fill("#editor", "by the limited token")
    press(page, "Save")
    expect(page.locator("#announce")).to_have_text("Saved lab/text.")
    page.click("#nav-status")
    expect(page.locator("#status-body")).to_contain_text("This token may not see the details")
    expect(page.locator("#status-body")).to_contain_text("Metrics are off, or this token may not read them (403).")
    page.screenshot(path=shots / "02-limited-status.png")
    assert page.locator("#status-body").inner_text().count("hidden") == 0
    problems.check(page)
    assert {line.split("status of ")[1][:3] for line in problems.network} == {"401", "403"}  # before and after
