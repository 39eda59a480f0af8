#!/usr/bin/env python3
"""Peak and settled memory of `bulkhead serve` while it applies 8 concurrent 40 MiB bulk bodies.

Usage: scripts/bulk_memory.py BINARY LABEL [BINARY LABEL ...]
       BODY=invalid scripts/bulk_memory.py ...   (every line fails validation: no writes)

Each binary gets a fresh data directory, 8 tenants on the pool tier and one 40 MiB NDJSON body
each, sent at once with curl; the server's RSS is sampled every 20 ms (and VmHWM read at the
end). Needs curl. See BENCHMARKS.md.
"""
import json, os, subprocess, sys, threading, time, urllib.request, tempfile, shutil

def rss(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) // 1024
    return 0

def run(binary, label, body_path, concurrent=8):
    d = tempfile.mkdtemp()
    env = dict(os.environ, BULKHEAD_ADMIN_KEY="mem-admin-key-0123456789abcdef", BULKHEAD_LOG="warn",
               BULKHEAD_BULK_MAX_BYTES=str(64 << 20))
    log = open(f"{d}/log", "w")
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:7433", "--data-dir", f"{d}/data"], env=env, stderr=log, stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    cli = dict(env, BULKHEAD_URL="http://127.0.0.1:7433", BULKHEAD_TOKEN=env["BULKHEAD_ADMIN_KEY"])
    subprocess.run([binary, "collection", "put", "items", "--field", "title:text:required", "--field", "n:integer"], env=cli, check=True, stdout=subprocess.DEVNULL)
    keys = []
    for i in range(concurrent):
        subprocess.run([binary, "tenant", "create", f"t{i}", "--name", f"t{i}", "--tier", "free"], env=cli, check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run([binary, "key", "create", "--tenant-id", f"t{i}", "--name", "k", "--role", "member", "--json"], env=cli, check=True, capture_output=True).stdout
        keys.append(json.loads(out)["key"])
    time.sleep(1)
    idle = rss(p.pid, "VmRSS:")
    peak = [0]
    stop = [False]
    def sample():
        while not stop[0]:
            peak[0] = max(peak[0], rss(p.pid, "VmRSS:"))
            time.sleep(0.02)
    t = threading.Thread(target=sample); t.start()
    def post(k):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\n", "-H", f"Authorization: Bearer {k}", "-H", "Content-Type: application/x-ndjson",
                        "--data-binary", f"@{body_path}", "http://127.0.0.1:7433/v1/collections/items/records:bulk?results=errors"], check=True)
    start = time.time()
    ts = [threading.Thread(target=post, args=(k,)) for k in keys]
    [x.start() for x in ts]; [x.join() for x in ts]
    took = time.time() - start
    time.sleep(3)
    stop[0] = True; t.join()
    after = rss(p.pid, "VmRSS:")
    hwm = rss(p.pid, "VmHWM:")
    p.terminate(); p.wait()
    shutil.rmtree(d)
    print(f"{label}: idle {idle} MiB, peak {max(peak[0], hwm)} MiB, after {after} MiB, {concurrent} x 40 MiB in {took:.1f} s")

body = "/tmp/bulk_memory_valid.ndjson"
if os.environ.get("BODY") == "invalid":
    body = "/tmp/bulk_memory_invalid.ndjson"
if not os.path.exists(body):
    with open(body, "w") as f:
        i = 0; size = 0
        while size < 40 << 20:
            n = "not a number" if "invalid" in body else i
            line = json.dumps({"title": f"record {i} " + "x" * 150, "n": n}) + "\n"
            f.write(line); size += len(line); i += 1
for binary, label in [(a, l) for a, l in zip(sys.argv[1::2], sys.argv[2::2])]:
    run(binary, label, body)
