"""The study lock on object storage, against a real S3-compatible server (moto's) on
127.0.0.1: created with If-None-Match where the server honours it, write-wait-read where
it cannot be used; one writer either way, the holder named, only its own record released."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from harness.errors import HarnessError
from harness.store import conditional
from harness.store.location import open_location
from harness.store.lock import LOCK_FILE, SETTLE_S, StudyLock
from tests.s3_server import S3Server


@pytest.fixture(scope="module")
def server():
    server = S3Server()
    try:
        server.make_bucket("locks")
        yield server
    finally:
        server.stop()


@pytest.fixture
def study(server, monkeypatch, tmp_path, request):
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    conditional._client.cache_clear()  # boto3 reads the environment when its client is made
    conditional._honours_if_none_match.cache_clear()
    return open_location(f"s3://locks/{request.node.name}")


def _record(study) -> dict:
    return json.loads(study.read_bytes(LOCK_FILE))


def test_the_lock_is_a_conditional_create_and_a_second_writer_is_refused_at_once(study):
    assert conditional.create_if_absent(study, "probe", b"1") is True
    assert conditional.create_if_absent(study, "probe", b"2") is False
    assert study.read_bytes("probe") == b"1"

    with StudyLock(study, "sweep") as held:
        assert held.conditional and _record(study) == held.record
        started = time.monotonic()
        with pytest.raises(HarnessError, match=rf"is being written by `harness sweep` \(pid {held.record['pid']} "):
            StudyLock(study, "leaderboard").__enter__()
        assert time.monotonic() - started < SETTLE_S  # the store said no: nothing to wait for
    assert not study.exists(LOCK_FILE)


def test_of_writers_racing_for_the_lock_exactly_one_gets_it(study):
    results: list[str] = []
    start = threading.Barrier(6)

    def take(i: int) -> None:
        start.wait()
        try:
            StudyLock(study, f"sweep{i}").__enter__()
            results.append("held")
        except HarnessError:
            results.append("refused")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["held"] + ["refused"] * 5
    assert _record(study)["command"].startswith("sweep")


def test_a_record_from_another_host_is_held_and_a_dead_local_one_taken_over(study):
    study.write_bytes(json.dumps({"host": "elsewhere", "pid": 1, "command": "sweep", "since": "then"}).encode(),
                      LOCK_FILE)
    with pytest.raises(HarnessError, match=r"`harness sweep` \(pid 1 on elsewhere, since then\)"):
        StudyLock(study, "sweep").__enter__()

    import socket

    ended = subprocess.Popen(["true"])
    ended.wait()  # a process of this host that is gone
    study.write_bytes(json.dumps({"host": socket.gethostname(), "pid": ended.pid, "command": "sweep"}).encode(),
                      LOCK_FILE)
    with StudyLock(study, "sweep") as held:
        assert held.conditional and _record(study) == held.record


def test_release_removes_only_its_own_record(study):
    lock = StudyLock(study, "sweep").__enter__()
    other = {"host": "elsewhere", "pid": 2, "command": "sweep"}
    study.write_bytes(json.dumps(other).encode(), LOCK_FILE)  # someone deleted ours by hand and took it
    lock.__exit__(None, None, None)
    assert _record(study) == other


def test_without_a_conditional_create_the_lock_writes_waits_and_reads_back(study, monkeypatch):
    monkeypatch.setattr(conditional, "_client", lambda: None)  # as where boto3 is not installed
    with StudyLock(study, "sweep") as held:
        assert not held.conditional and _record(study) == held.record
        with pytest.raises(HarnessError, match="is being written by `harness sweep`"):
            StudyLock(study, "report").__enter__()
    assert not study.exists(LOCK_FILE)
