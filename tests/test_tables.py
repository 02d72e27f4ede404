"""Tables written in parts: what readers see at every point, and what a crash leaves."""
from __future__ import annotations

import shutil

import pandas as pd
import pyarrow.parquet as pq

from harness.store.tables import FAN_IN, PARTS, PartTable, deletion, read_table, table_exists


def _trial(i: int, status: str, **more) -> dict:
    return {"trial_id": f"s0-{i:05d}", "status": status, **more}


def test_each_key_reads_as_its_latest_row_in_the_order_keys_first_appeared(tmp_path):
    table = PartTable(tmp_path, "trials")
    assert not table_exists(tmp_path, "trials") and read_table(tmp_path, "trials").empty
    table.append([_trial(0, "running"), _trial(1, "running")])
    table.append([_trial(1, "completed", val_acc=0.9)])  # a float where the first write had no column
    table.append([_trial(0, "stopped", val_acc=None), _trial(2, "running")])
    rows = read_table(tmp_path, "trials")
    assert rows["trial_id"].tolist() == ["s0-00000", "s0-00001", "s0-00002"]
    assert rows["status"].tolist() == ["stopped", "completed", "running"]
    assert rows["val_acc"].dtype == float and rows["val_acc"].isna().tolist() == [True, False, True]


def test_many_writes_keep_few_files_and_every_row_once(tmp_path):
    table = PartTable(tmp_path, "epochs")
    writes = FAN_IN ** 2 + 3 * FAN_IN + 5
    for i in range(writes):
        if i == FAN_IN ** 2 - FAN_IN // 2:  # a resumed writer merges parts it did not write, read from disk
            table = PartTable(tmp_path, "epochs")
        table.append([{"trial_id": f"s0-{i % 7}", "epoch": i // 7, "val_acc": i / writes}])
    files = list((tmp_path / PARTS).iterdir())
    assert len(files) <= 3 * FAN_IN  # tiers of at most FAN_IN - 1 parts each, not one file per write
    assert any(pq.ParquetFile(f).metadata.num_rows == FAN_IN ** 2 for f in files)  # a part of the second tier
    rows = read_table(tmp_path, "epochs")
    assert len(rows) == writes and not rows.duplicated(["trial_id", "epoch"]).any()
    table.compact()
    assert not (tmp_path / PARTS).exists()
    assert read_table(tmp_path, "epochs").equals(rows)


def test_a_report_written_again_after_a_restart_replaces_the_first(tmp_path):
    table = PartTable(tmp_path, "epochs")
    table.append([{"trial_id": "s0-a", "epoch": 1, "val_acc": 0.1}, {"trial_id": "s0-a", "epoch": 2, "val_acc": 0.2}])
    table.append([{"trial_id": "s0-a", "epoch": 2, "val_acc": 0.25}])  # from its checkpoint at epoch 1
    assert read_table(tmp_path, "epochs")["val_acc"].tolist() == [0.1, 0.25]


def test_a_compaction_cut_short_leaves_parts_readers_ignore_and_the_next_writer_removes(tmp_path):
    table = PartTable(tmp_path, "trials")
    table.append([_trial(0, "running")])
    table.append([_trial(0, "completed")])
    saved = tmp_path / "saved"
    shutil.copytree(tmp_path / PARTS, saved)
    table.compact()
    shutil.copytree(saved, tmp_path / PARTS, dirs_exist_ok=True)  # as if the driver died before deleting them
    assert read_table(tmp_path, "trials")["status"].tolist() == ["completed"]  # not the older 'running'

    resumed = PartTable(tmp_path, "trials")  # a resumed driver goes on after the compacted writes
    resumed.append([_trial(1, "running")])
    assert [p.name for p in (tmp_path / PARTS).iterdir()] == ["trials-000000003-000000003.parquet"]
    assert read_table(tmp_path, "trials")["status"].tolist() == ["completed", "running"]


def test_the_compacted_file_is_plain_parquet_with_the_columns_of_an_empty_table(tmp_path):
    PartTable(tmp_path, "epochs", ["trial_id", "epoch", "val_acc"]).compact()
    assert list(pd.read_parquet(tmp_path / "epochs.parquet").columns) == ["trial_id", "epoch", "val_acc"]
    table = PartTable(tmp_path, "trials")
    table.append([_trial(0, "completed", val_acc=0.5)])
    table.compact()
    assert pq.read_table(tmp_path / "trials.parquet").to_pandas()["val_acc"].tolist() == [0.5]


def test_a_deleted_key_is_gone_from_readers_and_the_compacted_file_until_written_again(tmp_path):
    table = PartTable(tmp_path, "epochs")
    table.append([{"trial_id": "a", "epoch": e, "val_acc": e / 10} for e in (1, 2, 3)])
    table.compact()
    table.append([deletion(trial_id="a", epoch=3), deletion(trial_id="a", epoch=2)])
    assert read_table(tmp_path, "epochs")["epoch"].tolist() == [1]
    table.compact()
    assert pq.read_table(tmp_path / "epochs.parquet").column_names == ["trial_id", "epoch", "val_acc"]
    table.append([{"trial_id": "a", "epoch": 2, "val_acc": 0.5}])
    rows = read_table(tmp_path, "epochs")
    assert rows["epoch"].tolist() == [1, 2] and rows["val_acc"].tolist() == [0.1, 0.5]
