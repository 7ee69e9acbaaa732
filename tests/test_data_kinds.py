"""Real data no one here generated: scikit-learn's breast cancer as a CSV with string labels and no split,
scikit-learn's digits as an image folder of PNGs and as Parquet of PNG bytes; label encoding, stratified
splits, standardization and image decoding (bad inputs of these kinds: test_bad_inputs.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from curation.cli import app
from curation.data import store
from curation.data.contract import build_table, read_manifest
from curation.data.sources import from_file, from_folder, stratified_split
from curation.data.store import VersionReader, class_mixing, features_numpy
from curation.data.transforms import augment, decode
from curation.errors import CurationError
from curation.training import data
from mlflow import MlflowClient

runner = CliRunner()
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def ok(*args) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def breast_cancer_csv(tmp_path) -> Path:
    """scikit-learn's breast-cancer table as a user would save it: string labels, no split column."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.copy()
    frame["diagnosis"] = bunch.target_names[bunch.target]
    path = tmp_path / "breast_cancer.csv"
    frame.to_csv(path, index=False)
    return path


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits_images(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The first 400 of scikit-learn's digits as 8x8 grayscale PNGs: a folder (one subfolder per class name)
    and a Parquet file of PNG bytes with string labels; also the pixels and labels written."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = (bunch.images[:400] * 16).clip(0, 255).astype(np.uint8)
    labels = bunch.target[:400]
    root = tmp_path_factory.mktemp("digits")
    blobs = [_png(p) for p in pixels]
    for i, (blob, label) in enumerate(zip(blobs, labels)):
        folder = root / "folder" / DIGIT_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.png").write_bytes(blob)
    pq.write_table(
        pa.table({"image": pa.array(blobs, pa.binary()), "label": [DIGIT_NAMES[t] for t in labels]}),
        root / "digits.parquet",
    )
    return root / "folder", root / "digits.parquet", pixels, labels


# labels and splits


def test_labels_of_any_type_are_encoded_in_sorted_order():
    table = build_table(np.ones((4, 2)), np.array(["dog", "cat", "dog", "emu"]))
    assert table.column("label").to_pylist() == [1, 0, 1, 2]
    assert read_manifest(table.schema)["class_names"] == ["cat", "dog", "emu"]
    signed = build_table(np.ones((3, 2)), np.array([1, -1, 1]))
    assert signed.column("label").to_pylist() == [1, 0, 1] and read_manifest(signed.schema)["class_names"] == [-1, 1]
    indices = build_table(np.ones((3, 2)), np.array([0, 3, 3]))  # class indices already: kept as they are
    assert indices.column("label").to_pylist() == [0, 3, 3]
    assert read_manifest(indices.schema)["class_names"] == [0, 1, 2, 3]
    with pytest.raises(CurationError, match="mixed types"):
        build_table(np.ones((2, 2)), np.array(["a", 1], dtype=object))
    with pytest.raises(CurationError, match="split names \\['val'\\] \\(allowed: train, test\\)"):
        build_table(np.ones((2, 2)), np.array([0, 1]), split=["train", "val"])


def test_stratified_split_is_seeded_and_keeps_class_shares():
    labels = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    split = stratified_split(labels, 0.2, 7)
    assert {c: int(((labels == c) & (split == "test")).sum()) for c in "abc"} == {"a": 10, "b": 6, "c": 4}
    assert (stratified_split(labels, 0.2, 7) == split).all()
    assert (stratified_split(labels, 0.2, 8) != split).any()
    tiny = stratified_split(np.array(["a", "b", "b"]), 0.5, 0)  # a class of one row stays in train
    assert tiny[0] == "train" and (tiny[1:] == "test").sum() == 1


def test_breast_cancer_csv_with_string_labels_and_no_split_end_to_end(settings, breast_cancer_csv):
    info = ok("data", "add", breast_cancer_csv, "--label-column", "diagnosis")
    assert info["created"] and info["rows"] == 569 and info["classes"] == [0, 1]
    assert info["splits"] == {"test": 113, "train": 456}  # 20% of each class: 42 of 212 malignant, 71 of 357 benign
    assert info["source"]["test_fraction"] == 0.2 and info["source"]["split_seed"] == 0
    again = ok("data", "add", breast_cancer_csv, "--label-column", "diagnosis")
    assert not again["created"] and again["content_hash"] == info["content_hash"]  # deterministic split and encoding

    shown = ok("data", "show", info["id"])
    assert shown["class_names"] == ["benign", "malignant"] and shown["transform"]["kind"] == "standardize"
    human = cli("data", "show", info["id"], "--head", "2")
    assert "malignant" in human.stdout and "benign" in human.stdout

    reader = VersionReader(settings.home / info["path"])
    train = features_numpy(reader.read(["features"], split="train"))
    assert np.allclose(train.mean(axis=0), 0, atol=1e-4) and np.allclose(train.std(axis=0), 1, atol=1e-3)
    raw = reader.read_group(0, ["features"])  # the stored bytes stay raw: the transform is applied on read
    assert features_numpy(raw).max() > 100

    outcome = ok("train", info["id"], "--arch", "mlp", "--epochs", "2", "--device", "cpu")
    assert outcome["summary"]["final_accuracy"] > 0.8
    run = MlflowClient(settings.tracking).get_run(outcome["mlflow_run_id"])
    assert json.loads(run.data.params["class_names"]) == ["benign", "malignant"]
    artifact = MlflowClient(settings.tracking).download_artifacts(
        outcome["mlflow_run_id"], "classes.json", str(settings.home)
    )
    assert json.loads(Path(artifact).read_text())["class_names"] == ["benign", "malignant"]


def test_class_mixing_tells_rows_grouped_by_label_from_shuffled_ones():
    rng = np.random.default_rng(0)
    for classes, rows in ((2, 100), (10, 5000), (1000, 1365)):
        labels = rng.integers(0, classes, rows * 8)
        groups = np.split(labels, 8)
        assert 0.9 < class_mixing([np.bincount(g) for g in groups]) < 1.1
        assert class_mixing([np.bincount(g) for g in np.split(np.sort(labels), 8)]) < 0.3
    assert class_mixing([np.bincount([0, 0, 1])]) == 1.0  # one row group: nothing to mix


def test_rows_grouped_by_label_are_warned_at_ingest(settings, breast_cancer_csv, tmp_path, monkeypatch):
    """A streamed epoch mixes a few row groups at a time: a file sorted by label gets a warning, as-is rows none."""
    import pandas as pd

    monkeypatch.setattr(store, "group_rows", lambda schema: 64)  # 569 rows: 9 row groups
    by_label = tmp_path / "by_label.csv"
    pd.read_csv(breast_cancer_csv).sort_values("diagnosis", kind="stable").to_csv(by_label, index=False)
    grouped = cli("data", "add", by_label, "--label-column", "diagnosis")
    assert grouped.exit_code == 0 and "grouped by label" in grouped.stderr and "--data-path memory" in grouped.stderr
    as_is = cli("data", "add", breast_cancer_csv, "--label-column", "diagnosis")
    assert as_is.exit_code == 0 and "grouped by label" not in as_is.stderr


def test_without_standardize_features_are_read_as_stored(settings, breast_cancer_csv):
    info = ok(
        "data",
        "add",
        breast_cancer_csv,
        "--label-column",
        "diagnosis",
        "--no-standardize",
        "--test-fraction",
        "0.3",
        "--seed",
        "3",
    )
    reader = VersionReader(settings.home / info["path"])
    assert reader.transform is None and features_numpy(reader.read(["features"])).max() > 100
    assert info["splits"]["test"] == 171 and info["source"]["split_seed"] == 3


# images


def _pixels_back(features: np.ndarray, transform: dict) -> np.ndarray:
    """Undo the normalization: pixel values 0..255 as the PNGs held them."""
    return np.rint((features * transform["std"][0] + transform["mean"][0]) * 255)


def test_digits_image_folder_end_to_end(settings, digits_images):
    folder, _, pixels, labels = digits_images
    info = ok("data", "add", folder, "--name", "digits-png")
    assert info["feature_shape"] == [1, 8, 8] and info["rows"] == 400 and info["classes"] == list(range(10))
    assert "image" in info["schema_columns"] and "features" not in info["schema_columns"]
    assert not ok("data", "add", folder, "--name", "digits-png")["created"]
    shown = ok("data", "show", "digits-png")
    assert shown["class_names"] == sorted(DIGIT_NAMES) and shown["transform"]["channels"] == 1

    reader = VersionReader(settings.home / info["path"])
    table = reader.read(["sample_id", "label", "features"])
    names = np.array(shown["class_names"])[table.column("label").to_numpy()]
    # the folder's files are numbered with the classes interleaved: file i of a class of n at (i + 0.5) / n
    written = np.array(DIGIT_NAMES)[labels]
    classes = np.unique(written, return_inverse=True)[1]
    within = np.array([(written[:j] == written[j]).sum() for j in range(400)])
    share = (within + 0.5) / np.bincount(classes)[classes]
    order = np.lexsort((classes, share))
    assert (names == np.array(DIGIT_NAMES)[labels][order]).all()
    assert (_pixels_back(features_numpy(table), shown["transform"]) == pixels[order].reshape(400, -1)).all()

    outcome = ok(
        "train",
        "digits-png",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--workers",
        "2",
        "--augment",
        "crop",
        "--device",
        "cpu",
    )
    assert outcome["config"]["arch"] == "resnet2d" and outcome["config"]["augment"] == "crop"
    run = MlflowClient(settings.tracking).get_run(outcome["mlflow_run_id"])
    assert json.loads(run.data.params["class_names"]) == sorted(DIGIT_NAMES)
    assert outcome["summary"]["final_accuracy"] > 0.5  # 40 steps on 320 images: well above chance (0.1)


def test_digits_parquet_of_png_bytes_decodes_to_the_written_pixels(settings, digits_images, monkeypatch):
    _, parquet, pixels, labels = digits_images
    info = ok("data", "add", parquet, "--label-column", "label")
    reader = VersionReader(settings.home / info["path"])
    table = reader.read(["sample_id", "label", "features"])
    names = np.array(reader.manifest["class_names"])[table.column("label").to_numpy()]
    assert (names == np.array(DIGIT_NAMES)[labels]).all()
    assert (_pixels_back(features_numpy(table), reader.transform) == pixels.reshape(400, -1)).all()
    # take() decodes the same way, in the asked-for order
    some = reader.take([5, 3, 5], ["features"])
    assert np.array_equal(features_numpy(some), features_numpy(table)[[5, 3, 5]])
    # 320 train digits decode here in less time than two decoding workers take to start: no worker starts
    here = pa.concat_tables(data.split_tables(reader, "train", workers=0))
    started = []
    loader = data.worker_loader
    monkeypatch.setattr(data, "worker_loader", lambda *args, **kwargs: started.append(args) or loader(*args, **kwargs))
    assert pa.concat_tables(data.split_tables(reader, "train", workers=2)).equals(here) and not started
    # where the rest would take longer here, two DataLoader worker processes decode it, to the same tables
    monkeypatch.setattr(data, "WORKER_START_SECONDS", 0.0)
    assert pa.concat_tables(data.split_tables(reader, "train", workers=2)).equals(here) and len(started) == 1


def test_images_resized_to_one_size_and_rgb_kept(tmp_path):
    rng = np.random.default_rng(0)
    for name, size in [("a", (10, 12)), ("a", (6, 6)), ("b", (8, 8)), ("b", (9, 7))]:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"{size}.png").write_bytes(_png(rng.integers(0, 255, (*size, 3))))
    loaded = from_folder(tmp_path, test_fraction=0.5, image_size=[4, 5])
    table = loaded.whole()  # streamed: read a batch of images at a time
    m = read_manifest(table.schema)
    assert m["feature_shape"] == [3, 4, 5] and m["transform"]["size"] == [4, 5]
    assert decode(table.column("image").to_pylist(), m["transform"]).shape == (4, 3, 4, 5)


