"""Training-ready data: the long-tailed split as batches on the training device.

In-memory sources (digits, MNIST, Fashion-MNIST, Animal-MNIST, CIFAR) live as uint8 tensors on
the training device (airbench style); each batch is gathered by index, augmented there as a
batch (pad + random crop with per-sample offsets, random horizontal flip) and normalised.
Imagefolder images are decoded by a torch DataLoader (``data.num_workers`` processes) and then
go through the same batched, on-device augmentation, so both paths draw their randomness from
one seeded CPU generator and a resumed run continues the same sequence.

Which training images an epoch visits is ``data.sampler`` (:func:`epoch_order`):
  instance        every image once, in a seeded random order (``torch.randperm``);
  class_balanced  n draws with replacement (n = number of training images, so an epoch has as
                  many batches as with instance), image i with probability proportional to
                  1 / n_c(i): every class equally likely (the sampler of cRT, Kang et al. 2020);
  sqrt            the same with probability proportional to n_c(i) ** -1/2: a class's share of
                  the draws is proportional to the square root of its count.
The draws come from the same CPU generator (``torch.multinomial(generator=...)``), so resuming
from the generator state in :meth:`LongTailData.loader_state` continues the same sequence.
classifier-balancing (facebookresearch/classifier-balancing, data/ClassAwareSampler.py, the cRT
code) draws classes in a cycle (reshuffled after each pass) and then ``num_samples_cls`` images
from that class's own cycle, n_max x C draws an epoch; ours draws each position i.i.d. with the
class-balanced probabilities, n draws an epoch: the same expected class frequencies, without
the cycles' exact balance within an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from mfm.config import SAMPLERS, DataConfig
from mfm.data.longtail import resample_meta
from mfm.data.sources import DataError, Source, load_source, split_for
from mfm.text import one_line

__all__ = ["DeviceLoader", "FolderLoader", "LongTailData", "MetaResampler", "augmentation_for",
           "build_data", "channel_stats", "crop_batch", "augment_batch", "epoch_order",
           "sampling_weights"]

# Datasets whose images keep their meaning when mirrored (digits do not: a flipped 2 is no 2;
# animal-mnist's silhouettes face left and right alike).
FLIP_SAFE = ("cifar10", "cifar100", "fashion-mnist", "imagefolder", "animal-mnist")
# Imagefolder: mean/std from at most this many (evenly spaced) long-tailed training images.
FOLDER_STATS_MAX = 2048


def augmentation_for(cfg: DataConfig, image_size: int) -> tuple[int, bool]:
    """(pad, flip) for the training loader: ``data.augment`` resolved, ``data.pad`` = -1
    meaning image_size // 8 (8x8 -> 1, 28 -> 3, 32 -> 4)."""
    mode = cfg.augment
    if mode == "auto":
        mode = "crop_flip" if cfg.name in FLIP_SAFE else "crop"
    if mode == "none":
        return 0, False
    pad = cfg.pad if cfg.pad >= 0 else image_size // 8
    return pad, mode == "crop_flip"


def crop_batch(x: torch.Tensor, offsets_y: torch.Tensor, offsets_x: torch.Tensor, h: int,
               w: int) -> torch.Tensor:
    """Per-sample crops: out[n] = x[n, :, oy[n]:oy[n]+h, ox[n]:ox[n]+w], vectorised."""
    n, c, _, wp = x.shape
    dev = x.device
    rows = offsets_y.to(dev, torch.long)[:, None] + torch.arange(h, device=dev)  # (N, h)
    cols = offsets_x.to(dev, torch.long)[:, None] + torch.arange(w, device=dev)  # (N, w)
    # Two gathers (rows, then columns) beat one 4-D advanced index by 2-3x on CPU.
    x = x.gather(2, rows[:, None, :, None].expand(n, c, h, wp))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def augment_batch(x: torch.Tensor, *, pad: int, flip: bool,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Zero-pad by ``pad`` (pixel value 0, before normalisation), crop back to H x W at a
    random per-sample offset, then mirror a random half of the samples. Same dtype and shape.
    Random numbers come from the (CPU) ``generator``, so results do not depend on the device."""
    n, _, h, w = x.shape
    if n == 0:
        return x
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        x = crop_batch(xp, oy, ox, h, w)
    if flip:
        m = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    return x


class _Normalize:
    """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std, per channel, on x's device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std):
            raise ValueError(f"mean and std lengths differ ({len(mean)} vs {len(std)})")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device not in self._cache:
            std = torch.tensor(self.std, dtype=torch.float32, device=x.device)
            mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device)
            self._cache[x.device] = ((1.0 / (255.0 * std)).view(1, -1, 1, 1),
                                     (-mean / std).view(1, -1, 1, 1))
        scale, shift = self._cache[x.device]
        return x.to(torch.float32) * scale + shift


