"""A real multi-node Ray cluster on this machine, for the fault tests.

Each node is its own ``ray start`` (its own raylet, object store and node id)
on loopback, sharing one temp folder; token authentication is on, with a token
made for the test. Every process a node starts is remembered, so a node can be
killed on its own and :meth:`LocalCluster.shutdown` leaves no Ray process
behind, without ``ray stop`` (which would also stop other Ray instances here).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths are limited
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: dict[str, set[int]] = {}  # node id -> pids of the processes it started

    def _start(self, *args: str, cpus: int = 1) -> set[int]:
        before = {p.pid for p in psutil.process_iter()}
        subprocess.run([RAY, "start", *args, f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1",
                        f"--temp-dir={self.temp}", "--disable-usage-stats"],
                       env=self.env, check=True, capture_output=True, timeout=120)
        return {p.pid for p in psutil.process_iter() if p.pid not in before and self._ours(p)}

    def _ours(self, process: psutil.Process) -> bool:
        try:
            return str(self.temp) in " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def start_head(self) -> str:
        pids = self._start("--head", f"--port={self.port}", "--include-dashboard=false")
        return self._register(pids, head=True)

    def add_node(self, *extra: str, cpus: int = 1) -> str:
        """A worker node; ``extra``: more ``ray start`` options (``--resources=...``)."""
        port = free_port()
        pids = self._start(f"--address={self.address}", f"--node-manager-port={port}", *extra, cpus=cpus)
        return self._register(pids, port=port)

    def _register(self, pids: set[int], head: bool = False, port: int | None = None) -> str:
        nodes = self.alive_nodes()
        node = next(n["NodeID"] for n in nodes if (n["is_head"] if head else n["NodeManagerPort"] == port))
        self.nodes[node] = pids
        return node

    def alive_nodes(self) -> list[dict]:
        """The cluster's live nodes, asked from a separate driver (the test process has its own Ray)."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
                "print(json.dumps([{'NodeID': n['NodeID'], 'NodeManagerPort': n['NodeManagerPort'], "
                "'is_head': 'node:__internal_head__' in n['Resources']} for n in ray.nodes() if n['Alive']]))"
                % self.address)
        out = subprocess.run([sys.executable, "-c", code], env=self.env, check=True, capture_output=True,
                             text=True, timeout=120).stdout
        return json.loads(out.strip().splitlines()[-1])

    def kill_node(self, node: str) -> None:
        """Kill a node's processes and their workers at once, as a lost machine would."""
        _kill(self.nodes.pop(node))

    def running(self, task: str) -> str | None:
        """The node whose workers are running the Ray task named ``task`` now (Ray titles a
        worker ``ray::<task>`` while it runs one), or None."""
        for node, pids in self.nodes.items():
            for pid in pids:
                try:
                    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
                    if any(f"ray::{task}" in " ".join(p.cmdline()) for p in tree):
                        return node
                except psutil.NoSuchProcess:
                    continue
        return None

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster still alive: the nodes' own and their workers."""
        found = {}
        for pid in {pid for pids in self.nodes.values() for pid in pids}:
            try:
                root = psutil.Process(pid)
                for p in [root, *root.children(recursive=True)]:
                    found[p.pid] = p
            except psutil.NoSuchProcess:
                pass
        for p in psutil.process_iter():
            if self._ours(p):
                found[p.pid] = p
        return list(found.values())

    def shutdown(self) -> None:
        for _ in range(3):
            left = self.processes()
            if not left:
                break
            _kill({p.pid for p in left})
            time.sleep(1)
        self.nodes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)


def _kill(pids: set[int]) -> None:
    processes = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in processes:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)
