"""Chunks arriving as versions: parent chain, drift, and refused chunks."""

import numpy as np
import pyarrow as pa
import pytest

from curation.catalog import Catalog
from curation.data.contract import build_table
from curation.data.sources import Loaded
from curation.data.stream import add_chunk, chunks, drifting_mnist1d
from curation.errors import CurationError


@pytest.fixture
def fast(home):
    from curation.config import load_settings

    return load_settings(dvc=False)


def test_chunks_form_a_parent_chain_with_drift(fast):
    infos = [add_chunk(fast, "stream", drifting_mnist1d(c, samples=300, seed=1)) for c in range(3)]
    assert [i.parent_id for i in infos] == [None, infos[0].id, infos[1].id]
    assert [c.id for c in chunks(fast, "stream")] == [i.id for i in infos]
    assert all(set(i.splits) == {"train", "test"} for i in infos)
    first, last = drifting_mnist1d(0, samples=2000, seed=1), drifting_mnist1d(6, samples=2000, seed=1)
    high = lambda t: (t.column("label").to_numpy() >= 5).mean()  # noqa: E731
    assert high(last.table) > high(first.table) + 0.1  # class priors drift toward higher digits


def test_refused_chunks_leave_the_catalog_unchanged(fast):
    add_chunk(fast, "stream", drifting_mnist1d(0, samples=100))
    narrow = Loaded(build_table(np.ones((5, 3)), np.zeros(5, int)), {"kind": "t"}, "x")
    alien = Loaded(
        build_table(np.ones((5, 40)), np.full(5, 11), split=["train"] * 5, chunk=np.ones(5)), {"kind": "t"}, "x"
    )
    empty = Loaded(pa.table({"sample_id": pa.array([], pa.int64())}), {"kind": "t"}, "x")
    cases = [
        (narrow, "differs"),
        (alien, "classes \\[11\\]"),
        (empty, "empty"),
        (drifting_mnist1d(0, samples=100), "already registered"),
    ]
    for loaded, match in cases:
        with pytest.raises(CurationError, match=match):
            add_chunk(fast, "stream", loaded)
    assert len(Catalog(fast.catalog).versions("stream")) == 1
