"""``frcnn.utils.compile.cache_dir``: compiled kernels outlive /tmp unless the user chose a folder."""

from pathlib import Path

from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from frcnn.utils.compile import CACHE_ENV, cache_dir


def test_the_kernel_cache_is_the_users_choice_or_under_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_dir() == tmp_path / "cache" / "frcnn" / "inductor"
    monkeypatch.setenv(CACHE_ENV, default_cache_dir())  # what Inductor writes there itself: not a choice
    assert cache_dir() == tmp_path / "cache" / "frcnn" / "inductor"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == Path(tmp_path / "mine")