def _stats_from_hist(hist: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] units from (C, 256) pixel-value histograms (exact)."""
    v = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for h in hist.astype(np.float64):
        n = h.sum()
        m = float((h * v).sum() / n)
        var = max(float((h * v * v).sum() / n) - m * m, 0.0)
        s = math.sqrt(var)
        means.append(m / 255.0)
        stds.append(s / 255.0 if s > 0 else 1.0)
    return tuple(means), tuple(stds)


def _hist(x: np.ndarray) -> np.ndarray:
    return np.stack([np.bincount(x[:, c].ravel(), minlength=256) for c in range(x.shape[1])])


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) of uint8 (N, C, H, W) images; exact and
    deterministic (computed from integer histograms)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected non-empty uint8 (N, C, H, W), got {images.dtype} "
                         f"{images.shape}")
    return _stats_from_hist(_hist(images))


def sampling_weights(labels: np.ndarray | torch.Tensor, sampler: str) -> torch.Tensor | None:
    """Per-image draw weights (float64, CPU) of ``sampler`` for training ``labels``: None for
    instance (no draws), n_c(i) ** -1 for class_balanced, n_c(i) ** -1/2 for sqrt, where
    n_c(i) is the number of training images of image i's class."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r} (expected one of {', '.join(SAMPLERS)})")
    if sampler == "instance":
        return None
    y = torch.as_tensor(labels).detach().to("cpu", torch.long).reshape(-1)
    if y.numel() == 0:
        raise ValueError(f"sampler {sampler!r} needs at least one training label")
    counts = torch.bincount(y).to(torch.float64)[y]
    return counts.reciprocal() if sampler == "class_balanced" else counts.rsqrt()


