"""The feature cache (benchmark/engine/feature_cache.py): cached = live features, reuse and
invalidation, crash safety, training from cached features, pickling for loader workers."""
import os

import pytest
import torch

from benchmark.backbones import build_backbone
from benchmark.engine.feature_cache import CachedFeatureDataset, FeatureCache
from scenarios.folder import FolderSegmentationDataset


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("sam_small", checkpoint=None)


@pytest.fixture()
def dataset(tmp_path, tiny_domain):
    root = tiny_domain(tmp_path / "dom", split="train", n=5, size=48)
    return FolderSegmentationDataset(root, "train", image_size=256, domain_index=0)


def test_cached_features_equal_live_features(backbone, dataset, tmp_path):
    cache = FeatureCache(tmp_path / "cache", progress=False, batch_size=2)
    view = cache.view(backbone, dataset, "block6")
    assert isinstance(view, CachedFeatureDataset) and len(view) == len(dataset)
    item = view[3]
    assert "image" not in item and set(item["features"]) == {"tokens"}
    live = backbone.features_at(dataset[3]["image"][None], "block6")["tokens"][0]
    assert torch.allclose(item["features"]["tokens"], live, atol=1e-5)
    assert torch.equal(item["mask"], dataset[3]["mask"])


def test_several_taps_in_one_pass_equal_one_pass_each(backbone, dataset, tmp_path):
    """``features_at_taps`` keeps what ``features_at`` gives per tap, bit for bit, and the cache
    builds the missing taps of a dataset together into the same entries as one at a time."""
    images = torch.stack([dataset.load_image(i) for i in range(3)])
    taps = ["neck", "image", "block6", "block2"]
    together = backbone.features_at_taps(images, taps)
    assert sorted(together) == sorted(taps)
    for tap in taps:
        alone = backbone.features_at(images, tap)
        assert sorted(together[tap]) == sorted(alone)
        assert all(torch.equal(together[tap][k], alone[k]) for k in alone), tap
    joint = FeatureCache(tmp_path / "joint", progress=False, batch_size=2)
    single = FeatureCache(tmp_path / "single", progress=False, batch_size=2)
    views = joint.views(backbone, dataset, ["block6", "neck"])
    for tap in ("block6", "neck"):
        one = single.view(backbone, dataset, tap)
        assert joint.entry_dir(backbone, dataset, tap).name == single.entry_dir(backbone, dataset, tap).name
        for i in range(len(dataset)):
            a, b = views[tap][i]["features"], one[i]["features"]
            assert all(torch.equal(a[k], b[k]) for k in b), (tap, i)
    built = os.stat(joint.entry_dir(backbone, dataset, "neck") / "meta.json").st_mtime_ns
    joint.views(backbone, dataset, ["neck", "block6"])  # both present: nothing rebuilt
    assert os.stat(joint.entry_dir(backbone, dataset, "neck") / "meta.json").st_mtime_ns == built