def test_augment_crops_and_flips_per_sample_reproducibly():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    first = augment(x, torch.Generator().manual_seed(0))
    assert first.shape == x.shape and torch.equal(first, augment(x, torch.Generator().manual_seed(0)))
    none = augment(x, torch.Generator().manual_seed(0), flip=False, pad=0)
    assert torch.equal(none, x)
    flipped = [augment(x[:1], torch.Generator().manual_seed(s), pad=0) for s in range(8)]
    assert any(torch.equal(f, x[:1].flip(-1)) for f in flipped) and any(torch.equal(f, x[:1]) for f in flipped)
    shifted = augment(x, torch.Generator().manual_seed(1), flip=False)  # pad 1 on 4x4, edges repeated
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    assert all(
        any(torch.equal(s, padded[i, :, a : a + 4, b : b + 4]) for a in range(3) for b in range(3))
        for i, s in enumerate(shifted)
    )


def test_resnet2d_is_the_default_for_image_versions():
    from models import ModelSpec, build, default_for

    assert default_for([1, 8, 8], images=True) == "resnet2d" and default_for([1, 8, 8]) == "lenet5"
    model = build("resnet2d", ModelSpec(64, (1, 8, 8), 10))
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert build("resnet2d", ModelSpec(3 * 32 * 32, (3, 32, 32), 4))(torch.zeros(2, 3, 32, 32)).shape == (2, 4)