def epoch_order(n: int, weights: torch.Tensor | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """One epoch's n image indices (int64, CPU): a permutation when ``weights`` is None (the
    instance sampler), else n i.i.d. draws with replacement, image i with probability
    proportional to ``weights[i]`` (torch.multinomial: at most 2**24 images); both from
    ``generator``."""
    if weights is None:
        return torch.randperm(n, generator=generator)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


class _BatchSource:
    """Shared sampling/augment/normalise state of both loaders. ``labels`` (the training
    labels, one per image) give the per-class counts a non-instance ``sampler`` draws by."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, drop_last: bool, pad: int,
                 flip: bool, mean: Sequence[float], std: Sequence[float],
                 generator: torch.Generator | None, sampler: str = "instance",
                 labels: np.ndarray | torch.Tensor | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        if generator is None and (shuffle or pad > 0 or flip):
            raise ValueError("a generator is required for shuffling or augmentation")
        if sampler != "instance" and not shuffle:
            raise ValueError(f"sampler {sampler!r} draws at random: it needs shuffle=True")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.pad = pad
        self.flip = flip
        self.generator = generator
        self.normalize = _Normalize(mean, std)
        if sampler != "instance" and labels is None:
            raise ValueError(f"sampler {sampler!r} needs the training labels")
        self.sampler = sampler
        self._weights = sampling_weights(labels if labels is not None else np.zeros(0, np.int64),
                                         sampler)
        if self._weights is not None and self._weights.numel() != n:
            raise ValueError(f"{n} images but {self._weights.numel()} labels")

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def _order(self) -> torch.Tensor:
        if self.shuffle:
            return epoch_order(self.n, self._weights, self.generator)
        return torch.arange(self.n)

    def _finish(self, x_u8: torch.Tensor) -> torch.Tensor:
        if self.pad > 0 or self.flip:
            x_u8 = augment_batch(x_u8, pad=self.pad, flip=self.flip, generator=self.generator)
        return self.normalize(x_u8)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])


class DeviceLoader(_BatchSource):
    """Batches of a uint8 image tensor that already lives on the training device.

    Yields (x float32 normalised, y int64), both on the images' device. Each epoch's order is
    drawn once on the CPU (:func:`epoch_order`: ``torch.randperm`` for the instance sampler,
    ``torch.multinomial`` for the others); augmentation is batched on the device.
    ``state_dict()`` / ``load_state_dict()`` carry the generator, so a run resumed at an epoch
    boundary continues the same sequence of orders and crops.
    """

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 shuffle: bool, drop_last: bool = False, pad: int = 0, flip: bool = False,
                 mean: Sequence[float], std: Sequence[float],
                 generator: torch.Generator | None = None, sampler: str = "instance"):
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images_u8.dtype} "
                             f"{tuple(images_u8.shape)}")
        if labels.shape[0] != images_u8.shape[0]:
            raise ValueError(f"{images_u8.shape[0]} images but {labels.shape[0]} labels")
        super().__init__(images_u8.shape[0], batch_size, shuffle=shuffle, drop_last=drop_last,
                         pad=pad, flip=flip, mean=mean, std=std, generator=generator,
                         sampler=sampler, labels=labels)
        self.images = images_u8
        self.labels = labels.to(images_u8.device, torch.long)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order().to(self.images.device)
        bs = self.batch_size
        for i in range(len(self)):
            idx = order[i * bs:(i + 1) * bs]
            yield self._finish(self.images[idx]), self.labels[idx]


class _FolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decodes one image: PIL open -> RGB -> resize to size x size -> uint8 (3, H, W)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, size: int):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.paths[i]) as src:
                im = src.convert("RGB")
                if im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            # A truncated or non-image file: name it (PIL's own text often does not).
            if isinstance(e, UnidentifiedImageError):
                why = "not an image file PIL can read"
            elif isinstance(e, OSError) and e.strerror:
                why = e.strerror
            else:
                why = f"{type(e).__name__}: {e}"
            raise DataError(one_line(f"imagefolder: cannot decode {self.paths[i]!r}: "
                                     f"{why}")) from None
        return torch.from_numpy(arr), int(self.labels[i])


class _OrderSampler(Sampler[int]):
    """Yields whatever order the loader set for this epoch (works with persistent workers:
    the sampler is iterated in the main process)."""

    def __init__(self, n: int):
        self.order: list[int] = list(range(n))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class FolderLoader(_BatchSource):
    """Imagefolder batches: decoded by a DataLoader with ``num_workers`` processes, then moved
    to ``device`` and augmented/normalised there exactly like :class:`DeviceLoader`."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, image_size: int,
                 batch_size: int, *, device: torch.device, num_workers: int, shuffle: bool,
                 drop_last: bool = False, pad: int = 0, flip: bool = False,
                 mean: Sequence[float], std: Sequence[float],
                 generator: torch.Generator | None = None, sampler: str = "instance"):
        super().__init__(len(paths), batch_size, shuffle=shuffle, drop_last=drop_last, pad=pad,
                         flip=flip, mean=mean, std=std, generator=generator, sampler=sampler,
                         labels=labels)
        self.device = torch.device(device)
        self._sampler = _OrderSampler(len(paths))
        # The DataLoader's own generator only seeds its workers (which draw nothing); a private
        # one keeps it from consuming the global torch RNG.
        self._loader = DataLoader(
            _FolderDataset(paths, labels, image_size), batch_size=batch_size,
            sampler=self._sampler, drop_last=drop_last, num_workers=num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(0))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._sampler.order = self._order().tolist()
        for x, y in self._loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, torch.long, non_blocking=True)
            yield self._finish(x), y


