"""The worked example of docs/adding-a-method.md (examples/my_method.py) trains only the mask
decoder's biases. (Run through the CLI: e2e/test_adding_a_method.py.)"""
import copy

import torch


def test_example_trains_only_the_decoder_biases(tmp_path, tiny_domain, repo_root):
    from benchmark.backbones import build_backbone
    from benchmark.core.registry import get_method, load_module
    from scenarios.folder import FolderSegmentationDataset
    from scenarios.stream import to_avalanche

    try:
        cls = get_method("my_method")
    except KeyError:
        load_module(str(repo_root / "examples" / "my_method.py"))
        cls = get_method("my_method")
    torch.manual_seed(0)
    backbone = build_backbone("sam_small", checkpoint=None)
    data = FolderSegmentationDataset(tiny_domain(tmp_path / "d", split="train", n=4, size=48),
                                     "train", image_size=256, domain_index=0)
    s = cls(backbone=copy.deepcopy(backbone), domain_names=["d"], n_trained=1,
            hparams={"epochs": 3, "batch_size": 2}, seed=0)
    before = {n: p.detach().clone() for n, p in s.backbone.sam.named_parameters()}
    s.learn_domain(to_avalanche([data], [data]).train_stream[0], 0)
    assert s.loss_history[-1] < s.loss_history[0]
    now = dict(s.backbone.sam.named_parameters())
    moved = {n for n, v in before.items() if not torch.equal(v, now[n].detach())}
    assert moved and all(n.startswith("mask_decoder.") and n.endswith("bias") for n in moved)
    n_bias = sum(p.numel() for n, p in s.backbone.sam.mask_decoder.named_parameters() if n.endswith("bias"))
    assert s.storage() == {"decoder_biases": 4 * n_bias}
