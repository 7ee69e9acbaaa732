"""Tabular files are added a batch at a time: the same bytes as a table built whole, errors with totals over
the whole file, ids sorted, standardization fitted across batches."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from curation.data import store, tabular
from curation.data.contract import build_table, read_manifest
from curation.data.rows import scan
from curation.data.sources import from_file
from curation.errors import CurationError

N, D = 5000, 7


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Batches of 1,000 rows written in row groups of 1,500: batches and row groups cut each other."""
    monkeypatch.setattr(tabular, "BATCH_ROWS", 1000)
    monkeypatch.setattr(store, "ROW_GROUP_SIZE", 1500)


def source(seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(N, D)) * [1, 2, 3, 4, 5, 6, 7] + 10).astype(np.float32)
    return x, rng.integers(0, 3, N), np.where(rng.random(N) < 0.2, "test", "train")


def parquet(path, x, y, split, **extra):
    features = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), D)
    pq.write_table(pa.table({"features": features, "label": y, "split": split, **extra}), path)
    return path


def test_a_file_read_in_batches_gives_the_bytes_of_the_table_built_whole(tmp_path):
    x, y, split = source()
    loaded = from_file(parquet(tmp_path / "f.parquet", x, y, split), standardize=False)
    assert loaded.table is None and loaded.rows == N  # streamed, not held
    streamed = store.stage(loaded.schema, loaded.tables(), tmp_path / "a")
    whole = build_table(x, y, split=split, what=str(tmp_path / "f.parquet"))
    held = store.stage(whole.schema, [whole], tmp_path / "b")
    assert streamed.content_hash == held.content_hash and streamed.manifest == held.manifest
    assert np.diff(store.VersionReader(streamed.path).group_starts).tolist() == [1500, 1500, 1500, 500]


def test_standardization_is_fitted_on_the_train_rows_of_every_batch(tmp_path):
    x, y, split = source()
    transform = read_manifest(from_file(parquet(tmp_path / "f.parquet", x, y, split)).schema)["transform"]
    train = x[split == "train"].astype(np.float64)
    assert np.allclose(transform["mean"], train.mean(0), rtol=1e-6)
    assert np.allclose(transform["std"], train.std(0), rtol=1e-5)


def test_a_csv_with_names_and_no_split_is_streamed_with_a_stratified_split(tmp_path):
    x, y, _ = source()
    names = np.array(["cat", "dog", "emu"])[y]
    table = pa.table({**{f"f{i}": x[:, i] for i in range(D)}, "label": names})
    pacsv.write_csv(table, tmp_path / "f.csv")
    loaded = from_file(tmp_path / "f.csv")
    m = read_manifest(loaded.schema)
    assert m["class_names"] == ["cat", "dog", "emu"] and m["splits"]["test"] == pytest.approx(0.2 * N, abs=3)
    whole = loaded.whole()
    assert whole.num_rows == N and np.array_equal(whole.column("label").to_numpy(), y)


def test_ids_that_do_not_ascend_are_sorted(tmp_path):
    x, y, split = source()
    ids = np.random.default_rng(1).permutation(N) * 3
    whole = from_file(parquet(tmp_path / "f.parquet", x, y, split, sample_id=ids)).whole()
    order = np.argsort(ids)
    assert np.array_equal(whole.column("sample_id").to_numpy(), ids[order])
    assert np.array_equal(whole.column("label").to_numpy(), y[order])
    assert np.array_equal(store.features_numpy(whole), x[order])


@pytest.mark.parametrize(
    "labels",
    [
        np.where(np.arange(N) < 3000, "owl", np.array(["emu", "cat"])[np.arange(N) % 2]),  # names seen batch by batch
        np.where(np.arange(N) % 3 == 0, -1, 1),  # negative integers: numbered in sorted order
    ],
    ids=["names first seen in later batches", "negative integers"],
)
def test_labels_ids_and_split_are_kept_in_two_bytes_a_row_and_give_the_bytes_of_the_whole_table(tmp_path, labels):
    x, _, _ = source()
    split = np.where(np.arange(N) < 4200, "train", "test")  # the first batches hold one split only
    ids = np.arange(N) * 2 + 7  # ascending: read again beside the features, never held
    path = parquet(tmp_path / "f.parquet", x, labels, split, sample_id=ids)
    rows = scan(tabular.TabularFile(path), "label", "split", "sample_id")
    assert rows.labels.dtype == np.int8 and rows.codes.dtype == np.int8 and rows.ids is None
    loaded = from_file(path, standardize=False)
    streamed = store.stage(loaded.schema, loaded.tables(), tmp_path / "a")
    whole = build_table(x, labels, sample_ids=ids, split=split, what=str(path))
    held = store.stage(whole.schema, [whole], tmp_path / "b")
    assert streamed.content_hash == held.content_hash and streamed.manifest == held.manifest
    assert streamed.manifest["class_names"] == sorted(set(labels.tolist()))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "feature column 'f2' in .* has 3 missing values"),
        ("nan", "has 3 rows with NaN, inf or values beyond float32 \\(first: sample_id 10\\)"),
    ],
)
def test_bad_values_in_several_batches_are_counted_over_the_whole_file(tmp_path, damage, message):
    x, y, split = source()
    columns = {f"f{i}": pa.array(x[:, i]) for i in range(D)}
    rows = [10, 2500, 4999]  # in three different batches
    values = x[:, 2].copy()
    values[rows] = np.nan
    columns["f2"] = pa.array(values, pa.float32(), from_pandas=damage == "missing")  # from_pandas: NaN is null
    pq.write_table(pa.table({**columns, "label": y, "split": split}), tmp_path / "f.parquet")
    with pytest.raises(CurationError, match=message):
        from_file(tmp_path / "f.parquet")


def test_a_csv_whose_label_column_turns_to_names_after_its_first_block_keeps_them_all(tmp_path):
    """A streamed CSV reader fixes a column's type from its first block: the label, split and id columns of a CSV
    are read whole, so labels that look like integers for a megabyte and then hold a name are names."""
    lines = ["label,x", *(f"{i % 3},{i}.25" for i in range(150_000)), "cat,1.0"]
    (tmp_path / "f.csv").write_text("\n".join(lines) + "\n")
    m = read_manifest(from_file(tmp_path / "f.csv").schema)
    assert m["class_names"] == ["0", "1", "2", "cat"] and m["rows"] == 150_001


def test_an_ascending_id_column_may_also_be_a_feature(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"label": [0, 1, 0, 1, 0], "x": np.arange(5.0), "uid": np.arange(5, 10)}), path)
    whole = from_file(path, id_column="uid", feature_columns=["x", "uid"], standardize=False).whole()
    assert whole.column("sample_id").to_pylist() == list(range(5, 10))
    assert store.features_numpy(whole)[:, 1].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
