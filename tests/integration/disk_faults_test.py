#!/usr/bin/env python3
"""Disk faults, for real: `kvault serve` on a small tmpfs that the test fills up, and then on
the same file system remounted read-only (README: "Disk full and read-only folders").

Checked: a change that must be stored first (a new turn, a new conversation, a session) is
refused with an OpenAI-shaped 507 and changes nothing; stateless requests are still served;
the failure is logged once, counted in /metrics and shown as "degraded" by /health; writes
resume once there is room; every acknowledged turn survives kill -9; a server started on the
read-only folder serves what it holds and refuses changes with 507.

The file systems live in a private mount namespace (unshare -rm), so the test needs no root
and leaves no mount behind; where user namespaces are disabled it says so and exits 77
(ctest: skipped).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

KVAULT = os.environ.get("KVAULT_BIN", "build/kvault")
MODEL = os.environ.get("KVAULT_TEST_MODEL", "build/testdata/tiny.gguf")
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what, flush=True)


def enter_private_mount_namespace():
    if os.environ.get("KVAULT_DISK_FAULTS_NS") == "1":
        return
    env = dict(os.environ, KVAULT_DISK_FAULTS_NS="1")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        print("SKIPPED: no private mount namespace here (unshare -rm: %s)" % probe.stderr.strip())
        sys.exit(77)
    os.execvpe("unshare", ["unshare", "-rm", "--propagation", "private", sys.executable,
                           os.path.abspath(__file__)], env)


class Server:
    def __init__(self, data):
        self.log_path = data + ".log." + str(time.time())
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [KVAULT, "serve", "--port", "0", "--model", MODEL, "--data-dir", data + "/data",
             "--cache-dir", data + "/blocks"], stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline and self.port is None:
            time.sleep(0.2)
            match = re.search(r"serving .* on http://[0-9.]+:([0-9]+)", self.text())
            if match:
                self.port = int(match.group(1))
            if self.proc.poll() is not None:
                break
        if self.port is None:
            raise SystemExit("server did not start:\n" + self.text()[-3000:])

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def chat(self, conversation, content):
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": 3,
                "temperature": 0}
        if conversation:
            body["conversation_id"] = conversation
        return self.request("POST", "/v1/chat/completions", body)

    def history(self, conversation):
        status, body = self.request("GET", "/v1/conversations/%s/history" % conversation)
        return [(t["role"], t["content"]) for t in body["turns"]] if status == 200 else status

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def is_storage_error(status, body):
    return (status == 507 and isinstance(body, dict) and "error" in body
            and body["error"].get("code") == "insufficient_storage"
            and body["error"].get("type") == "server_error" and body["error"].get("message"))


def fill(path):
    """Writes until the file system refuses: ENOSPC."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def main():
    enter_private_mount_namespace()
    root = tempfile.mkdtemp(prefix="kvault-disk-faults-")
    fs = root + "/fs"
    os.mkdir(fs)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", fs], check=True)
    try:
        run(fs)
    finally:
        subprocess.run(["umount", "-l", fs])
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        print("%d checks failed" % len(failures))
        sys.exit(1)
    print("disk faults: all checks passed")


def run(fs):
    server = Server(fs)
    acknowledged = {}
    for conversation in ("c1", "c2"):
        for turn in range(2):
            status, body = server.chat(conversation, "turn %d of %s" % (turn, conversation))
            check(status == 200, "turn before the fault: %s" % status)
    for conversation in ("c1", "c2"):
        acknowledged[conversation] = server.history(conversation)
    check(server.request("POST", "/v1/sessions/s1/save", {"conversation_id": "c1"})[0] == 200,
          "session saved before the fault")

    # Full disk.
    fill(fs + "/filler")
    long_turn = "a long question " * 400  # more than the last page of a log has left
    status, body = server.chat("c1", long_turn)
    check(is_storage_error(status, body), "a turn on a full disk gets 507: %s %s" % (status, body))
    check(server.history("c1") == acknowledged["c1"], "the refused turn changed nothing")
    status, body = server.chat("c3", long_turn)
    check(is_storage_error(status, body), "a new conversation on a full disk gets 507: %s" % status)
    check(server.history("c3") == 404, "the refused new conversation was not kept")
    status, body = server.request("POST", "/v1/sessions/s2/save", {"conversation_id": "c2"})
    check(is_storage_error(status, body), "a session save on a full disk gets 507: %s" % status)
    status, body = server.chat(None, "a stateless question")
    check(status == 200, "stateless requests are still served on a full disk: %s" % status)
    status, health = server.request("GET", "/health")
    check(health["status"] == "degraded", "/health says degraded: %s" % health["status"])
    check(health["storage"]["journal"]["failing"], "/health names the journal")
    metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % server.port).read().decode()
    check('kvault_storage_failing{area="journal"} 1' in metrics, "/metrics shows the failure")
    failed = re.search(r'kvault_storage_failed_writes\{area="journal"\} (\d+)', metrics)
    check(failed is not None and int(failed.group(1)) >= 2, "/metrics counts failed writes")
    check(server.text().count("journal writes fail") == 1,
          "the failure is logged once, not per write")

    # Room again.
    os.remove(fs + "/filler")
    status, body = server.chat("c1", long_turn)
    check(status == 200, "writes resume once there is room: %s %s" % (status, body))
    acknowledged["c1"] = server.history("c1")
    check(acknowledged["c1"][-2] == ("user", long_turn), "the new turn is stored")
    # Each area recovers with its next successful write: a session save clears "sessions".
    status, body = server.request("POST", "/v1/sessions/s2/save", {"conversation_id": "c2"})
    check(status == 200, "a session save succeeds again: %s %s" % (status, body))
    health = server.request("GET", "/health")[1]
    check(health["status"] == "ok", "/health is ok again: %s" % health["storage"])
    check("journal writes succeed again" in server.text(), "the recovery is logged")

    # kill -9, then the same folder read-only.
    server.kill()
    subprocess.run(["mount", "-o", "remount,ro", fs], check=True)
    server = Server(fs)
    for conversation, turns in acknowledged.items():
        check(server.history(conversation) == turns,
              "every acknowledged turn of %s survived kill -9 (read-only restart)" % conversation)
    status, body = server.chat("c2", "a turn on a read-only folder")
    check(is_storage_error(status, body), "a turn on a read-only folder gets 507: %s" % status)
    check(server.history("c2") == acknowledged["c2"], "the refused turn changed nothing")
    status, body = server.chat(None, "stateless on a read-only folder")
    check(status == 200, "stateless requests are served from a read-only folder: %s" % status)
    check(server.request("GET", "/v1/sessions/s1")[0] == 200, "the saved session is readable")
    check(server.request("GET", "/health")[1]["status"] == "degraded", "read-only: degraded")
    server.kill()


if __name__ == "__main__":
    main()
