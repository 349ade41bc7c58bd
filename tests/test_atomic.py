import pytest

from s2dit.atomic import atomic_path, remove_stale_temporaries, write_text_atomic


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".tmp-*"))
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_temporary_keeps_the_suffix_and_stale_ones_are_removed(tmp_path):
    with atomic_path(tmp_path / "v.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.name.startswith(".tmp-")
        tmp.write_bytes(b"x")
    (tmp_path / ".tmp-left.mp4").write_bytes(b"x")
    (tmp_path / ".tmp-other.mp4.abc").write_bytes(b"x")
    (tmp_path / ".tmp-v.mp4.def").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, ["v.mp4", "[v].mp4"]) == 1  # names only, globs escaped
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_atomic_folder_replaces_the_whole_folder_only_on_success(tmp_path):
    from s2dit.atomic import atomic_folder

    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "a.bin").write_text("old a")
        (tmp / "only-old.bin").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "a.bin").write_text("half")
        raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in target.iterdir()) == ["a.bin", "only-old.bin"]
    assert (target / "a.bin").read_text() == "old a"
    with atomic_folder(target) as tmp:
        (tmp / "a.bin").write_text("new a")
    assert sorted(p.name for p in target.iterdir()) == ["a.bin"]  # the new folder, not a merge
    assert (target / "a.bin").read_text() == "new a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporaries left


def test_atomic_folder_cleans_up_after_an_interrupted_swap(tmp_path):
    from s2dit.atomic import atomic_folder

    (tmp_path / ".tmp-model.abc").mkdir()  # what a kill mid-save leaves
    (tmp_path / ".tmp-model.abc" / "x").write_text("x")
    (tmp_path / ".tmp-other.mp4").write_text("x")
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "a.bin").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-other.mp4", "model"]
    (tmp_path / ".tmp-model.def").mkdir()
    assert remove_stale_temporaries(tmp_path) == 2  # folders too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
