"""A study on object storage: an S3-compatible server on 127.0.0.1 (tests/s3_server.py),
a two-node Ray cluster whose nodes share no study folder, and only the bucket to resume
from. The endpoint and keys reach the harness the way they reach AWS's tools: the
environment."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml

from harness.cli.main import main as harness_main
from harness.store.location import StorageError, open_study
from harness.store.tables import read_table
from tests.ray_cluster import LocalCluster
from tests.s3_server import KEYS, S3Server
from tests.support.drivers import EPOCHS, SPEC, TRIALS, finish, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    try:
        server.make_bucket("bucket")
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3, monkeypatch, tmp_path):
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "reader-cache"))
    return s3


def _bucket(s3: S3Server) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=s3.endpoint, scheme="http", access_key=KEYS["AWS_ACCESS_KEY_ID"],
                             secret_key=KEYS["AWS_SECRET_ACCESS_KEY"], region="us-east-1")


def _objects(s3: S3Server, prefix: str) -> dict[str, int]:
    infos = _bucket(s3).get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return {i.path: i.size for i in infos if i.type == pafs.FileType.File}


@pytest.mark.parametrize("storage, expected", [
    ("s3:///studies", "not a storage URI (expected SCHEME://BUCKET/PREFIX"),
    ("s3://bucket/studies?secret_key=abc", "the URI carries credentials (secret_key)"),
    ("s3://no-such-bucket/studies", "bucket 'no-such-bucket' does not exist"),
])
def test_bad_storage_is_one_line_before_anything_runs(s3_env, tmp_path, capsys, storage, expected):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "study": "bad"}))
    assert harness_main(["sweep", str(spec), "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_refused_credentials_are_one_line(tmp_path, capsys, monkeypatch):
    guarded = S3Server(auth=True)  # checks every request's keys: ours are not its users'
    try:
        for key, value in guarded.env.items():
            monkeypatch.setenv(key, value)
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump({**SPEC, "study": "refused"}))
        assert harness_main(["sweep", str(spec), "--storage", "s3://bucket/studies"]) == 2
    finally:
        guarded.stop()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ACCESS_DENIED" in err and "credentials were refused" in err, err


def test_the_mirror_uploads_what_changed_and_readers_get_what_changed(s3_env, tmp_path, monkeypatch):
    from harness.store.location import Uploader, open_location

    study = open_location("s3://bucket/mirror").child("study")
    (study.local / "parts").mkdir(parents=True)
    for name in ("study.json", "parts/a", "parts/b"):
        (study.local / name).write_text(name)
    uploader = Uploader(study, ("tune",))
    uploader.drain()
    assert set(_objects(s3_env, "bucket/mirror/study")) == {f"bucket/mirror/study/{n}" for n in
                                                            ("study.json", "parts/a", "parts/b")}
    (study.local / "parts" / "a").unlink()  # merged away
    (study.local / "parts" / "c").write_text("merged")
    uploader.drain()
    assert set(_objects(s3_env, "bucket/mirror/study")) == {f"bucket/mirror/study/{n}" for n in
                                                            ("study.json", "parts/b", "parts/c")}
    # Another machine's reader: a fresh mirror, then only what changed, and what went is gone.
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "other-machine"))
    reader = open_study("s3://bucket/mirror/study")
    assert sorted(p.name for p in reader.local.rglob("*") if p.is_file()) == ["b", "c", "study.json"]
    before = (reader.local / "study.json").stat().st_mtime_ns
    (study.local / "parts" / "b").unlink()
    uploader.drain()
    reader = open_study("s3://bucket/mirror/study")
    assert not (reader.local / "parts" / "b").exists()
    assert (reader.local / "study.json").stat().st_mtime_ns == before  # unchanged: not downloaded again
    # An earlier run moves aside, files and folders alike (archive_previous).
    study.move("study.json", "previous/1/study.json")
    study.move("parts", "previous/1/parts")
    assert set(_objects(s3_env, "bucket/mirror/study")) == {"bucket/mirror/study/previous/1/study.json",
                                                            "bucket/mirror/study/previous/1/parts/c"}


def _sweep(cluster: LocalCluster, s3: S3Server, spec: Path, home: Path, *extra: str) -> subprocess.Popen:
    """A driver with its own home and cache: what it leaves on the disk is visible there."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**cluster.env, **s3.env, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "HOME": str(home),
           "HARNESS_CACHE": str(home / "cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", str(spec), "--address", cluster.address,
         "--storage", "s3://bucket/studies", *extra],
        cwd=home, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# A whole cluster scenario (two minutes on 2 cores): in the slow set, as tests/test_cluster_faults.py's
