"""The Parquet store: deterministic bytes, lazy reads by sample id, the contract's checks."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from curation.data import store
from curation.data.contract import build_table, check_name, read_manifest
from curation.data.dvc_repo import dvc_hash
from curation.data.sources import from_file
from curation.data.store import ROW_GROUP_SIZE, VersionReader, features_numpy, stage
from curation.errors import CurationError


def _staged(table, data_dir):
    return stage(table.schema, [table], data_dir)


def _table(n=10, d=3, seed=0, ids=None):
    rng = np.random.default_rng(seed)
    return build_table(rng.normal(size=(n, d)), rng.integers(0, 4, n), sample_ids=ids)


def test_same_table_gives_same_bytes(tmp_path):
    a, b = _staged(_table(), tmp_path / "a"), _staged(_table(), tmp_path / "b")
    assert a.content_hash == b.content_hash
    assert _staged(_table(seed=1), tmp_path / "c").content_hash != a.content_hash


def test_contract_types_and_manifest():
    table = build_table(
        np.ones((4, 6)),
        np.array([3, 1, 1, 0]),
        sample_ids=[40, 10, 30, 20],
        split=["train", "test", "train", "train"],
        feature_shape=[2, 3],
    )
    assert table.schema.field("sample_id").type == pa.int64()
    assert table.schema.field("label").type == pa.int32()
    assert table.schema.field("features").type == pa.list_(pa.float32(), 6)
    assert table.column("sample_id").to_pylist() == [10, 20, 30, 40]  # sorted by id
    assert table.column("label").to_pylist() == [1, 0, 1, 3]  # labels move with their rows
    m = read_manifest(table.schema)
    assert m["rows"] == 4 and m["classes"] == [0, 1, 3] and m["feature_shape"] == [2, 3]
    assert m["splits"] == {"test": 1, "train": 3}


@pytest.fixture(params=[16, 2], ids=["one-shard", "two-shards"])
def big_reader(tmp_path, monkeypatch, request):
    monkeypatch.setattr(store, "SHARD_GROUPS", request.param)
    n = ROW_GROUP_SIZE * 3 + 17
    ids = np.arange(n, dtype=np.int64) * 3 + 5  # not 0..N-1: ids map through the index
    staged = _staged(_table(n=n, d=4, ids=ids), tmp_path)
    return VersionReader(staged.path), ids


def test_take_returns_rows_in_order_with_duplicates(big_reader):
    reader, ids = big_reader
    full = reader.read()
    want = np.array([ids[-1], ids[0], ids[0], ids[ROW_GROUP_SIZE + 3], ids[5]])
    got = reader.take(want)
    assert got.column("sample_id").to_numpy().tolist() == want.tolist()
    rows = np.searchsorted(ids, want)
    np.testing.assert_array_equal(features_numpy(got), features_numpy(full)[rows])
    np.testing.assert_array_equal(got.column("label").to_numpy(), full.column("label").to_numpy()[rows])


def test_take_reads_only_needed_row_groups(big_reader, monkeypatch):
    reader, ids = big_reader
    asked = []
    original = pq.ParquetFile.read_row_groups

    def record(self, groups, **kw):
        asked.append((self.metadata.num_row_groups, groups))
        return original(self, groups, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", record)
    reader.take(ids[ROW_GROUP_SIZE * 2 : ROW_GROUP_SIZE * 2 + 10])
    sharded = len(reader.files) == 2
    assert asked == [(2, [0])] if sharded else [(4, [2])]  # the third group is the second shard's first


def test_shards_are_one_version_hashed_as_dvc_hashes_the_folder(tmp_path, monkeypatch):
    from dvc.repo import Repo

    monkeypatch.setattr(store, "SHARD_GROUPS", 1)
    n = ROW_GROUP_SIZE * 2 + 5
    table = _table(n=n, d=2)
    staged = _staged(table, tmp_path / "data")
    assert [f.name for f in sorted(staged.path.iterdir())] == [f"part-0000{i}.parquet" for i in range(3)]
    reader = VersionReader(staged.path)
    assert reader.num_rows == n and list(reader.group_starts) == [0, ROW_GROUP_SIZE, 2 * ROW_GROUP_SIZE, n]
    assert _staged(table, tmp_path / "again").content_hash == staged.content_hash  # the same rows, the same hash
    assert reader.read().equals(table.sort_by("sample_id"))
    rows = np.array([n - 1, 0, ROW_GROUP_SIZE, n - 1])
    np.testing.assert_array_equal(
        features_numpy(reader.take_rows(rows)), features_numpy(table.sort_by("sample_id"))[rows]
    )
    repo = tmp_path / "repo"
    Repo.init(str(repo), no_scm=True).close()
    staged.path.rename(repo / "v")
    with Repo(str(repo)) as r:
        r.add(str(repo / "v"))
    assert dvc_hash(repo / "v") == staged.content_hash and staged.content_hash.endswith(".dir")


def test_a_version_written_as_one_file_before_shards_still_reads(tmp_path):
    table = _table(n=ROW_GROUP_SIZE + 9, d=3)
    staged = _staged(table, tmp_path)
    [shard] = staged.path.iterdir()
    old = shard.rename(tmp_path / f"{store.file_md5(shard)}.parquet")  # the earlier layout: <md5>.parquet
    reader = VersionReader(old)
    assert reader.files == [old] and reader.num_rows == table.num_rows
    assert store.content_md5(old) == old.stem  # hashed as a file, as DVC hashed it
    assert reader.read().equals(table.sort_by("sample_id"))
    assert reader.take([ROW_GROUP_SIZE + 1]).column("sample_id").to_pylist() == [ROW_GROUP_SIZE + 1]


def test_take_rejects_ids_not_in_the_version(big_reader):
    reader, ids = big_reader
    with pytest.raises(CurationError, match=r"1 sample ids are not in this version \(first: 6\)"):
        reader.take([ids[0], 6])


def test_read_split_and_missing_file(tmp_path):
    table = build_table(np.ones((3, 2)), np.array([0, 1, 0]), split=["train", "test", "train"])
    reader = VersionReader(_staged(table, tmp_path).path)
    assert reader.read(columns=["sample_id"], split="train").column("sample_id").to_pylist() == [0, 2]
    assert [t.num_rows for t in reader.groups(["sample_id"], split="test")] == [1]  # one row group, filtered
    with pytest.raises(CurationError, match="dvc"):
        VersionReader(tmp_path / "gone.parquet")


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "a" * 65, "x..y", "a\\b", "a b"])
def test_unsafe_names_rejected(name):
    with pytest.raises(CurationError, match="bad data set name"):
        check_name(name)


def test_user_files_with_chosen_columns(tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("uid,f1,f2,noise,target,part\n7,1.5,2,9,1,train\n3,0.5,1,9,0,test\n")  # too few rows to split
    loaded = from_file(csv, label_column="target", feature_columns=["f1", "f2"], id_column="uid", split_column="part")
    assert loaded.whole().column("sample_id").to_pylist() == [3, 7]
    np.testing.assert_array_equal(features_numpy(loaded.whole()), [[0.5, 1], [1.5, 2]])
    pq.write_table(loaded.whole(), tmp_path / "ours.parquet")
    again = from_file(tmp_path / "ours.parquet")  # our own format reads back through the list column
    assert again.whole().column("sample_id").to_pylist() == [3, 7]
    np.testing.assert_array_equal(features_numpy(again.whole()), features_numpy(loaded.whole()))


@hsettings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet"]))
def test_file_reader_fuzz_never_crashes(tmp_path_factory, payload, suffix):
    """Any bytes give either a valid table or a one-line CurationError, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / f"f{suffix}"
    path.write_bytes(payload)
    try:
        loaded = from_file(path)
    except CurationError as exc:
        assert "\n" not in str(exc)
    else:
        assert loaded.whole().num_rows > 0
