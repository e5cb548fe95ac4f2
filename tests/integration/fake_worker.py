"""Workers that misbehave on purpose: ``python -m tests.integration.fake_worker dies|hangs``.

``dies`` exits with status 7 right after reading its plan; ``hangs`` says it connected, then
never reports. The coordinator must fail the run with a clear message in bounded time and leave
no process behind.
"""

from __future__ import annotations

import json
import sys
import time

if __name__ == "__main__":
    sys.stdin.readline()
    if sys.argv[1] == "dies":
        raise SystemExit(7)
    print(json.dumps({"event": "connected", "connections": 1, "connect_s": 0.0}), flush=True)
    time.sleep(3600)
