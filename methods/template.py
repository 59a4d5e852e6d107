"""The shared strategy template: an Avalanche ``SupervisedTemplate`` that knows SAM batches.

A batch is a dict (see docs/design.md §1): ``image`` (uint8) or ``features`` (a dict of cached
tensors at the method's tap), ``mask``, ``points``, ``point_labels``, ``domain``, ``index``.
The template runs the frozen backbone from the method's tap to the decoder, computes the paper's
loss and keeps a fresh Adam + cosine schedule per domain. A method overrides a few hooks:

- ``build()``: create trainable parts (attached to ``self.parts``, an ``nn.ModuleDict``);
- ``encode(feats, batch)`` / ``decode(enc, batch)``: change how the backbone is run;
- ``predict(batch)``: evaluation-time prediction (e.g. routing);
- ``storage_components`` / ``kept_samples()``: what ``storage()`` counts (bytes kept beyond the
  frozen backbone, by component) and a saved model holds;
- ``before_domain(exp)`` / ``after_domain(exp)``: work at domain boundaries;
- ``extra_record()``: method-specific entries for the run record;
- ``method_state()`` / ``load_method_state(state)``: what a resumed run needs beyond ``self.parts``
  (buffers, selectors, importances, teachers...), as tensors and plain containers;
- ``on_resume(finished_experiences)``: rebuild state derived from earlier domains' data.

Scale-out (docs/scaling.md): under ``torchrun`` the trainable parts are wrapped in
``DistributedDataParallel`` and each process takes its slice of every global batch;
``enable_precision`` turns on bf16 autocast / channels-last (opt-in, on any device).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from benchmark.backbones.base import UPSCALE_MODES
from benchmark.core import distributed
from benchmark.core.losses import IOU_LOSSES, sam_loss
from benchmark.core import statetree
from benchmark.core.storage import KeptSamples
from scenarios.fileio import ConfigError, read_yaml_mapping
from scenarios.prefetch import Prefetcher, prefetchable
from scenarios.stream import to_device

PRESETS_DIR = Path(__file__).resolve().parent / "configs"
log = logging.getLogger(__name__)


#: ranges of the shared hyper-parameters: name -> (check, what it must be)
HPARAM_RANGES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: v >= 0, "must be an integer >= 0"),
    "batch_size": (lambda v: v >= 1, "must be an integer >= 1"),
    "eval_batch_size": (lambda v: v >= 1, "must be an integer >= 1"),
    "lr": (lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
    "eta_min": (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
    "dice_weight": (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
}


def _type_problem(default: Any, value: Any) -> Optional[str]:
    """Why ``value`` cannot replace ``default`` (a bool for a bool, an integer for an integer, a
    number for a float), or None."""
    if isinstance(default, bool) or isinstance(value, bool):
        return None if isinstance(default, bool) == isinstance(value, bool) else \
            f"expects {type(default).__name__}"
    if isinstance(default, int) and not isinstance(value, int):
        return "expects an integer"
    if isinstance(default, float) and not isinstance(value, (int, float)):
        return "expects a number"
    return None


def _range_problem(key: str, value: Any) -> Optional[str]:
    check = HPARAM_RANGES.get(key)
    return None if check is None or check[0](value) else check[1]


def _channels_last(value: Any) -> Any:
    if torch.is_tensor(value) and value.dim() == 4 and value.is_floating_point():
        return value.contiguous(memory_format=torch.channels_last)
    if isinstance(value, dict):
        return {k: _channels_last(v) for k, v in value.items()}
    return value


class _PartsForward(nn.Module):
    """What DDP wraps: the trainable parts (whose gradients it averages) and the strategy's
    ``run_model`` (the parts are called from inside the backbone, so DDP cannot wrap them alone)."""

    def __init__(self, parts: nn.ModuleDict, run: Callable):
        super().__init__()
        self.parts = parts
        self._run = run

    def forward(self, batch):
        return self._run(batch)


class GlobalBatchShardSampler(Sampler):
    """Batches of indices for process ``rank`` of ``world``: the single-process loader's global
    batches (the same shuffle, from a generator seeded the same way), each cut into ``world``
    contiguous slices. A last global batch with fewer than ``world`` items is dropped (a process
    with an empty batch would stall the gradient all-reduce)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int, shuffle: bool = True):
        if not 0 < world <= batch_size:
            raise ValueError(f"batch_size {batch_size} must be at least the number of processes ({world})")
        self.rank, self.world = rank, world
        generator = torch.Generator().manual_seed(seed)
        self._global = DataLoader(range(n), batch_size=batch_size, shuffle=shuffle,
                                  generator=generator, collate_fn=list)

    def __iter__(self):
        for batch in self._global:
            if len(batch) < self.world:
                warnings.warn(f"dropping a last global batch of {len(batch)} item(s): fewer than "
                              f"the {self.world} processes")
                continue
            bounds = [len(batch) * k // self.world for k in range(self.world + 1)]
            yield batch[bounds[self.rank]:bounds[self.rank + 1]]

    def __len__(self) -> int:
        n, size = len(self._global.dataset), self._global.batch_size
        return n // size + (1 if n % size >= self.world else 0)


class SAMModel(nn.Module):
    """The frozen backbone plus a method's trainable parts; the backbone always stays in eval mode."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.parts = nn.ModuleDict()

    def train(self, mode: bool = True) -> "SAMModel":
        super().train(mode)
        self.backbone.eval()
        return self


class SAMStrategy(SupervisedTemplate):
    """Base class of every method. Subclasses are registered with ``@register_method``."""

    method_name: str = "base"
    #: the latest feature tap the trainable parts allow ("neck", "block6", "image", ...)
    tap: str = "neck"
    #: hyper-parameters shared by all methods; subclasses extend with their own ``defaults``
    base_defaults: Dict[str, Any] = {
        "lr": 5e-3,              # Adam, as the paper
        "weight_decay": 0.0,
        "epochs": 3,             # per domain on the built-in CPU stream (paper: 20)
        "batch_size": 8,
        "eval_batch_size": 16,
        "lr_schedule": "cosine_epoch",  # cosine_epoch | cosine_iteration (the reference's quirk) | constant
        "eta_min": 1e-7,
        "dice_weight": 10.0,
    }
    defaults: Dict[str, Any] = {}
    #: what ``storage()`` counts and a saved model holds: (pattern, component) pairs, ``fnmatch``
    #: patterns over the flat tensor names of ``state_dict()`` (``parts.<parameter>``,
    #: ``method.<method_state key>...``), first match wins; unmatched tensors are bookkeeping
    storage_components: Tuple[Tuple[str, str], ...] = (("parts.*", "trained_parameters"),)
    #: hyper-parameter -> its allowed values (checked by ``resolve_hparams``, with the choices of
    #: the base classes)
    choices: Dict[str, tuple] = {}
    #: True when, before any training, ``predict`` gives the frozen backbone's own logits from
    #: ``tap`` bit for bit (zero-initialised adapters, no modules yet): the engine then evaluates
    #: row 0 once per tap for the runs of a process (``Run.shared_row_key``);
    #: tests/engine/test_shared_rows.py checks the claim of every registered method
    starts_as_backbone: bool = False
    #: about how long a run takes against ``lora``'s on the same settings (measured on the built-in
    #: stream); a parallel run starts the longest runs first, so that no long one starts last.
    #: Only the order of the runs depends on it, never a result
    relative_cost: float = 1.0
    #: leaderboard columns this method adds (``benchmark.reporting.columns.Column``); each one's
    #: value is ``extra_record()[column.key]``
    report_columns: tuple = ()

    def __init__(self, *, backbone: nn.Module, domain_names: List[str], n_trained: int,
                 hparams: Optional[Dict[str, Any]] = None, device: str = "cpu",
                 plugins: Optional[list] = None, seed: int = 0):
        self.hp = self.resolve_hparams(hparams or {})
        self.domain_names = list(domain_names)
        self.n_trained = n_trained
        self.seed = seed
        self.backbone = backbone
        self.tap = type(self).tap_for(getattr(backbone, "name", ""), self.hp)
        model = SAMModel(backbone)
        self._model_ref = model
        self.build()
        placeholder = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.0)
        with warnings.catch_warnings():  # "no loggers": the harness's evaluator does the scoring
            warnings.simplefilter("ignore", UserWarning)
            self._init_template(model, placeholder, device, plugins)
        self.scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None
        self.domain_index = -1
        self.loss_history: List[float] = []  # mean loss per image, per epoch, over the whole run
        #: train splits of evaluation-only (general) domains, at ``self.tap``; never trained on,
        #: but a method may keep samples of them (SAMCL's selector buffer). Set by the runner.
        self.general_datasets: list = []
        self.precision = "fp32"          # "bf16": autocast (see enable_precision)
        #: how low-res logits reach the mask size (loss and scores) and which IoU term the loss
        #: has; the run's protocol sets them (benchmark/engine/protocol.py, configure_evaluation)
        self.upscale_mode, self.iou_loss = "bilinear", "project"
        self.channels_last = False
        #: training batches loaded ahead in a background thread (run option ``prefetch``; 0: inline)
        self.prefetch = 0
        self._ddp: Optional[nn.Module] = None

    def _init_template(self, model, placeholder, device, plugins) -> None:
        super().__init__(
            model=model, optimizer=placeholder, criterion=None,
            train_mb_size=int(self.hp["batch_size"]), train_epochs=int(self.hp["epochs"]),
            eval_mb_size=int(self.hp["eval_batch_size"]), device=device,
            plugins=list(plugins or []) + self.make_plugins(),
            evaluator=EvaluationPlugin(loggers=[]),
        )

    # ------------------------------------------------------------------ configuration
    @classmethod
    def declared_defaults(cls) -> Dict[str, Any]:
        """The hyper-parameters and their defaults, as the method file and its bases declare them."""
        merged: Dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "base_defaults", {}) if klass is SAMStrategy else {})
            merged.update(klass.__dict__.get("defaults", {}))
        return copy.deepcopy(merged)

    @classmethod
    def presets(cls, stream: str, backbone: str) -> List[Tuple[str, Dict[str, Any]]]:
        """(source, values) of the presets that apply on ``stream`` with ``backbone``: the sections
        ``stream:<name>`` and ``backbone:<name>`` of ``methods/configs/<method>.yaml``, for this
        method and for each registered method it derives from (base first), so a variant such as
        ``samcl_oracle`` shares ``samcl``'s presets instead of copying them."""
        found = []
        for klass in reversed(cls.__mro__):
            name = klass.__dict__.get("method_name")
            path = PRESETS_DIR / f"{name}.yaml"
            if not name or not path.is_file():
                continue
            sections = read_yaml_mapping(path)
            for key, values in sections.items():
                kind, _, value = str(key).partition(":")
                if kind not in ("stream", "backbone") or not value or not isinstance(values, dict):
                    raise ConfigError(f"{path}: section {key!r} must be 'stream:<name>' or "
                                      f"'backbone:<name>' holding a mapping")
                if value == (stream if kind == "stream" else backbone):
                    found.append((f"preset {path.name} [{key}]", dict(values)))
        return found

    @classmethod
    def resolve_hparams(cls, overrides: Dict[str, Any]) -> Dict[str, Any]:
        """The defaults with ``overrides`` applied; an unknown name, a value of the wrong type or
        out of range is an error naming the method and the hyper-parameter."""
        merged = cls.declared_defaults()
        unknown = set(overrides) - set(merged)
        if unknown:
            raise ValueError(f"method {cls.method_name!r}: unknown hyper-parameter(s) "
                             f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(merged))}")
        for key, value in overrides.items():
            problem = _type_problem(merged[key], value) or _range_problem(key, value)
            if problem:
                raise ValueError(f"method {cls.method_name!r}: hyper-parameter {key!r} {problem}, "
                                 f"got {value!r}")
            merged[key] = value
        for klass in reversed(cls.__mro__):  # each class's choices (a subclass may add its own)
            for key, allowed in vars(klass).get("choices", {}).items():
                if merged[key] not in allowed:
                    raise ValueError(f"method {cls.method_name!r}: hyper-parameter {key!r} must be "
                                     f"{' or '.join(allowed)}, got {merged[key]!r}")
        return merged

    @classmethod
    def tap_for(cls, backbone_name: str, hparams: Optional[Dict[str, Any]] = None) -> str:
        """The feature tap this method starts from on ``backbone_name`` (default: ``cls.tap``).
        The runner asks before building the strategy, so it can hand over cached features."""
        return cls.tap

    @property
    def parts(self) -> nn.ModuleDict:
        return self._model_ref.parts

    # ------------------------------------------------------------------ hooks for methods
    def build(self) -> None:
        """Create trainable parts in ``self.parts``. Default: none (a frozen model)."""

    def make_plugins(self) -> list:
        """Avalanche plugins this method needs (e.g. EWC)."""
        return []

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return [p for p in self.parts.parameters() if p.requires_grad]

    def named_trainable(self) -> Dict[str, nn.Parameter]:
        """The trainable parameters under their names in ``self.model`` (EWC, LwF)."""
        ids = {id(p) for p in self.trainable_parameters()}
        return {n: p for n, p in self.model.named_parameters() if id(p) in ids}

    def backbone_features(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Features at ``self.tap``: from the cache when the batch has them, else computed."""
        if "features" in batch:
            return batch["features"]
        with torch.no_grad():
            return self.backbone.features_at(batch["image"], self.tap)

    def encode(self, feats: Dict[str, torch.Tensor], batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        return self.backbone.features_from(feats, self.tap)

    def decode(self, enc: Dict[str, torch.Tensor], batch: Dict[str, Any]):
        return self.backbone.decode(enc, batch["points"], batch["point_labels"])

    def run_model(self, batch: Dict[str, Any]):
        """(low_res_logits (B,1,L,L), iou_pred (B,1)) for a batch."""
        feats = self.backbone_features(batch)
        return self.decode(self.encode(feats, batch), batch)

    @torch.no_grad()
    def predict(self, batch: Dict[str, Any]) -> torch.Tensor:
        """Low-resolution mask logits for evaluation."""
        return self.run_model(batch)[0]

    def kept_samples(self) -> Dict[str, KeptSamples]:
        """Training items the method keeps, by storage prefix (``replay``: its buffer, ``joint``:
        all data so far); counted as ``<prefix>_images``, ``_masks``, ``_prompts``. Default: none."""
        return {}

    def storage(self) -> Dict[str, int]:
        """Bytes this method keeps beyond the frozen backbone, by component: the tensors of
        ``state_dict()`` that ``storage_components`` assign to each, plus ``kept_samples()`` at
        their stored encoding - what a saved model holds (benchmark/engine/saved_models.py)."""
        tensors, _ = statetree.flatten(self.state_dict())
        groups, _ = statetree.group_components(tensors, self.storage_components)
        out = {component: statetree.nbytes(group) for component, group in groups.items()}
        for prefix, kept in self.kept_samples().items():
            out.update(kept.nbytes(prefix, int(self.backbone.image_size)))
        return out

    def before_domain(self, experience) -> None:
        pass

    def after_domain(self, experience) -> None:
        pass

    def extra_record(self) -> Dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ resume (benchmark/engine/resume.py)
    def method_state(self) -> Dict[str, Any]:
        """State beyond ``self.parts`` that later domains need (buffers, selectors, importances,
        teachers...): tensors and plain containers only (it is saved with ``torch.save`` and read
        with ``weights_only=True``). Default: nothing."""
        return {}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        """Restore ``method_state()``; called before ``self.parts`` is loaded, so a method whose
        parts grow per domain can recreate them here."""

    def on_resume(self, finished_experiences: Sequence) -> None:
        """Called on resume with the experiences trained before the interruption, after the state
        is loaded (e.g. joint training re-concatenates their datasets). Default: nothing."""

    def state_dict(self) -> Dict[str, Any]:
        """Everything a run needs to continue after a domain boundary (the optimiser is fresh per
        domain, so it holds nothing at a boundary)."""
        clock = {k: v for k, v in vars(self.clock).items() if type(v) is int}
        return {"parts": self.parts.state_dict(), "method": self.method_state(),
                "template": {"loss_history": list(self.loss_history),
                             "domain_index": self.domain_index, "clock": clock}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.load_method_state(state.get("method", {}))
        self.parts.load_state_dict(state["parts"])
        template = state.get("template", {})
        self.loss_history = [float(v) for v in template.get("loss_history", [])]
        self.domain_index = int(template.get("domain_index", self.domain_index))
        for key, value in template.get("clock", {}).items():
            setattr(self.clock, key, int(value))

    # ------------------------------------------------------------------ precision
    @property
    def world_size(self) -> int:
        return distributed.world_size()

    def enable_precision(self, precision: str = "fp32", channels_last: bool = False) -> None:
        """bf16 autocast for training forward passes and ``predict`` (whose logits come back as
        float32), and channels-last tensors."""
        self.precision, self.channels_last = precision, bool(channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if precision == "bf16" or self.channels_last:
            inner = self.predict

            def predict(batch):
                if self.channels_last:
                    batch = _channels_last(batch)
                with self.autocast():
                    return inner(batch).float()
            self.predict = predict

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ entry point for the runner
    def learn_domain(self, experience, domain_index: int, **kwargs) -> None:
        """Train on one domain (one experience) and run the domain-boundary hooks."""
        self.domain_index = domain_index
        self.before_domain(experience)
        if int(self.hp["epochs"]) > 0 and any(True for _ in self.trainable_parameters()):
            self.train(experience, eval_streams=[], **kwargs)
        self.after_domain(experience)

    # ------------------------------------------------------------------ Avalanche overrides
    def _unpack_minibatch(self):
        self.mbatch = to_device(self.mbatch, self.device)
        if self.channels_last:
            self.mbatch = _channels_last(self.mbatch)

    @property
    def mb_x(self):
        return self.mbatch.get("image", self.mbatch.get("features"))

    @property
    def mb_y(self):
        return self.mbatch["mask"]

    @property
    def mb_task_id(self):
        return self.mbatch["domain"]

    def forward(self):
        with self.autocast():
            if self._ddp is not None and self.is_training:
                return self._ddp(self.mbatch)
            return self.run_model(self.mbatch)

    def configure_evaluation(self, upscale: str = "bilinear", iou_loss: str = "project") -> None:
        """The protocol's evaluation settings: ``upscale`` (bilinear | nearest) and ``iou_loss``
        (project | reference, see ``benchmark.core.losses.sam_loss``)."""
        if upscale not in UPSCALE_MODES or iou_loss not in IOU_LOSSES:
            raise ValueError(f"upscale must be one of {', '.join(UPSCALE_MODES)} and iou_loss one of "
                             f"{', '.join(IOU_LOSSES)}, got {upscale!r} and {iou_loss!r}")
        self.upscale_mode, self.iou_loss = upscale, iou_loss

    def upscale(self, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits -> logits at the mask size: the one place that decides how, for the loss
        and for every score (the evaluator calls it). Bilinear (the backbone's own, as SAM's
        post-processing) unless the protocol asks for nearest (the SAMCL reference's vendored
        segment_anything)."""
        return self.backbone.upscale(low_res, self.upscale_mode)

    def sam_loss_of(self, low_res: torch.Tensor, iou_pred: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The shared SAM loss (summed over the batch) of a forward's outputs against ``masks``: the
        training loss, and what regularisers that need a gradient of it call on other batches."""
        return sam_loss(self.upscale(low_res.float()), iou_pred.float(), masks,
                        dice_weight=float(self.hp["dice_weight"]), iou_loss=self.iou_loss)

    def criterion(self):
        loss = self.sam_loss_of(*self.mb_output, self.mb_y)
        # The loss sums over the batch; DDP averages gradients over the W processes, so each
        # process's share is scaled by W to give the gradient of the global batch's sum.
        return loss * self.world_size if self._ddp is not None else loss

    def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None,
                              persistent_workers=False, drop_last=False, **kwargs):
        """A plain shuffled loader (Avalanche's task-balanced loader would oversample domains).
        ``persistent_workers`` is ignored: a persistent worker pool skips the per-epoch seed draw
        from ``generator``, so its shuffles would differ from a run that loads inline."""
        loader_seed = self.seed * 1000 + max(self.domain_index, 0)
        rank, world = distributed.rank(), distributed.world_size()
        if world > 1:  # this process's slice of every global batch (see GlobalBatchShardSampler)
            sampler = GlobalBatchShardSampler(len(self.adapted_dataset), self.train_mb_size,
                                              loader_seed, rank, world, shuffle=shuffle)
            self.dataloader = DataLoader(
                self.adapted_dataset, batch_sampler=sampler, num_workers=num_workers,
                generator=torch.Generator().manual_seed(loader_seed),  # keeps the global RNG untouched
                collate_fn=getattr(self.adapted_dataset, "collate_fn", None),
                pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory)
            return
        generator = torch.Generator().manual_seed(loader_seed)
        self.dataloader = DataLoader(
            self.adapted_dataset, batch_size=self.train_mb_size, shuffle=shuffle,
            num_workers=num_workers, drop_last=drop_last, generator=generator,
            collate_fn=getattr(self.adapted_dataset, "collate_fn", None),
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory,
        )

    def make_optimizer(self, **kwargs):
        """A fresh Adam and schedule per domain over the trainable parameters (as the reference)."""
        params = list(self.trainable_parameters())
        if not params:
            params = [nn.Parameter(torch.zeros(1))]
        self.optimizer = torch.optim.Adam(params, lr=float(self.hp["lr"]),
                                          weight_decay=float(self.hp["weight_decay"]))
        self.optimized_param_id = {id(p): p for p in params}
        self._wrap_ddp()
        kind = self.hp["lr_schedule"]
        epochs = max(int(self.hp["epochs"]), 1)
        if kind == "cosine_epoch":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=epochs, eta_min=float(self.hp["eta_min"]))
        elif kind == "cosine_iteration":
            # The reference steps CosineAnnealingLR(T_max=epochs) every iteration.
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=epochs, eta_min=float(self.hp["eta_min"]))
        elif kind == "constant":
            self.scheduler = None
        else:
            raise ValueError(f"lr_schedule must be cosine_epoch, cosine_iteration or constant, got {kind!r}")

    def _wrap_ddp(self) -> None:
        """Under torchrun, wrap the trainable parts in DDP afresh for each domain (parts may grow)."""
        self._ddp = None
        if distributed.is_distributed() and any(True for _ in self.trainable_parameters()):
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(_PartsForward(self.parts, self.run_model), device_ids=ids,
                                                find_unused_parameters=True)

    def training_epoch(self, **kwargs):
        # The losses stay on the device until the epoch ends: reading each one (float(loss)) would
        # make the CPU wait for the GPU at every step instead of preparing the next batch.
        self._epoch_losses: List[torch.Tensor] = []
        self._epoch_sizes: List[int] = []
        with self._loading_ahead():
            super().training_epoch(**kwargs)
        if not self._epoch_losses:
            return
        losses = torch.stack(self._epoch_losses).cpu().tolist()  # the one wait of the epoch
        bad = next((v for v in losses if not math.isfinite(v)), None)
        if bad is not None:
            raise FloatingPointError(f"{self.method_name}: loss became {bad} on domain "
                                     f"{self.domain_index}; lower the learning rate")
        # per image (under DDP: this process's slice, the loss scaled back by the world size)
        scale = self.world_size if self._ddp is not None else 1
        per_image = [v / scale / max(n, 1) for v, n in zip(losses, self._epoch_sizes)]
        self.loss_history.append(sum(per_image) / len(per_image))

    @contextlib.contextmanager
    def _loading_ahead(self):
        """``self.dataloader`` wrapped in a ``Prefetcher`` for the epoch when ``prefetch`` is set and
        the loader's order does not draw from the global generators (``prefetchable``)."""
        loader = self.dataloader
        if self.prefetch and not prefetchable(loader):
            if not getattr(self, "_inline_noted", False):
                log.warning("prefetch: %s trains from a %s, whose order draws from the global random "
                            "generators; it is loaded inline", self.method_name, type(loader).__name__)
                self._inline_noted = True
        elif self.prefetch:
            self.dataloader = Prefetcher(loader, self.device, self.prefetch)
        try:
            yield
        finally:
            self.dataloader = loader

    def _after_training_iteration(self, **kwargs):
        self._epoch_losses.append(self.loss.detach().float().reshape(()))
        self._epoch_sizes.append(len(self.mb_y))
        if self.scheduler is not None and self.hp["lr_schedule"] == "cosine_iteration":
            self.scheduler.step()
        super()._after_training_iteration(**kwargs)

    def _after_training_epoch(self, **kwargs):
        if self.scheduler is not None and self.hp["lr_schedule"] == "cosine_epoch":
            self.scheduler.step()
        super()._after_training_epoch(**kwargs)