def test_cache_is_reused_and_invalidated_by_file_changes(backbone, dataset, tmp_path):
    cache = FeatureCache(tmp_path / "cache", progress=False)
    first = cache.entry_dir(backbone, dataset, "neck")
    cache.view(backbone, dataset, "neck")
    mtime = os.stat(first / "meta.json").st_mtime_ns
    cache.view(backbone, dataset, "neck")  # reused, not rebuilt
    assert os.stat(first / "meta.json").st_mtime_ns == mtime
    assert cache.entry_dir(backbone, dataset, "block6") != first  # another tap, another entry
    image = dataset.files()[0]
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert cache.entry_dir(backbone, dataset, "neck") != first
    fp16 = FeatureCache(tmp_path / "cache", dtype="float16", progress=False)
    assert fp16.entry_dir(backbone, dataset, "neck") != first
    half = fp16.view(backbone, dataset, "neck")[0]["features"]["image_embed"]
    full = cache.view(backbone, dataset, "neck")[0]["features"]["image_embed"]
    assert half.dtype == torch.float16 and torch.allclose(half.float(), full, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype,torch_dtype", [("float16", torch.float16), ("bfloat16", torch.bfloat16)])
def test_half_caches_serve_their_dtype_and_widen_on_the_device(backbone, dataset, tmp_path, dtype,
                                                               torch_dtype):
    """A half-size entry holds the float32 features rounded to its dtype (bfloat16 as int16 bits),
    its items carry that dtype (half the bytes to load and copy), and ``to_device`` widens them to
    float32 after the copy, exactly."""
    from scenarios.stream import collate_samples, to_device

    full = FeatureCache(tmp_path / "full", progress=False).view(backbone, dataset, "block6")
    half_cache = FeatureCache(tmp_path / "half", dtype=dtype, progress=False)
    half = half_cache.view(backbone, dataset, "block6")
    entry = half_cache.entry_dir(backbone, dataset, "block6")
    assert (entry / "tokens.npy").stat().st_size < 0.6 * sum(f.stat().st_size for f in
                                                               (tmp_path / "full").glob("*/tokens.npy"))
    items = [half[i] for i in range(3)]
    for i, item in enumerate(items):
        tokens = item["features"]["tokens"]
        assert tokens.dtype == torch_dtype
        assert torch.equal(tokens, full[i]["features"]["tokens"].to(torch_dtype))
    batch = to_device(collate_samples(items), "cpu")
    tokens = batch["features"]["tokens"]
    assert tokens.dtype == torch.float32
    assert torch.equal(tokens, torch.stack([it["features"]["tokens"] for it in items]).float())
    assert batch["mask"].dtype == items[0]["mask"].dtype  # other tensors keep their dtype


def test_crash_during_build_leaves_no_entry(backbone, dataset, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache", progress=False, batch_size=2)
    original = dataset.load_image

    def flaky(i):
        if i == 3:
            raise RuntimeError("simulated crash")
        return original(i)

    monkeypatch.setattr(dataset, "load_image", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.view(backbone, dataset, "neck")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(dataset, "load_image", original)
    view = cache.view(backbone, dataset, "neck")
    assert len(view) == len(dataset)


def test_training_from_cache_equals_training_from_images(backbone, dataset, tmp_path):
    """finetune_decoder trained on cached neck features ends with the same weights as from images."""
    import copy

    from benchmark.core.registry import get_method
    from scenarios.stream import to_avalanche

    cls = get_method("finetune_decoder")
    cache = FeatureCache(tmp_path / "cache", progress=False)
    results = []
    for data in (dataset, cache.view(backbone, dataset, "neck")):
        torch.manual_seed(0)
        strategy = cls(backbone=copy.deepcopy(backbone), domain_names=["d"], n_trained=1,
                       hparams={"epochs": 2, "batch_size": 2}, seed=0)
        scenario = to_avalanche([data], [data])
        strategy.learn_domain(scenario.train_stream[0], 0)
        results.append({k: v.detach().clone() for k, v in strategy.parts.state_dict().items()})
        assert strategy.loss_history, "no training happened"
    live, cached = results
    assert live.keys() == cached.keys()
    for key in live:
        assert torch.allclose(live[key], cached[key], atol=1e-5), key
    # and training did change the decoder
    base = {f"mask_decoder.{k}": v for k, v in backbone.sam.mask_decoder.state_dict().items()}
    assert any(not torch.equal(base[k], live[k]) for k in live)


def test_a_cached_view_pickles_as_its_entry_path(backbone, dataset, tmp_path):
    """DataLoader workers started by spawn/forkserver get the view pickled: it must carry the
    entry's path, not a copy of the memory-mapped features."""
    import pickle

    view = FeatureCache(tmp_path / "cache", progress=False).view(backbone, dataset, "block6")
    features_bytes = sum(a.nbytes for a in view.arrays.values())
    data = pickle.dumps(view)
    assert len(data) < features_bytes / 4
    copy = pickle.loads(data)
    assert copy.entry == view.entry and copy.domain_name == view.domain_name
    assert torch.equal(copy[2]["features"]["tokens"], view[2]["features"]["tokens"])
    assert torch.equal(copy[2]["mask"], view[2]["mask"])


def test_loader_workers_give_the_same_batches(backbone, dataset, tmp_path):
    import multiprocessing

    from torch.utils.data import DataLoader

    from scenarios.stream import collate_samples

    view = FeatureCache(tmp_path / "cache", progress=False).view(backbone, dataset, "block6")
    plain = list(DataLoader(view, batch_size=2, collate_fn=collate_samples))
    spawned = list(DataLoader(view, batch_size=2, collate_fn=collate_samples, num_workers=2,
                              multiprocessing_context=multiprocessing.get_context("spawn")))
    assert len(plain) == len(spawned) == 3
    for a, b in zip(plain, spawned):
        assert torch.equal(a["features"]["tokens"], b["features"]["tokens"])
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["index"], b["index"])
