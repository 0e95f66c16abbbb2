"""Peak memory figures for issue 11 items 4, 5 and 11 (run with PYTHONPATH=src:tests)."""

import gc
import gzip
import resource
import sys
import tracemalloc

import anyio

from _raw_server import RawServer, http_response
from msgstatus import RetryPolicy, SendblueProvider, StatusClient
from msgstatus._cli import read_handles

MiB = 1024 * 1024
which = sys.argv[1]

if which == "4":
    bomb = gzip.compress(gzip.compress(b"\0" * (200 * MiB), 9), 9)
    hdr = (("Content-Type", "application/json"), ("Content-Encoding", "gzip, gzip"))

    async def main():
        with RawServer(lambda t, q: http_response(bomb, headers=hdr)) as server:
            async with SendblueProvider(
                "k", "secret-12345678", base_url=server.base_url, retry=RetryPolicy(max_attempts=1)
            ) as p:
                tracemalloc.start()
                try:
                    await p.get_status("sendblue:bomb")
                except Exception as exc:
                    print(type(exc).__name__, exc)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
        print(f"item 4: body {len(bomb)} bytes, tracemalloc peak {peak / MiB:.2f} MiB")

    anyio.run(main)
elif which == "5":
    n = int(sys.argv[2])
    items = ",".join(["{}"] * ((MiB - 100) // 3))
    bodies = {
        f"m{i}": http_response(
            f'{{"message_handle":"m{i}","status":"DELIVERED","x":[{items}]}}'.encode()
        )
        for i in range(n)
    }

    async def main():
        with RawServer(lambda t, q: bodies[q["handle"]]) as server:
            async with StatusClient(
                [SendblueProvider("k", "secret-12345678", base_url=server.base_url)], cache_size=n
            ) as c:
                from test_hardening import _deep_size

                def rss():
                    return int(open("/proc/self/statm").read().split()[1]) * 4096 / MiB

                gc.collect()
                before = rss()
                for i in range(n):
                    await c.get_status(f"sendblue:m{i}")
                gc.collect()
                sizes = [_deep_size(r) for r in c._cache.values()]
                print(
                    f"item 5: {n} lookups of 1 MiB [{{}},...] bodies, {len(sizes)} cached: "
                    f"deep size per cached result max {max(sizes) / 1024:.1f} KiB, "
                    f"total {sum(sizes) / 1024:.0f} KiB; RSS {before:.0f} -> {rss():.0f} MiB"
                )

    anyio.run(main)
elif which == "11":
    n = int(sys.argv[2])
    kind = sys.argv[3]
    import tempfile

    path = f"{tempfile.gettempdir()}/msgstatus-handles-{kind}-{n}.txt"
    with open(path, "w", newline="") as out:
        if kind == "csv":
            out.write("id,handle\n")
        for i in range(n):
            out.write(f"{i},sendblue:msg-{i:08d}\n" if kind == "csv" else f"sendblue:msg-{i:08d}\n")
    with open(path, newline="") as src:
        tracemalloc.start()
        count = sum(1 for _ in read_handles(src))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(
        f"item 11: read_handles over {count} {kind} lines: tracemalloc peak {peak / 1024:.1f} KiB"
    )
print(
    f"  max RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
)
