"""A real 3-node peerbatch cluster on 127.0.0.1 for the client's tests.

The first node makes the cluster key; the other two join with its
invitation token, as `peerbatch demo` and the Rust end-to-end tests do.
`PEERBATCH_BIN` names the binary (default: `peerbatch` on PATH).
"""

import os
import shutil
import subprocess
import time

import pytest

from peerbatch import Client

FAST = ["--slots", "2", "--lease-ms", "2000", "--heartbeat-ms", "400"]


def binary():
    path = os.environ.get("PEERBATCH_BIN") or shutil.which("peerbatch")
    if not path:
        pytest.fail("set PEERBATCH_BIN to the peerbatch binary")
    return path


def wait_for(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.05)


class Cluster:
    def __init__(self, root):
        self.root = root
        self.procs = []
        self.dirs = []

    def start(self, name, *args):
        data = self.root / name
        data.mkdir()
        log = open(data / "test-node.log", "ab")
        proc = subprocess.Popen(
            [binary(), "node", "--data-dir", str(data), "--listen", "/ip4/127.0.0.1/tcp/0",
             "--no-mdns", "--allow-root-tasks", *FAST, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )
        self.procs.append(proc)
        self.dirs.append(data)

        def up():
            if proc.poll() is not None:
                pytest.fail("node {} exited: {}".format(name, (data / "test-node.log").read_text()))
            # `invite` names the addresses the node listens on (its `listen` file).
            return all((data / f).exists() for f in ("api", "token", "listen"))

        wait_for("node {}'s API".format(name), up)
        return data

    def invite(self):
        out = subprocess.run(
            [binary(), "invite", "--data-dir", str(self.dirs[0])],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def client(self, i):
        return Client(data_dir=self.dirs[i])

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start("a")
        token = c.invite()
        c.start("b", "--join-token", token)
        c.start("c", "--join-token", token)
        for i in range(3):
            wait_for(
                "node {} to see all three nodes live".format(i),
                lambda: sum(n["live"] for n in c.client(i).nodes()) == 3,
            )
        yield c
    finally:
        c.stop()
