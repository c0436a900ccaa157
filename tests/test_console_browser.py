"""The web console in real headless Chromium, against the real server and a virtual device.

Everything runs as separate processes, as a user would run them: ``python -m
twisted_spark serve`` on ephemeral loopback ports, ``python -m twisted_spark
simulate`` for the device, Debian's Chromium driven by Playwright.  The test
sets up users and devices through the public API only.  Screenshots go to
the test's tmp directory (the path is printed) to be looked at.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and the
``playwright`` package (never ``playwright install``: the system browser is
used); without them the test skips, or fails under TWISTED_SPARK_STRICT_TESTS=1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from browser import launch, playwright_or_unavailable
from conftest import KEYS_DIR, PROJECT_ROOT

READY = re.compile(r"API on \S+ \(127\.0\.0\.1:(\d+)\); devices on \S+ \(127\.0\.0\.1:(\d+)\)")
PASSWORD = "console test password"
DEVICE = "c0ffee000000000000000000"  # what `simulate --device-id-prefix c0ffee` names device 0
UNCLAIMED = "c0ffee0000000000000000ff"
#: Playwright's waits (ms); generous because other test runs share the 2 cores.
WAIT = 20_000


@pytest.fixture
def playwright_api():
    """``(sync_playwright, expect)``; skips (or fails, when strict) before anything starts."""
    return playwright_or_unavailable()


def wait_for(predicate, timeout, what):
    """Poll ``predicate`` (bounded) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


class Process:
    """A child process whose output goes to a file in the test's tmp directory."""

    def __init__(self, argv, log: Path, cwd: Path):
        self.log = log
        self.handle = log.open("wb")
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT,
                                        cwd=cwd, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, pattern, what, timeout=60):
        def seen():
            if self.process.poll() is not None:
                raise AssertionError(f"{what}: the process exited\n{self.output()}")
            return re.search(pattern, self.output())

        return wait_for(seen, timeout, what)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.handle.close()


