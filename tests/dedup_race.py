"""One of several processes that enqueue the same dedup keys at the same moment.

Usage: python -m tests.dedup_race KEYS START_AT  (START_AT: a time.time() to wait for)
Prints one JSON line per key: key, job id, deduplicated.
"""

from __future__ import annotations

import json
import random
import sys
import time

from tests import sample_app


def main() -> None:
    keys, start_at = int(sys.argv[1]), float(sys.argv[2])
    order = list(range(keys))
    random.shuffle(order)  # each process meets the keys in its own order
    sample_app.app.pool.wait()  # connections made before the start, not during
    time.sleep(max(0.0, start_at - time.time()))
    out = []
    for k in order:
        job = sample_app.add.options(dedup_key=f"order-{k}").enqueue(k, 1)
        out.append({"key": k, "id": str(job.id), "deduplicated": job.deduplicated})
    sample_app.app.close()
    sys.stdout.write("\n".join(json.dumps(o) for o in out) + "\n")


if __name__ == "__main__":
    main()
