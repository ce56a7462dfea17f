"""The report in a real browser: headless Chromium driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe`` (commands on fd 3, events on fd 4,
NUL-separated JSON), so the test needs no WebSocket library and no network port. The page is
rendered from tiny fake pipeline outputs; the test fails on any console error, uncaught
exception, blocked or external request, broken image, horizontal overflow or JavaScript
dialog (an escaping failure would run the hostile customer id's script). A full-page
screenshot is kept in ``test-artifacts/report.png`` for CI.

Chromium is a required CI dependency (``.ci/run`` installs the Debian package); outside CI the
test is skipped when it is absent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.report_fakes import EVIL_ID, write_fake_outputs

from churn.config import Params
from churn.stages.report import run_report

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
pytestmark = pytest.mark.browser


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (Debian package 'chromium'; .ci/run installs it)")
    pytest.skip("chromium not installed (apt-get install chromium); required only in CI")


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path, log_path: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        # The protocol wants exactly fds 3 and 4; bash maps our pipe ends onto them (dash
        # rejects descriptors above 9, which pytest's own open files easily push us past).
        script = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", script, "bash", *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # our own process group, so cleanup reaches the children
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            wait = max(0.0, deadline - time.time())
            ready, _, _ = select.select([self._from_browser], [], [], wait)
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        """Return the first event called ``method``, waiting for it if needed."""
        deadline = time.time() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        """Close the browser, killing its process group if it does not exit."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError, EOFError):
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        self._log.close()


@pytest.fixture
def browser(tmp_path):
    devtools = DevTools(_chromium(), tmp_path / "profile", tmp_path / "chromium.log")
    try:
        yield devtools
    finally:
        devtools.close()


def _evaluate(browser: DevTools, session: str, expression: str) -> Any:
    result = browser.call(
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "awaitPromise": True},
        session,
    )
    assert "exceptionDetails" not in result, result
    return result["result"].get("value")


def _problems(events: list[dict[str, Any]], page_url: str) -> list[str]:
    problems = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in (
            "error",
            "assert",
            "warning",
        ):
            problems.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            problems.append(f"log: {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            problems.append(f"dialog: {params.get('message')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not (url == page_url or url.startswith("data:")):
                problems.append(f"request: {url}")
    return problems


def test_report_renders_cleanly_in_chromium(tmp_path, browser):
    paths = write_fake_outputs(tmp_path / "project")
    run_report(Params(), **paths)
    url = paths["out_path"].resolve().as_uri()

    target = browser.call("Target.createTarget", {"url": "about:blank"})
    session = browser.call(
        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
    )["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session,
    )
    browser.call("Page.navigate", {"url": url}, session)
    browser.wait_for("Page.loadEventFired")

    images = _evaluate(
        browser,
        session,
        "Array.from(document.images).map(i => "
        "({data: i.src.startsWith('data:image/png;base64,'), "
        "ok: i.complete && i.naturalWidth > 0}))",
    )
    assert len(images) >= 8, images
    assert all(i["data"] and i["ok"] for i in images), images
    assert _evaluate(browser, session, "document.title") == "Churn risk report"
    # The hostile id shows as text, not as markup.
    assert _evaluate(browser, session, "document.body.innerText").count(EVIL_ID) >= 1
    overflow = "document.documentElement.scrollWidth - window.innerWidth"
    assert _evaluate(browser, session, overflow) <= 0

    # Sorting works: click "Churn probability" twice (ascending, then descending).
    probabilities = (
        "Array.from(document.querySelectorAll('#customers tbody tr')).map("
        "r => parseFloat(r.cells[4].dataset.sort))"
    )
    header = "document.querySelectorAll('#customers thead th')[4]"
    _evaluate(browser, session, f"{header}.click()")
    ascending = _evaluate(browser, session, probabilities)
    assert ascending == sorted(ascending)
    _evaluate(browser, session, f"{header}.click()")
    assert _evaluate(browser, session, probabilities) == sorted(ascending, reverse=True)

    height = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
    shot = browser.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
        },
        session,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot["data"]))

    # A phone-width viewport must not overflow either: wide tables scroll inside their box.
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 800, "deviceScaleFactor": 1, "mobile": True},
        session,
    )
    assert _evaluate(browser, session, overflow) <= 0

    assert _problems(browser.events, url) == []