class Client:
    """Plain HTTP calls to the API (urllib), for setting up and checking."""

    def __init__(self, base):
        self.base = base

    def call(self, method, path, form=None, token=None, basic=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if basic:
            raw = base64.b64encode(":".join(basic).encode()).decode()
            request.add_header("Authorization", f"Basic {raw}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def ok(self, method, path, **kwargs):
        status, body = self.call(method, path, **kwargs)
        assert status == 200, (method, path, status, body)
        return body


@pytest.fixture
def processes():
    started = []
    yield started
    for process in reversed(started):
        process.stop()


@pytest.fixture
def server(tmp_path, data_dir, processes):
    process = Process(
        [sys.executable, "-m", "twisted_spark", "serve", "--data-dir", str(data_dir),
         "--api", "tcp:0:interface=127.0.0.1", "--device", "tcp:0:interface=127.0.0.1",
         "--udp-device", "127.0.0.1:0"],
        tmp_path / "server.log", tmp_path)
    processes.append(process)
    match = process.wait_for_output(READY, "the server's ready line")
    return {"api": int(match.group(1)), "device": int(match.group(2)), "process": process}


def start_device(tmp_path, data_dir, device_port, processes):
    keys = tmp_path / "sim-keys"
    keys.mkdir()
    shutil.copy(KEYS_DIR / "device-1.pem", keys / "shared.pem")
    process = Process(
        [sys.executable, "-m", "twisted_spark", "simulate", "--server",
         f"127.0.0.1:{device_port}", "--server-key", str(data_dir / "server_key.pub.der"),
         "--key-dir", str(keys), "--count", "1", "--platform", "photon",
         "--device-id-prefix", "c0ffee"],
        tmp_path / "simulate.log", tmp_path)
    processes.append(process)
    process.wait_for_output(r"1 of 1 devices online", "the virtual device online")
    return process


def test_console_end_to_end(playwright_api, tmp_path, data_dir, server, processes):
    sync_playwright, expect = playwright_api
    base = f"http://127.0.0.1:{server['api']}/"
    api = Client(base.rstrip("/"))
    # An administrator (the first user), a device of theirs and one nobody owns.
    api.ok("POST", "/v1/users", form={"username": "admin", "password": PASSWORD})
    token = api.ok("POST", "/oauth/token", basic=("spark", "spark"), form={
        "grant_type": "password", "username": "admin", "password": PASSWORD})["access_token"]
    for device_id, key in ((DEVICE, "device-1"), (UNCLAIMED, "device-2")):
        api.ok("POST", f"/v1/provisioning/{device_id}", token=token,
               form={"publicKey": (KEYS_DIR / f"{key}.pub.pem").read_text()})
    api.ok("DELETE", f"/v1/devices/{UNCLAIMED}", token=token)

    shots = tmp_path / "screenshots"
    print(f"\nscreenshots: {shots}")
    problems = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT)
            expect.set_options(timeout=WAIT)
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))

            # Log in with the keyboard; a wrong password first shows the API's sentence.
            page.goto(base)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill("wrong password")
            page.get_by_label("Password").press("Enter")
            expect(page.get_by_role("alert")).to_have_text("User credentials are invalid")
            problems.clear()  # Chromium logs that 400 itself; nothing else may be logged
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_label("Password").press("Enter")

            # The device is listed offline, then comes online live (spark/status).
            row = page.locator(f"tr[data-device='{DEVICE}']").first
            expect(row.locator(".status")).to_have_text("offline")
            expect(page.get_by_role("button", name=f"Claim {UNCLAIMED}")).to_be_visible()
            start_device(tmp_path, data_dir, server["device"], processes)
            expect(row.locator(".status")).to_have_text("online")
            log = page.locator("section.log")
            expect(log.locator(".event", has_text="spark/status")).to_have_count(1)

            # An event published through the API appears in the live log; the filter hides it.
            api.ok("POST", "/v1/devices/events", token=token,
                   form={"name": "console/hello", "data": "from the API", "private": "true"})
            event = log.locator(".event", has_text="console/hello")
            expect(event).to_contain_text("from the API")
            expect(event.locator(".event-source")).to_have_text("API")
            page.get_by_label("Filter by name prefix").fill("spark/")
            expect(event).to_have_count(0)
            page.get_by_label("Filter by name prefix").fill("")
            expect(event).to_have_count(1)
            page.screenshot(path=shots / "home.png", full_page=True)

            # Paused, the log stays as it is and counts what arrives; resumed, it shows it.
            page.get_by_role("button", name="Pause").click()
            api.ok("POST", "/v1/devices/events", token=token, form={"name": "console/later"})
            expect(log.locator(".missed")).to_have_text("1 new while paused")
            expect(log.locator(".event", has_text="console/later")).to_have_count(0)
            page.get_by_role("button", name="Resume").click()
            expect(log.locator(".event", has_text="console/later")).to_have_count(1)

            # The device view: read a variable, call a function, rename.
            row.get_by_role("link").click()
            heading = page.get_by_role("heading", level=1)
            expect(heading).to_have_text(DEVICE)
            expect(page.locator(".device-head .status")).to_have_text("online")
            page.get_by_role("button", name="Read temperature").click()
            expect(page.get_by_label("Value of temperature")).to_have_text("-98765")
            page.get_by_label("Argument for brew").fill("coffee")
            page.get_by_label("Argument for brew").press("Enter")
            expect(page.get_by_label("Result of brew")).to_have_text("returned 6")
            page.get_by_label("New name").fill("kettle")
            page.get_by_label("New name").press("Enter")
            expect(heading).to_have_text("kettle")
            assert api.ok("GET", f"/v1/devices/{DEVICE}", token=token)["name"] == "kettle"

            # Flash a small binary: upload progress, the answer, the device's flash status.
            firmware = os.urandom(3000)
            page.get_by_label("Firmware binary (.bin)").set_input_files(files=[{
                "name": "app.bin", "mimeType": "application/octet-stream", "buffer": firmware}])
            page.get_by_role("button", name="Flash").click()
            flash = page.locator("form.flash")
            expect(flash.locator("output")).to_have_text("Update finished")
            expect(flash.locator("progress")).to_have_attribute("value", "100")
            expect(page.locator(".flash-outcome")).to_have_text("The device reported: success")
            device_log = page.locator("section.log")
            expect(device_log.locator(".event", has_text="spark/flash/status")).to_have_count(2)
            page.screenshot(path=shots / "device.png", full_page=True)

            # Back on the landing view the device has its new name; then phone width:
            # everything fits without sideways scrolling.
            page.get_by_role("link", name="Devices", exact=True).click()
            expect(row.get_by_role("link")).to_have_text("kettle")
            page.set_viewport_size({"width": 1280, "height": 680})
            page.screenshot(path=shots / "console.png")  # the README's picture
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=shots / "home-390.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            row.get_by_role("link").click()
            expect(page.get_by_label("Value of temperature")).to_be_attached()
            expect(page.get_by_label("New name")).to_have_value("kettle")
            # The device's log starts with what the landing view's stream already saw.
            expect(page.locator("section.log .event", has_text="spark/flash/status")
                   ).to_have_count(2)
            page.screenshot(path=shots / "device-390.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.set_viewport_size({"width": 1280, "height": 900})

            # The device goes away: shown live, and calls answer with the API's sentence.
            processes.pop().stop()
            expect(page.locator(".device-head .status")).to_have_text("offline")
            page.get_by_role("button", name="Read temperature").click()
            expect(page.get_by_label("Value of temperature")).to_have_text(
                "The device is not connected to the cloud.")
            problems.clear()  # Chromium logged that 404 itself

            # Log out: the token is deleted on the server, the login form is back.
            session = json.loads(page.evaluate(
                "sessionStorage.getItem('twisted-spark.session')"))
            assert api.ok("GET", "/v1/user", token=session["token"]) == {"username": "admin"}
            page.get_by_role("button", name="Log out").click()
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            expect(page.get_by_role("navigation")).to_be_hidden()
            expect(page.get_by_role("button", name="Log out")).to_be_hidden()
            status, body = api.call("GET", "/v1/user", token=session["token"])
            assert status == 401 and body["error"] == "invalid_token"
            assert page.evaluate("sessionStorage.getItem('twisted-spark.session')") is None

            # Again: users (administrators), access tokens with the password, and a
            # token revoked elsewhere sending the console back to the login form.
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("link", name="Users").click()
            users = page.locator("table.users")
            expect(users.locator("tbody tr")).to_have_count(1)
            expect(users).to_contain_text("admin")
            page.get_by_role("link", name="Access tokens").click()
            page.get_by_label("Your password").fill(PASSWORD)
            page.get_by_label("Your password").press("Enter")
            tokens = page.locator("table.tokens tbody tr")
            expect(tokens).to_have_count(2)  # the setup's and this console's
            expect(tokens.filter(has_text="this console")).to_have_count(1)
            page.get_by_label("Lifetime").select_option(label="1 hour")
            page.get_by_role("button", name="Create token").click()
            created = page.locator("code.token")
            expect(created).to_have_text(re.compile(r"^[0-9a-f]{40}$"))
            expect(tokens).to_have_count(3)
            new_token = created.inner_text()
            page.screenshot(path=shots / "tokens.png", full_page=True)
            assert api.ok("GET", "/v1/user", token=new_token) == {"username": "admin"}
            page.get_by_role("button", name=f"Delete token {new_token[:8]}").click()
            expect(tokens).to_have_count(2)
            assert api.call("GET", "/v1/user", token=new_token)[0] == 401
            session = json.loads(page.evaluate(
                "sessionStorage.getItem('twisted-spark.session')"))
            page.get_by_role("link", name="Devices", exact=True).click()
            assert problems == [], problems
            api.ok("DELETE", f"/v1/access_tokens/{session['token']}")
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            expect(page.get_by_role("alert")).to_contain_text("Your session has ended")
            expect(page.get_by_role("navigation")).to_be_hidden()
            page.screenshot(path=shots / "revoked.png", full_page=True)

            # A plain user sees only their own devices, no users and no unclaimed devices.
            api.ok("POST", "/v1/users", token=token,
                   form={"username": "alice", "password": PASSWORD})
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_label("Password").press("Enter")
            expect(page.get_by_role("heading", name="Your devices", exact=True)).to_be_visible()
            expect(page.get_by_text("No devices.")).to_be_visible()
            expect(page.get_by_role("link", name="Users")).to_be_hidden()
            expect(page.get_by_role("heading", name="Unclaimed devices")).to_have_count(0)
        except BaseException:
            page.screenshot(path=shots / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
    # After that only the revoked token's 401 and the plain user's 403 on /v1/users
    # (how the console learns it is not an administrator) may have been logged.
    expected = ("401 (Unauthorized)", "403 (Forbidden)")
    assert all(problem.endswith(expected) for problem in problems), problems
    server_log = server["process"].output()
    assert session["token"] not in server_log  # no token in any logged URL
    assert "Traceback" not in server_log, server_log


def test_console_webhooks(playwright_api, tmp_path, server):
    """The Webhooks view lists, creates (showing the API's sentence on a refusal)
    and deletes the user's hooks; what it did is what the API then reports."""
    sync_playwright, expect = playwright_api
    base = f"http://127.0.0.1:{server['api']}/"
    api = Client(base.rstrip("/"))
    api.ok("POST", "/v1/users", form={"username": "admin", "password": PASSWORD})
    token = api.ok("POST", "/oauth/token", basic=("spark", "spark"), form={
        "grant_type": "password", "username": "admin", "password": PASSWORD})["access_token"]
    shots = tmp_path / "screenshots"
    print(f"\nscreenshots: {shots}")
    problems = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT)
            expect.set_options(timeout=WAIT)
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(base)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_label("Password").press("Enter")
            page.get_by_role("link", name="Webhooks").click()
            expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
            expect(page.get_by_text("No webhooks.")).to_be_visible()

            # A refused target: the API's sentence, nothing stored.
            page.get_by_label("Event name prefix").fill("temp")
            page.get_by_label(re.compile("^URL")).fill("http://169.254.169.254/latest")
            page.get_by_role("button", name="Create webhook").click()
            expect(page.locator("form output")).to_contain_text("does not send webhooks to")
            problems.clear()  # Chromium logs that 400 itself

            page.get_by_label(re.compile("^URL")).fill("http://192.0.2.10/in/{{PARTICLE_EVENT_NAME}}")
            page.get_by_label("Method").select_option("PUT")
            page.get_by_label("JSON body template (optional)").fill(
                '{"value": "{{{PARTICLE_EVENT_VALUE}}}"}')
            page.get_by_role("button", name="Create webhook").click()
            rows = page.locator("table.webhooks tbody tr")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("PUT http://192.0.2.10/in/{{PARTICLE_EVENT_NAME}}")
            page.screenshot(path=shots / "webhooks.png", full_page=True)
            [hook] = api.ok("GET", "/v1/webhooks", token=token)
            assert (hook["event"], hook["requestType"]) == ("temp", "PUT")
            assert hook["json"] == {"value": "{{{PARTICLE_EVENT_VALUE}}}"}

            page.get_by_role("button", name=f"Delete webhook {hook['id']}").click()
            expect(page.get_by_text("No webhooks.")).to_be_visible()
            assert api.ok("GET", "/v1/webhooks", token=token) == []
            assert problems == [], problems
        except BaseException:
            page.screenshot(path=shots / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