@dataclass
class MetaResampler:
    """``data.meta_source=resampled``: class-balanced meta sets drawn from the long-tailed
    training images (:func:`mfm.data.longtail.resample_meta`), a new one every ``every``
    epochs, normalised like the heldout meta set. ``images`` maps positions in the training
    set to its uint8 images on the device."""

    labels: np.ndarray  # training labels, in the order of the split's train_idx
    num_classes: int
    per_class: int
    seed: int  # data.seed
    every: int  # data.meta_resample_epochs
    images: Callable[[np.ndarray], torch.Tensor]
    normalize: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device

    def draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(meta_x, meta_y) in force at ``epoch``: the draw of its last redraw epoch."""
        pos = resample_meta(self.labels, self.num_classes, self.per_class, seed=self.seed,
                            epoch=epoch - epoch % self.every)
        y = torch.from_numpy(self.labels[pos]).to(self.device, torch.long)
        return self.normalize(self.images(pos)), y


@dataclass
class LongTailData:
    """Everything a run needs from the data, on the training device.

    ``train`` yields augmented, shuffled (x, y) batches; ``test`` yields the balanced test set
    in order without augmentation; ``meta_x``/``meta_y`` are the whole balanced meta set
    (normalised, empty when data.meta_per_class = 0); ``val``, when data.val_per_class > 0,
    yields the balanced validation set like ``test``. Counts are lists indexed by class label;
    ``class_order[r]`` is the label at rank r (rank 0 = head). With data.meta_source=resampled
    ``meta_x``/``meta_y`` are the first draw (epoch 0) and ``meta_for_epoch`` gives the others.
    """

    train: DeviceLoader | FolderLoader
    test: DeviceLoader | FolderLoader
    meta_x: torch.Tensor
    meta_y: torch.Tensor
    train_counts: list[int]
    meta_counts: list[int]
    test_counts: list[int]
    classes: list[str]
    num_classes: int
    in_channels: int
    image_size: int
    split_hash: str
    num_train: int
    class_order: list[int] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    val: DeviceLoader | FolderLoader | None = None  # balanced, held out (data.val_per_class)
    meta_resampler: MetaResampler | None = None  # data.meta_source=resampled

    def meta_for_epoch(self, epoch: int, *,
                       first: bool = False) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The meta set from ``epoch`` on where it changes there, else None. Only with
        data.meta_source=resampled: a new draw at every multiple of data.meta_resample_epochs,
        and at the ``first`` epoch a fit trains (0, or where a resumed run goes on) the draw in
        force then. A heldout meta set never changes (``meta_x``/``meta_y``)."""
        r = self.meta_resampler
        if r is None or (epoch % r.every and not first):
            return None
        return r.draw(epoch)

    def loader_state(self) -> dict[str, Any]:
        """The train loader's generator state (for checkpoints)."""
        return self.train.state_dict()

    def load_loader_state(self, state: dict[str, Any]) -> None:
        self.train.load_state_dict(state)


