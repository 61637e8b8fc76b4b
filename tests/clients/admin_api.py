"""torpor's admin API for the client scripts: a cluster's status, and a forced sleep that
checks the backend process is gone. TORPOR_ADMIN and TORPOR_CLUSTER say which."""

import json
import os
import urllib.request

ADMIN = os.environ["TORPOR_ADMIN"]
CLUSTER = os.environ["TORPOR_CLUSTER"]


def status():
    with urllib.request.urlopen(f"{ADMIN}/api/clusters") as r:
        return [c for c in json.load(r) if c["name"] == CLUSTER][0]


def sleep_cluster():
    pid = status()["backend_pid"]
    req = urllib.request.Request(f"{ADMIN}/api/clusters/{CLUSTER}/sleep", method="POST")
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
    st = status()
    assert st["state"] == "standby" and st["backend_pid"] is None, st
    assert pid is None or not os.path.exists(f"/proc/{pid}"), pid
