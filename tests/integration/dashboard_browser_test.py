#!/usr/bin/env python3
"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) opens GET /dashboard
of a running `kvault serve` on the test model, after a few chat requests and a saved session.

Checked, once without --api-key and once with two keys: the page's script runs without an
uncaught exception, a console error or warning, or a failed request (a CSP violation shows up
as a console error too); every panel (tiers, prefixes, requests, conversations, tree, sessions)
leaves "loading..." and shows what the server holds: the conversation, the saved session, the
cached prefixes and the token counts that the JSON routes report. With keys, the page first
asks for one (banner, 401 in the panels), the key is typed into its form, the panels fill with
that key's data only, and a reload keeps the key (sessionStorage) and logs nothing.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages ended by NUL on fds 3 and 4), so only python3's standard library is needed. The
screenshots stay in $KVAULT_SCREENSHOT_DIR (ctest: build/tests/integration/dashboard_browser/).
Without chromium the test says so and exits 77 (ctest: skipped); scripts/bootstrap.sh
installs it.
"""
import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

KVAULT = os.environ.get("KVAULT_BIN", "build/kvault")
MODEL = os.environ.get("KVAULT_TEST_MODEL", "build/testdata/tiny.gguf")
SHOTS = os.environ.get("KVAULT_SCREENSHOT_DIR", "build/dashboard_browser")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PANELS = ["tiers", "prefixes", "requests", "conversations", "tree", "sessions"]
failures = []


def check(condition, what, detail=""):
    """Records `what`; `detail` (what was seen) is printed only when the check fails."""
    if not condition:
        failures.append(what)
    line = ("ok:   " if condition else "FAIL: ") + what
    if not condition and detail != "":
        line += "\n      seen: " + str(detail)[:2000]
    print(line, flush=True)


class Server:
    def __init__(self, root, args):
        os.makedirs(root, exist_ok=True)
        self.log_path = root + "/kvault.log"
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [KVAULT, "serve", "--port", "0", "--model", MODEL, "--block-size", "32",
             "--data-dir", root + "/data", "--cache-dir", root + "/blocks"] + args,
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline and self.port is None and self.proc.poll() is None:
            time.sleep(0.1)
            match = re.search(r"serving .* on http://[0-9.]+:([0-9]+)", self.text())
            self.port = int(match.group(1)) if match else None
        if self.port is None:
            self.stop()
            raise SystemExit("server did not start:\n" + self.text()[-3000:])
        self.url = "http://127.0.0.1:%d" % self.port

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def request(self, method, path, key="", body=None):
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, None

    def chat(self, conversation, content, key=""):
        body = {"conversation_id": conversation, "max_tokens": 6, "temperature": 0,
                "messages": [{"role": "user", "content": content}]}
        return self.request("POST", "/v1/chat/completions", key, body)[0]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Browser:
    """One headless Chromium and one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, root):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def use_fds_3_and_4():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.log = open(root + "/chromium.log", "w")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-pipe",
             "--user-data-dir=" + root + "/profile", "--window-size=1400,1000", "about:blank"],
            pass_fds=(3, 4), preexec_fn=use_fds_3_and_4, stdout=self.log, stderr=self.log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.session = None
        self.events = []
        targets = self.command("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.command("Target.attachToTarget",
                                    {"targetId": page["targetId"], "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.command(domain + ".enable")

    def command(self, method, params=None, timeout=30):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") != self.next_id:
                    self.events.append(reply)
                elif "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                else:
                    return reply["result"]
            if time.time() > deadline:
                raise RuntimeError(method + ": no answer from chromium")
            if select.select([self.from_chrome], [], [], 0.1)[0]:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError(method + ": chromium exited")
                self.buffer += chunk

    def evaluate(self, expression):
        result = self.command("Runtime.evaluate",
                              {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError("evaluate: %s" % result["exceptionDetails"])
        return result["result"].get("value")

    def open(self, url):
        self.command("Page.navigate", {"url": url})

    def problems(self):
        """What the page logged since the last call: exceptions, console errors and warnings,
        failed requests; as (kind, text), failed requests as ("http", "STATUS URL")."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                out.append(("exception", text))
            elif method == "Runtime.consoleAPICalled" and params["type"] in (
                    "error", "warning", "assert"):
                out.append(("console", " ".join(str(a.get("value", a.get("description")))
                                                for a in params["args"])))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                entry = params["entry"]
                if entry.get("source") != "network":  # counted below, with the status
                    out.append(("log", entry["text"]))
            elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
                out.append(("http", "%d %s" % (params["response"]["status"],
                                               params["response"]["url"])))
            elif method == "Network.loadingFailed":
                out.append(("network", params.get("errorText", "")))
        self.events = []
        return out

    def screenshot(self, path):
        size = self.command("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.command("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        data = base64.b64decode(shot["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    def close(self):
        try:
            self.session = None
            self.command("Browser.close", timeout=5)
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# What the page shows, read from its DOM: each panel's text, table rows and label/value pairs.
READ_PAGE = r"""JSON.stringify((() => {
  const text = (id) => document.getElementById(id).innerText;
  const panel = (id) => {
    const e = document.getElementById(id);
    const pairs = {};
    for (const row of e.querySelectorAll('dl.grid div')) {
      pairs[row.querySelector('dt').innerText] = row.querySelector('dd').innerText;
    }
    return {text: e.innerText, error: !!e.querySelector('.error'), pairs,
            rows: [...e.querySelectorAll('tbody tr')].map(
                (tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText)),
            legend: [...e.querySelectorAll('.legend b')].map((b) => b.innerText)};
  };
  const page = {status: document.getElementById('status').className,
                banner: document.getElementById('banner').classList.contains('show')
                    ? text('banner') : '',
                old: window.kvaultOldPage === true, notes: {}, panels: {}};
  for (const id of %s) {
    page.panels[id] = panel(id);
    const note = document.getElementById(id + '-note');
    if (note) page.notes[id] = note.innerText;
  }
  return page;
})())""" % json.dumps(PANELS)


def read_page(browser):
    return json.loads(browser.evaluate(READ_PAGE))


def wait_for(browser, done, seconds=15):
    """Reads the page until done(page) holds or `seconds` pass; returns the last reading."""
    deadline = time.time() + seconds
    while True:
        try:
            page = read_page(browser)
        except RuntimeError:  # between two documents, or before the page's elements exist
            page = None
        if time.time() > deadline:
            if page is None:
                raise RuntimeError("the dashboard never loaded")
            return page
        if page is not None and done(page):
            return page
        time.sleep(0.2)


def filled(page):
    return page["status"] == "up" and all(
        "loading..." not in page["panels"][id]["text"] and not page["panels"][id]["error"]
        for id in PANELS)


def number(text):
    return float(text.replace(",", "")) if re.fullmatch(r"[0-9][0-9,]*(\.[0-9]+)?", text) else None


def check_filled(label, page, server, key, data):
    """Every panel shows what the JSON routes give for `key`: `data` is what make_data made."""
    check(page["status"] == "up", label + ": the status says up", page["status"])
    check(page["banner"] == "", label + ": no banner", page["banner"])
    for id in PANELS:
        p = page["panels"][id]
        check("loading..." not in p["text"] and not p["error"],
              "%s: panel %s filled, without an error" % (label, id), p["text"][:300])
    _, health = server.request("GET", "/health", key)
    _, tree = server.request("GET", "/v1/cache/tree?limit=20", key)
    _, stats = server.request("GET", "/v1/cache/stats", key)

    tiers = page["panels"]["tiers"]
    check("RAM" in tiers["text"] and "DISK" in tiers["text"], label + ": tiers shows RAM and DISK",
          tiers["text"])
    check(number(tiers["pairs"].get("radix tree nodes", "")) == stats["tree_nodes"],
          "%s: tiers shows the radix tree's %d nodes" % (label, stats["tree_nodes"]),
          tiers["pairs"])
    check(page["notes"]["tiers"].startswith(str(stats["encoding"]) + ","),
          "%s: the tiers note names the encoding %s" % (label, stats["encoding"]),
          page["notes"]["tiers"])

    prefixes = page["panels"]["prefixes"]
    sources = sum(number(b) or 0 for b in prefixes["legend"])
    check(len(prefixes["legend"]) == 5 and sources >= len(data["turns"]),
          label + ": prefixes counts where each request's prefix came from", prefixes["legend"])
    check((number(prefixes["pairs"].get("prompt tokens", "")) or 0) > 0,
          label + ": prefixes shows prompt tokens from /metrics", prefixes["pairs"])

    requests = page["panels"]["requests"]
    generated = health["scheduler"]["generated_tokens"]
    check(generated > 0 and number(requests["pairs"].get("generated tokens", "")) == generated,
          "%s: requests shows the %d generated tokens" % (label, generated), requests["pairs"])
    ttft = requests["pairs"].get("mean TTFT", "")
    check(re.fullmatch(r"[0-9.]+ (ms|s)", ttft) is not None,
          label + ": requests shows the mean TTFT from /metrics", requests["pairs"])

    shown = [row[0] for row in page["panels"]["conversations"]["rows"]]
    check(shown == [data["conversation"]],
          "%s: conversations lists %s alone" % (label, data["conversation"]), shown)
    rows = page["panels"]["tree"]["rows"]
    check(len(tree["top"]) > 0 and len(rows) == len(tree["top"]),
          "%s: the tree lists the %d cached prefixes" % (label, len(tree["top"])), rows)
    previews = " ".join(row[-1] for row in rows)
    check(data["turns"][0] in previews, "%s: the tree's previews show %r" % (
        label, data["turns"][0]), previews)
    for other in data["not_shown"]:
        check(other not in previews, "%s: the tree's previews hide %r" % (label, other), previews)
    sessions = [row[0] for row in page["panels"]["sessions"]["rows"]]
    check(sessions == [data["session"]], "%s: sessions lists %s alone" % (label, data["session"]),
          sessions)


def make_data(server, key, conversation, session, turns, not_shown=()):
    """One conversation of `turns` and a session saved from it; what the page should show."""
    for turn in turns:
        check(server.chat(conversation, turn, key) == 200, "chat %s: %s" % (conversation, turn))
    status, _ = server.request("POST", "/v1/sessions/%s/save" % session, key,
                               {"conversation_id": conversation})
    check(status == 200, "session %s saved" % session, status)
    return {"conversation": conversation, "session": session, "turns": list(turns),
            "not_shown": list(not_shown)}


def save_screenshot(browser, name):
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name)
    data = browser.screenshot(path)
    check(data.startswith(b"\x89PNG") and len(data) > 20000, "screenshot " + path, len(data))


def check_the_detector(browser):
    """The page's problems are seen: a thrown error, a console.error, a failed fetch."""
    browser.evaluate("setTimeout(() => { throw new Error('probe-exception'); });"
                     "console.error('probe-console'); fetch('/no-such-route-probe');")
    time.sleep(0.5)
    browser.evaluate("1")  # collects the events that came meanwhile
    logged = " ".join(" ".join(p) for p in browser.problems())
    for probe in ("probe-exception", "probe-console", "404 http://127.0.0.1"):
        check(probe in logged, "the console watch sees " + probe, logged)


def without_key(root):
    server = Server(root + "/open", [])
    browser = Browser(root + "/open")
    try:
        data = make_data(server, "", "browser-chat", "browser-session",
                         ["Name three rivers.", "And three mountains?"])
        browser.open(server.url + "/dashboard")
        page = wait_for(browser, filled)
        check_filled("no key", page, server, "", data)
        logged = browser.problems()
        check(logged == [], "no key: the page logged nothing", logged)
        save_screenshot(browser, "dashboard.png")
        check_the_detector(browser)
    finally:
        browser.close()
        server.stop()


def with_keys(root):
    server = Server(root + "/keys", ["--api-key", "dash-a,dash-b"])
    browser = Browser(root + "/keys")
    try:
        data = make_data(server, "dash-a", "chat-of-a", "session-of-a",
                         ["Name three rivers.", "And three mountains?"], ["lakes"])
        make_data(server, "dash-b", "chat-of-b", "session-of-b",
                  ["Name three lakes.", "And three deserts?"])
        browser.open(server.url + "/dashboard")
        page = wait_for(browser, lambda p: "needs an API key" in p["banner"])
        check("needs an API key" in page["banner"], "keys: the banner asks for a key", page)
        for id in ("tiers", "prefixes", "conversations", "tree", "sessions"):
            check("needs an API key" in page["panels"][id]["text"],
                  "keys: %s says it needs a key" % id, page["panels"][id]["text"])
        logged = browser.problems()
        refused = [p for p in logged if p[0] == "http" and p[1].startswith("401 ")]
        check(refused and len(refused) == len(logged), "keys: before the key, only 401s logged",
              logged)

        browser.evaluate("document.getElementById('api-key').focus()")
        browser.command("Input.insertText", {"text": "dash-a"})
        browser.evaluate("document.querySelector('#key-form button[type=submit]').click()")
        page = wait_for(browser, filled)
        check_filled("key a", page, server, "dash-a", data)
        check(page["notes"]["conversations"].startswith("1 held for this API key"),
              "key a: conversations say they are this key's", page["notes"])
        logged = browser.problems()
        check(logged == [], "key a: nothing logged once the key is in", logged)

        browser.evaluate("window.kvaultOldPage = true")
        browser.command("Page.reload")
        page = wait_for(browser, lambda p: not p["old"] and filled(p))
        check(not page["old"], "key a: the page reloaded")
        check_filled("key a, reloaded", page, server, "dash-a", data)
        logged = browser.problems()
        check(logged == [], "key a, reloaded: the page logged nothing", logged)
        save_screenshot(browser, "dashboard_api_key.png")
    finally:
        browser.close()
        server.stop()


def main():
    if CHROMIUM is None:
        print("SKIPPED: no chromium here (Debian package chromium; scripts/bootstrap.sh)")
        sys.exit(77)
    root = tempfile.mkdtemp(prefix="kvault-dashboard-browser-")
    try:
        without_key(root)
        with_keys(root)
    finally:
        if failures:
            print("logs kept in", root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if failures:
        print("%d checks failed" % len(failures))
        sys.exit(1)
    print("dashboard in chromium: all checks passed; screenshots in", SHOTS)


if __name__ == "__main__":
    main()
