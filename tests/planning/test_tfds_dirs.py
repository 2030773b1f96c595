"""planning/tfds_dirs.py: builder dirs on disk (incomplete ones skipped), one version per config,
task globs that must each match, and train shards that must all be present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planning.tfds_dirs import (
    MAX_LISTED_NAMES,
    BuilderDir,
    builder_dir_from_info,
    existing_dir,
    find_builder_dirs,
    listing,
    load_infos,
    pick_versions,
    select_builders,
    train_shard_lengths,
    train_shards,
)
from tests import tfds_fixtures as fx


def _fake_builder(root: Path, name: str, config: str, version: str, *, parent: str | None = None) -> Path:
    """A builder dir holding only dataset_info.json (enough to be found)."""
    path = root / name / config / (parent or version) if config else root / name / (parent or version)
    path.mkdir(parents=True)
    (path / "dataset_info.json").write_text(json.dumps({"name": name, "configName": config, "version": version}))
    return path


def _b(name: str, config: str, version: str) -> BuilderDir:
    return BuilderDir(name, config, version, f"/d/{name}/{config}/{version}")


def test_existing_dir_says_what_and_where(tmp_path: Path) -> None:
    assert existing_dir(str(tmp_path), what="data dir") == str(tmp_path)
    with pytest.raises(ValueError, match=f"data dir does not exist: looked in {tmp_path / 'no'}"):
        existing_dir(str(tmp_path / "no"), what="data dir")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=f"data dir is not a directory: {tmp_path / 'f'}"):
        existing_dir(str(tmp_path / "f"), what="data dir")


def test_find_builder_dirs_with_and_without_configs_skipping_incomplete_ones(tmp_path: Path) -> None:
    _fake_builder(tmp_path, "ds", "b", "1.0.0")
    _fake_builder(tmp_path, "ds", "a", "1.0.0")
    _fake_builder(tmp_path, "ds", "a", "2.0.0")
    _fake_builder(tmp_path, "ds", "c", "1.0.0", parent="incomplete.1.0.0")
    _fake_builder(tmp_path, "plain", "", "0.1.0")
    found = find_builder_dirs(str(tmp_path / "ds"), "ds")
    assert [(b.tfds_name, b.config, b.version) for b in found] == [("ds", "a", "1.0.0"), ("ds", "a", "2.0.0"),
                                                                    ("ds", "b", "1.0.0")]
    # No TFDS name given: <name>/<config>/<version> and <name>/<version> below the base.
    anywhere = find_builder_dirs(str(tmp_path), None)
    assert [(b.tfds_name, b.config) for b in anywhere] == [("ds", "a"), ("ds", "a"), ("ds", "b"), ("plain", "")]
    assert find_builder_dirs(str(tmp_path / "missing"), "x") == []


def test_builder_dir_from_info_falls_back_to_the_directory_names(tmp_path: Path) -> None:
    path = tmp_path / "robot" / "3.1.0"
    path.mkdir(parents=True)
    (path / "dataset_info.json").write_text("{}")
    assert builder_dir_from_info(str(path)) == BuilderDir("robot", "", "3.1.0", str(path))


def test_pick_versions_takes_the_required_one_else_the_newest_numerically() -> None:
    found = [_b("d", "a", "1.9.0"), _b("d", "a", "1.10.0"), _b("d", "b", "1.0.0"), _b("d", "a", "1.2.0")]
    assert [(b.config, b.version) for b in pick_versions(found, None)] == [("a", "1.10.0"), ("b", "1.0.0")]
    assert [(b.config, b.version) for b in pick_versions(found, "1.2.0")] == [("a", "1.2.0")]
    assert pick_versions(found, "9.9.9") == []


def test_listing_cuts_at_twenty_names_and_counts_them() -> None:
    assert MAX_LISTED_NAMES == 20
    assert listing([]) == "none"
    assert listing(["a", "b"]) == "[a, b] (2 in all)"
    names = [f"t{i}" for i in range(21)]
    assert listing(names) == "[" + ", ".join(names[:20]) + ", ...] (21 in all)"
    assert listing(names[:20]) == "[" + ", ".join(names[:20]) + "] (20 in all)"


def _select(on_disk, globs, **kw):
    args = dict(dataset="ds", where="/d", known=[], other_versions=[], version=None)
    args.update(kw)
    return select_builders(on_disk, globs, **args)


def test_globs_match_configs_or_task_names_and_select_each_builder_once() -> None:
    on_disk = [_b("ds", "reach", "1"), _b("ds", "push", "1"), _b("other", "reach", "1")]
    assert [(b.tfds_name, b.config) for b in _select(on_disk, ["reach", "ds/*"])] == [
        ("ds", "push"), ("ds", "reach"), ("other", "reach")]
    assert [b.config for b in _select(on_disk, ["p?sh"])] == ["push"]


def test_every_glob_must_match_and_the_error_lists_what_exists() -> None:
    on_disk = [_b("ds", "reach", "1")]
    with pytest.raises(ValueError) as e:
        _select(on_disk, ["reach", "pick-*", "REACH"], version="1.0.0")
    message = str(e.value)
    assert message.startswith("task glob 'pick-*' matches no task of 'ds' under /d (version 1.0.0); "
                              "task glob 'REACH' matches no task")  # case-sensitive
    assert message.endswith(". Tasks on disk: [ds/reach] (1 in all)")
    with pytest.raises(ValueError) as e:
        _select([], ["Pong*"], known=["rlu/Pong_1", "rlu/Pong_2", "rlu/Alien"], other_versions=["rlu/Pong_1 (0.9)"])
    assert str(e.value) == (
        "task glob 'Pong*' matches no task of 'ds' under /d (2 known tasks match it, none on disk). "
        "Tasks on disk: none; found other versions only: [rlu/Pong_1 (0.9)] (1 in all); "
        "known tasks: [rlu/Pong_1, rlu/Pong_2, rlu/Alien] (3 in all)"
    )


def test_train_shards_are_the_listed_files_and_must_all_exist(tmp_path: Path) -> None:
    builder = fx.write_rlds_dataset(tmp_path, "ds", "c", fx.metaworld_features(),
                                    [fx.metaworld_episode(i, 2) for i in range(2)], num_shards=2)
    [info] = load_infos([builder_dir_from_info(str(builder))])
    shards = train_shards(info, str(builder))
    assert [Path(s).name for s in shards] == ["ds-train.tfrecord-00000-of-00002", "ds-train.tfrecord-00001-of-00002"]
    assert train_shard_lengths(info) == {shards[0]: 1, shards[1]: 1}
    Path(shards[1]).unlink()
    with pytest.raises(ValueError, match=r"1 of 2 train shards listed in dataset_info.json are missing, e.g. .*00001-of-00002"):
        train_shards(info, str(builder))


def test_an_unreadable_builder_dir_is_one_start_up_error(tmp_path: Path) -> None:
    broken = _fake_builder(tmp_path, "ds", "c", "1.0.0")
    with pytest.raises(ValueError, match=f"cannot open TFDS builder dir {broken}"):
        load_infos([builder_dir_from_info(str(broken))])
