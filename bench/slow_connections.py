#!/usr/bin/env python3
"""/health latency while N connections send their headers one byte every 0.5 s.

Usage: bench/slow_connections.py PORT N   (a kvault serve already listening on PORT;
raise its open-file limit first: `ulimit -n 8192` before starting it).
"""
import socket, time, http.client, resource, statistics, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
port=int(sys.argv[1]); n=int(sys.argv[2])
socks=[]
for i in range(n):
    s=socket.create_connection(("127.0.0.1",port)); s.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "); socks.append(s)
lat=[]; failed=0
for r in range(20):
    for s in socks:
        try: s.send(b"a")
        except OSError: failed+=1
    t=time.time()
    try:
        c=http.client.HTTPConnection("127.0.0.1",port,timeout=5); c.request("GET","/health"); st=c.getresponse().status; c.close()
        lat.append((time.time()-t)*1000) if st==200 else None
        if len(sys.argv) > 3: print(f"round {r}: {(time.time()-t)*1000:.1f} ms")
    except Exception as e: print("err",e)
    time.sleep(0.5)
lat.sort()
print(f"{n} slow connections open: /health {len(lat)}/20 answered, p50 {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms; slow sends failed {failed}")
