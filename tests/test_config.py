"""Settings: embedded defaults, the config file, CURATION_* variables, one-line errors."""

import pytest

from curation.config import load_settings
from curation.errors import CurationError


def test_defaults_live_in_home(home):
    s = load_settings()
    assert s.home == home.resolve()
    assert s.catalog == f"sqlite:///{home / 'catalog.db'}"
    assert s.tracking == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert s.data_path == home / "data"


def test_file_then_environment_override(home, monkeypatch):
    (home / "curation.toml").write_text('data_dir = "store"\nseed = 7\ncatalog_url = "sqlite:////tmp/x.db"\n')
    s = load_settings()
    assert (s.data_path, s.seed, s.catalog) == (home / "store", 7, "sqlite:////tmp/x.db")
    monkeypatch.setenv("CURATION_SEED", "9")
    assert load_settings().seed == 9


def test_explicit_config_file(home, tmp_path, monkeypatch):
    other = tmp_path / "other.toml"
    other.write_text("dvc = false\n")
    monkeypatch.setenv("CURATION_CONFIG", str(other))
    assert load_settings().dvc is False
    monkeypatch.setenv("CURATION_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(CurationError, match="does not exist"):
        load_settings()


@pytest.mark.parametrize(
    "content, match", [("seed = -1\n", "seed"), ("bogus = 1\n", "bogus"), ('seed = "many"\n', "seed")]
)
def test_bad_settings_are_one_line(home, content, match):
    (home / "curation.toml").write_text(content)
    with pytest.raises(CurationError, match=match) as info:
        load_settings()
    assert "\n" not in str(info.value)