# are, to keep the default run under 12 minutes.
@pytest.mark.slow
@pytest.mark.cluster
def test_a_study_in_a_bucket_survives_a_lost_worker_and_a_killed_driver(s3_env, tmp_path, capsys):
    s3 = s3_env
    cluster = LocalCluster()
    cluster.env.update(s3.env)  # every node reaches the bucket; no folder of the study is shared
    try:
        cluster.start_head()
        worker = cluster.add_node()
        spec = tmp_path / "bucket-study.yaml"
        spec.write_text(yaml.safe_dump({**SPEC, "study": "bucket-study"}))
        uri = "s3://bucket/studies/bucket-study"

        def epochs() -> pd.DataFrame:
            try:  # the Optuna journal or Tune's files may reach the bucket before any result does
                rows = read_table(open_study(uri).local, "epochs")
            except StorageError:
                rows = pd.DataFrame()
            return rows if len(rows) else pd.DataFrame(columns=["trial_id", "epoch", "node_id"])

        driver = _sweep(cluster, s3, spec, tmp_path / "first")

        def half_way_on_the_worker():
            rows = epochs()
            latest = rows[rows["node_id"] == worker].groupby("trial_id")["epoch"].max()
            half = latest[(latest >= 2) & (latest <= EPOCHS // 2)]
            return half.index[0] if len(half) else None

        victim = wait_for(half_way_on_the_worker, driver)
        checkpoints = [p for p in _objects(s3, "bucket/studies/bucket-study/tune") if "/checkpoint_" in p]
        assert checkpoints  # the worker's trials checkpoint to the bucket
        cluster.kill_node(worker)

        def victim_on_the_head():
            rows = epochs()
            return True if (rows[rows["trial_id"] == victim]["node_id"] != worker).any() else None

        wait_for(victim_on_the_head, driver)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        shutil.rmtree(tmp_path / "first" / "cache")  # the resumed driver has the bucket alone

        out = finish(_sweep(cluster, s3, spec, tmp_path / "second", "--resume"))
        assert "resuming 'bucket-study' from s3://bucket/studies/bucket-study" in out
    finally:
        cluster.shutdown()

    folder = open_study(uri).local
    trials, reports = pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "epochs.parquet")
    assert trials["trial_id"].is_unique and not reports.duplicated(["trial_id", "epoch"]).any()
    kept = trials[trials["status"] != "lost"]
    assert len(kept) == TRIALS and set(kept["status"]) == {"completed"}, out[-2000:]
    for trial_id in kept["trial_id"]:
        assert sorted(reports.loc[reports["trial_id"] == trial_id, "epoch"]) == list(range(1, EPOCHS + 1))
    ran_on = reports[reports["trial_id"] == victim].sort_values("epoch")["node_id"]
    assert ran_on.iloc[0] == worker and ran_on.iloc[-1] != worker
    # Every completed trial's student is in the bucket, where trials.parquet says.
    objects = _objects(s3, "bucket/studies")
    assert all(f"bucket/studies/bucket-study/{path}" in objects for path in kept["student_state"])
    assert any(p.startswith("bucket/studies/teachers/") for p in objects)
    # The Optuna study went on in the journal: each trial once (those asked after the last snapshot failed).
    import optuna

    from harness.store.journal import open_storage

    assert open_study(uri).pull("optuna.journal")  # uploaded with the snapshots and at the end of the seed
    study = optuna.load_study(study_name="bucket-study.seed0", storage=open_storage(None, folder))
    told = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(told) == len(trials[trials["status"] != "lost"]) and all(t.intermediate_values for t in told)

    # A report and a leaderboard from the bucket alone.
    assert harness_main(["report", uri, "-o", str(tmp_path / "report.html"), "--no-images"]) == 0
    assert harness_main(["leaderboard", "s3://bucket/studies"]) == 0
    assert "bucket/studies/leaderboard.parquet" in _objects(s3, "bucket/studies")
    capsys.readouterr()
    # Nothing of the study on the drivers' disks outside their caches; no key in the bucket.
    for home in (tmp_path / "first", tmp_path / "second"):
        left = [p for p in home.rglob("*") if p.is_file() and p.relative_to(home).parts[0] != "cache"
                and ("bucket-study" in str(p) or p.suffix in (".parquet", ".journal", ".pt"))]
        assert not left, left
    secret = KEYS["AWS_SECRET_ACCESS_KEY"].encode()
    fs = _bucket(s3)
    for path in objects:
        with fs.open_input_stream(path) as stream:
            assert secret not in stream.read(), path
