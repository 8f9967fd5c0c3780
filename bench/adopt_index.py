#!/usr/bin/env python3
"""How long a replica takes to continue a long conversation another replica recorded: the
journal adopted from Redis and the chunk index rebuilt from its tokens (issue 12, item 2).

Usage: bench/adopt_index.py [TURNS]   (from the repository root, after `make build`; starts
a redis-server and two `kvault serve` replicas with the tiny test model, 4,000 turns of
~200 words by default). Replica A gets the history by /v1/conversations/append; the first
search on replica B adopts the conversation and indexes it; the second is a plain search.
"""
import json, os, random, shutil, socket, subprocess, sys, tempfile, time, urllib.request

turns = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
root = tempfile.mkdtemp(prefix="kvault-adopt-")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port


def post(port, path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    start = time.time()
    reply = json.load(urllib.request.urlopen(request, timeout=3600))
    return reply, time.time() - start


redis_port = free_port()
os.makedirs(f"{root}/redis")
children = [subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly",
                              "no", "--dir", f"{root}/redis"], stdout=subprocess.DEVNULL)]
time.sleep(0.5)


def replica(name):
    port = free_port()
    children.append(subprocess.Popen(
        ["build/kvault", "serve", "--model", "build/testdata/tiny.gguf", "--port", str(port),
         "--remote-url", f"redis://127.0.0.1:{redis_port}", "--data-dir", f"{root}/{name}/data",
         "--cache-dir", f"{root}/{name}/blocks", "--log-level", "warning"], stderr=subprocess.DEVNULL))
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health")
            return port
        except OSError:
            time.sleep(0.1)
    sys.exit("replica did not start")


try:
    words = "harbour ferry cargo crane tide pilot dock anchor rope signal manifest customs".split()
    random.seed(1)
    messages = [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": " ".join(random.choice(words) for _ in range(200)) + f" entry {i}."}
                for i in range(turns)]
    a, b = replica("a"), replica("b")
    reply, seconds = post(a, "/v1/conversations/append", {"conversation_id": "big", "messages": messages})
    print(f"replica A: appended {reply['new_tokens']} tokens in {seconds:.2f} s")
    query = {"conversation_id": "big", "query": "entry 17 manifest", "k": 3}
    reply, seconds = post(b, "/v1/conversations/search", query)
    print(f"replica B, first search (adopts from Redis, rebuilds the index): {seconds:.2f} s, "
          f"best chunk at turn {reply['results'][0]['first_turn']}")
    reply, seconds = post(b, "/v1/conversations/search", query)
    print(f"replica B, second search: {seconds * 1000:.1f} ms")
    index = json.load(urllib.request.urlopen(f"http://127.0.0.1:{b}/health"))["index"]
    print(f"replica B's index: {index['chunks']} chunks of 128 tokens")
finally:
    for child in children:
        child.kill()
    shutil.rmtree(root, ignore_errors=True)