def test_tabular_file_with_label_names_in_a_parquet(tmp_path):
    path = tmp_path / "wine.parquet"
    from sklearn.datasets import load_wine

    bunch = load_wine()
    pq.write_table(
        pa.table(
            {
                "alcohol": bunch.data[:, 0],
                "malic": bunch.data[:, 1],
                "label": pa.array(bunch.target_names[bunch.target]).dictionary_encode(),
            }
        ),
        path,
    )
    loaded = from_file(path)
    m = read_manifest(loaded.schema)
    assert m["class_names"] == ["class_0", "class_1", "class_2"] and m["splits"]["test"] == 36


def test_images_are_added_a_batch_at_a_time_and_batching_does_not_change_the_version(tmp_path, monkeypatch):
    import tracemalloc

    from curation.data import images, store, transforms
    from curation.data.store import stage

    rng = np.random.default_rng(1)

    def folder(n: int) -> Path:  # n incompressible 32x32 RGB PNGs (3 KB each), 3 classes
        root = tmp_path / f"noise{n}"
        for i in range(n):
            (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
            (root / f"c{i % 3}" / f"{i:04d}.png").write_bytes(_png(rng.integers(0, 255, (32, 32, 3))))
        return root

    def peak_adding(root: Path, where: str):
        tracemalloc.start()
        loaded = from_folder(root)
        staged = stage(loaded.schema, loaded.tables(), tmp_path / where)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return loaded, staged, peak

    monkeypatch.setattr(images, "BATCH_IMAGES", 50)
    monkeypatch.setattr(store, "IMAGE_ROW_GROUP", 128)
    monkeypatch.setattr(transforms, "DECODE_BATCH", 50)  # small decode buffers: the encoded images would show
    few, many = folder(300), folder(2_400)
    peak_adding(few, "warm-up")  # imports and caches, once
    peak_few = peak_adding(few, "few")[2]
    loaded, staged, peak_many = peak_adding(many, "many")
    assert loaded.table is None and max(t.num_rows for t in loaded.read()) == 50
    # 8x the images, not 8x the memory (all of them at once: 4x here; a batch at a time: 1.3x, the file list)
    assert peak_many < 1.5 * peak_few, (peak_few, peak_many)
    assert np.diff(VersionReader(staged.path).group_starts).tolist() == [128] * 18 + [96]  # in two shards
    assert len(VersionReader(staged.path).files) == 2

    monkeypatch.setattr(images, "BATCH_IMAGES", 1_000)
    whole = stage(*((again := from_folder(many)).schema, again.tables()), tmp_path / "whole")
    assert whole.content_hash == staged.content_hash  # how the images were batched leaves no trace
