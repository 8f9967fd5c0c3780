#!/usr/bin/env python3
"""What the HTTP front (server/http_front.h) costs a request: GET /health over one keep-alive
connection through the public port (front, then httplib) and straight to httplib's private
abstract Unix socket, interleaved in rounds, side by side in one run.

Usage: bench/front_overhead.py PORT PID [REQUESTS] [ROUNDS]  (a `kvault serve` listening on
PORT with process id PID; its backend socket is @kvault-http-PID-0-PORT).
"""
import http.client, socket, statistics, sys, time

port, pid = int(sys.argv[1]), int(sys.argv[2])
requests = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5


class UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect("\0kvault-http-%d-0-%d" % (pid, port))


def run(connection):
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        times.append((time.perf_counter() - start) * 1e6)
    connection.close()
    return statistics.median(times)


front, direct = [], []
for _ in range(rounds):
    front.append(run(http.client.HTTPConnection("127.0.0.1", port)))
    direct.append(run(UnixConnection("localhost")))
f, d = statistics.median(front), statistics.median(direct)
print("GET /health p50 over %d rounds of %d: through the front %.0f us, straight to httplib "
      "%.0f us: the front adds %.0f us (%.2fx)" % (rounds, requests, f, d, f - d, f / d))
