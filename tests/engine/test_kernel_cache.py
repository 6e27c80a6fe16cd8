"""Numba's on-disk cache is cleared when any source file changes (Numba itself only
notices a change in the file that defines the cached kernel, not in a helper it calls)."""

from __future__ import annotations

import os

from backtester._kernel_cache import STAMP_NAME, refresh


def test_cached_kernels_are_deleted_after_a_source_change_and_kept_otherwise(tmp_path):
    # Arrange: a package with a kernel module, a helper module and cached machine code
    package = tmp_path / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "kernels.py").write_text("x = 1\n")
    (package / "sub" / "helpers.py").write_text("y = 1\n")
    cached = package / "sub" / "__pycache__" / "helpers.f-1.py311.nbi"
    cached.write_bytes(b"old")
    # Act / Assert: the first check has no stamp, so nothing cached is trusted
    refresh(package, cache_dir="")
    assert not cached.exists() and (package / "__pycache__" / STAMP_NAME).exists()
    cached.write_bytes(b"compiled from these sources")
    refresh(package, cache_dir="")
    assert cached.exists()  # nothing changed: kept
    helper = package / "sub" / "helpers.py"
    helper.write_text("y = 2\n")  # only the helper changes, as after a git pull
    os.utime(helper, ns=(1, 1))
    refresh(package, cache_dir="")
    assert not cached.exists()


def test_a_numba_cache_dir_is_refreshed_where_numba_keeps_the_kernels(tmp_path):
    # Arrange: NUMBA_CACHE_DIR set: Numba names each source folder's cache
    # "<folder>_<sha1 of its absolute path>" (numba.core.caching.UserProvidedCacheLocator)
    from numba.core.caching import UserProvidedCacheLocator

    package, cache_dir = tmp_path / "pkg", tmp_path / "numba-cache"
    (package / "sub").mkdir(parents=True)
    (package / "kernels.py").write_text("x = 1\n")
    helper = package / "sub" / "helpers.py"
    helper.write_text("y = 1\n")
    subpath = UserProvidedCacheLocator.get_suitable_cache_subpath(str(helper))
    cached = cache_dir / subpath / "helpers.f-1.py311.nbi"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"old")
    in_tree = package / "sub" / "__pycache__" / "helpers.f-1.py311.nbi"
    in_tree.parent.mkdir()
    in_tree.write_bytes(b"another cache")
    # Act / Assert: cleared at the first check, kept while nothing changes, cleared again
    refresh(package, cache_dir=str(cache_dir))
    assert not cached.exists() and in_tree.exists()  # only the cache Numba reads
    cached.write_bytes(b"compiled from these sources")
    refresh(package, cache_dir=str(cache_dir))
    assert cached.exists()
    helper.write_text("y = 2\n")
    os.utime(helper, ns=(1, 1))
    refresh(package, cache_dir=str(cache_dir))
    assert not cached.exists()