def _folder_stats(ds: _FolderDataset, idx: np.ndarray,
                  num_workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if idx.size > FOLDER_STATS_MAX:
        idx = idx[np.linspace(0, idx.size - 1, FOLDER_STATS_MAX).round().astype(np.int64)]
    hist = np.zeros((3, 256), dtype=np.int64)
    loader = DataLoader(torch.utils.data.Subset(ds, idx.tolist()), batch_size=64,
                        num_workers=num_workers)
    for x, _ in loader:
        hist += _hist(x.numpy())
    return _stats_from_hist(hist)


def _folder_stack(ds: _FolderDataset, idx: np.ndarray, num_workers: int) -> torch.Tensor:
    loader = DataLoader(torch.utils.data.Subset(ds, idx.tolist()), batch_size=64,
                        num_workers=num_workers)
    parts = [x for x, _ in loader]
    if not parts:
        return torch.zeros((0, 3, ds.size, ds.size), dtype=torch.uint8)
    return torch.cat(parts)


def build_data(cfg: DataConfig, *, batch_size: int, eval_batch_size: int,
               device: torch.device, seed: int, download: bool = True) -> LongTailData:
    """Load ``cfg``'s source, split it (a pure function of the data spec and data.seed) and
    build the loaders. ``seed`` (the run seed) seeds the train loader's generator: shuffling
    (or ``data.sampler``'s draws) and augmentation. Normalisation uses the per-channel
    mean/std of the long-tailed training images (imagefolder: of at most FOLDER_STATS_MAX of
    them, evenly spaced)."""
    device = torch.device(device)
    source: Source = load_source(cfg, download=download)
    split = split_for(cfg, source)
    pad, flip = augmentation_for(cfg, source.image_size)
    gen = torch.Generator().manual_seed(int(seed))
    train_y_np = source.train_labels[split.train_idx]

    train: DeviceLoader | FolderLoader
    test: DeviceLoader | FolderLoader
    val: DeviceLoader | FolderLoader
    if source.in_memory:
        assert source.train_images is not None and source.test_images is not None
        train_x_np = source.train_images[split.train_idx]
        mean, std = channel_stats(train_x_np)
        train = DeviceLoader(torch.from_numpy(train_x_np).to(device),
                             torch.from_numpy(train_y_np).to(device), batch_size, shuffle=True,
                             pad=pad, flip=flip, mean=mean, std=std, generator=gen,
                             sampler=cfg.sampler)
        test = DeviceLoader(torch.from_numpy(source.test_images).to(device),
                            torch.from_numpy(source.test_labels).to(device), eval_batch_size,
                            shuffle=False, mean=mean, std=std)
        meta_u8 = torch.from_numpy(source.train_images[split.meta_idx]).to(device)
        resident = train.images

        def train_images(pos: np.ndarray) -> torch.Tensor:
            return resident[torch.from_numpy(pos).to(resident.device)]
        val = DeviceLoader(torch.from_numpy(source.train_images[split.val_idx]).to(device),
                           torch.from_numpy(source.train_labels[split.val_idx]).to(device),
                           eval_batch_size, shuffle=False, mean=mean, std=std)
    else:
        assert source.train_paths is not None and source.test_paths is not None
        workers = cfg.num_workers
        full = _FolderDataset(source.train_paths, source.train_labels, source.image_size)
        mean, std = _folder_stats(full, split.train_idx, workers)
        paths = [source.train_paths[i] for i in split.train_idx]
        train = FolderLoader(paths, train_y_np, source.image_size, batch_size, device=device,
                             num_workers=workers, shuffle=True, pad=pad, flip=flip, mean=mean,
                             std=std, generator=gen, sampler=cfg.sampler)
        test = FolderLoader(source.test_paths, source.test_labels, source.image_size,
                            eval_batch_size, device=device, num_workers=workers, shuffle=False,
                            mean=mean, std=std)
        meta_u8 = _folder_stack(full, split.meta_idx, workers).to(device)

        def train_images(pos: np.ndarray) -> torch.Tensor:
            return _folder_stack(full, split.train_idx[pos], workers).to(device)
        val = FolderLoader([source.train_paths[i] for i in split.val_idx],
                           source.train_labels[split.val_idx], source.image_size,
                           eval_batch_size, device=device, num_workers=workers, shuffle=False,
                           mean=mean, std=std)

    meta_x = _Normalize(mean, std)(meta_u8)
    meta_y = torch.from_numpy(source.train_labels[split.meta_idx]).to(device, torch.long)
    resampler = None
    if split.meta_source == "resampled":
        resampler = MetaResampler(train_y_np, source.num_classes, cfg.meta_per_class, cfg.seed,
                                  cfg.meta_resample_epochs, train_images, _Normalize(mean, std),
                                  device)
        meta_x, meta_y = resampler.draw(0)
    test_counts = np.bincount(source.test_labels, minlength=source.num_classes)
    return LongTailData(
        train=train, test=test, meta_x=meta_x, meta_y=meta_y,
        train_counts=list(split.train_counts), meta_counts=list(split.meta_counts),
        test_counts=[int(v) for v in test_counts], classes=list(source.classes),
        num_classes=source.num_classes, in_channels=source.in_channels,
        image_size=source.image_size, split_hash=split.hash, num_train=int(split.train_idx.size),
        class_order=list(split.class_order), mean=mean, std=std,
        val=val if split.val_idx.size else None, meta_resampler=resampler)
