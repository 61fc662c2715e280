"""Shards, atomic shard files, resumption and exact merging (relevance.evaluation.sharding), in one process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from relevance.evaluation.sharding import Runtime, ShardMismatchError, ShardPlan, ShardStore, run_shards


def test_shards_cover_every_sample_once_in_order():
    plan = ShardPlan(total=11, shard_size=4)
    assert plan.num_shards == 3
    assert [list(plan.indices(k)) for k in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    for world in (1, 2, 3, 5):
        owned = [plan.owned_by(rank, world) for rank in range(world)]
        assert sorted(k for shards in owned for k in shards) == [0, 1, 2]  # each shard by exactly one rank
    assert plan.owned_by(1, 2) == [1]
    with pytest.raises(IndexError):
        plan.indices(3)
    with pytest.raises(ValueError):
        ShardPlan(0, 4)


def _squares(indices: range, advance=None) -> dict[str, np.ndarray]:
    values = np.arange(indices.start, indices.stop)
    return {"index": values, "square": values ** 2, "pair": np.stack([values, -values], 1)}


def test_run_merges_in_sample_order_and_leaves_no_temporary_files(tmp_path):
    store = ShardStore(tmp_path / "shards", {"protocol": "squares"})
    merged = run_shards(ShardPlan(7, 3), store, Runtime(), _squares, progress=False, log=lambda _: None)
    assert merged["index"].tolist() == list(range(7))
    assert merged["square"].tolist() == [i * i for i in range(7)]
    assert merged["pair"].shape == (7, 2)
    files = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert files == ["manifest.json", "shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text()) == {"protocol": "squares"}


def test_finished_shards_are_not_computed_again(tmp_path):
    plan = ShardPlan(7, 3)
    store = ShardStore(tmp_path / "shards", {"protocol": "squares"})
    store.check()
    # a run that died after shard 1: shard 1's file holds values the computation would not give
    store.write(1, {"index": np.arange(3, 6), "square": np.array([-1, -1, -1]), "pair": np.zeros((3, 2), int)})
    computed, messages = [], []

    def compute(indices, advance):
        computed.append(indices.start)
        return _squares(indices)

    merged = run_shards(plan, store, Runtime(), compute, progress=False, log=messages.append)
    assert computed == [0, 6]  # shards 0 and 2 only
    assert merged["square"].tolist() == [0, 1, 4, -1, -1, -1, 36]  # shard 1 was read, not recomputed
    assert "resuming: 1 of 3 shards already done" in messages[0]
    # a second run computes nothing
    assert run_shards(plan, store, Runtime(), compute, progress=False, log=messages.append)["square"][3] == -1
    assert computed == [0, 6]


def test_other_settings_are_refused_and_missing_shards_named(tmp_path):
    store = ShardStore(tmp_path / "shards", {"protocol": "squares", "methods": ["a"]})
    run_shards(ShardPlan(4, 2), store, Runtime(), _squares, progress=False, log=lambda _: None)
    other = ShardStore(tmp_path / "shards", {"protocol": "squares", "methods": ["a", "b"]})
    with pytest.raises(ShardMismatchError, match="differing: methods"):
        run_shards(ShardPlan(4, 2), other, Runtime(), _squares, progress=False, log=lambda _: None)
    store.path(1).unlink()
    with pytest.raises(RuntimeError, match=r"shards \[1\] of 2 are missing"):
        store.merge(ShardPlan(4, 2))


def test_a_shard_whose_arrays_differ_in_length_is_an_error(tmp_path):
    store = ShardStore(tmp_path / "shards", {})
    store.check()
    store.write(0, {"index": np.arange(2), "value": np.arange(2)})
    store.write(1, {"index": np.arange(2), "value": np.arange(3)})
    with pytest.raises(RuntimeError, match="differ in length"):
        store.merge(ShardPlan(4, 2))


def test_only_rank_zero_merges(tmp_path):
    """Rank 1 of 2 (without a process group: its barrier is skipped here) computes its shards and returns None."""
    store = ShardStore(tmp_path / "shards", {})
    computed = []

    def compute(indices, advance):
        computed.append(indices.start)
        return _squares(indices)

    assert run_shards(ShardPlan(6, 2), store, Runtime(rank=1, world_size=2), compute, progress=False) is None
    assert computed == [2]  # shard 1 of 0..2
    assert not (tmp_path / "shards" / "manifest.json").exists()  # rank 0 writes the manifest


def test_rank_zero_merges_only_after_the_barrier(tmp_path):
    """Rank 0 of 2 computes shard 0; shard 1 (the other rank's) appears while rank 0 waits at the barrier. Merging
    before the barrier would find it missing."""
    plan = ShardPlan(4, 2)
    store = ShardStore(tmp_path / "shards", {})
    events = []

    class OtherRankFinishesDuringTheBarrier(Runtime):
        def barrier(self):
            events.append("barrier")
            store.write(1, _squares(plan.indices(1)))

    def compute(indices, advance):
        events.append(f"shard {indices.start // 2}")
        return _squares(indices)

    merged = run_shards(plan, store, OtherRankFinishesDuringTheBarrier(rank=0, world_size=2), compute,
                        progress=False, log=lambda _: None)
    assert events == ["shard 0", "barrier"]
    assert merged["index"].tolist() == [0, 1, 2, 3]
