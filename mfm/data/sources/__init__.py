"""Dataset sources: labelled training and test sets as numpy arrays or file paths.

numpy and the standard library only at import time; scikit-learn is imported when the digits
are loaded and torchvision only for a download. Nothing here imports torch, so the TUI can call
:func:`preview_counts`.

Sources (``data.name``):
  digits         scikit-learn's bundled 8x8 digits (1,797 images, offline), 1x8x8; a seeded
                 balanced test split of ``data.test_per_class`` images per class.
  fashion-mnist  IDX files; data.root '' = /usr/share/datasets/fashion-mnist (Debian's
  mnist          dataset-fashion-mnist) then ~/.cache/mfm/<name>. 1x28x28.
  cifar10        the python-pickle batches (cifar-10-batches-py/, cifar-100-python/) in data.root
  cifar100       ('' = ~/.cache/mfm/<name>). 3x32x32. CIFAR-100 uses the fine labels.
  animal-mnist   the gzipped pickles inside the PyPI package animal-mnist (installed with
                 --no-deps), or in data.root; 1x28x28, 10 animal classes; a fixed test split of
                 200 images per class (none with a copy in the file).
  imagefolder    data.root/train/<class>/<image> and data.root/test/<class>/<image>; kept as
                 paths, decoded by the loader at data.image_size.
Missing files are fetched with torchvision's downloader (into data.root, or ~/.cache/mfm/<name>
when data.root is ''); if that fails the error says what was looked for where and how to get it.

Files that are there but wrong (a truncated IDX file, a bad magic number, a CIFAR file that is
not a pickle or lacks the expected keys, labels out of range) raise :class:`DataError`, one line
naming the file and what was expected. Pickles (CIFAR, animal-mnist) are read by
:class:`NumpyUnpickler` (``CifarUnpickler``), which builds only what those files contain (dicts,
lists, str/bytes, ints, numpy arrays): a pickle that asks for anything else (``os.system``) is
refused before it can run.
Labels-only reads (:func:`preview_counts`, the pre-run check) still check every image file's
header and length, so a run is not recorded only to fail on its first load.

Modules: ``base`` (Source, DataError, the label check), ``download`` (torchvision's fetch),
``safe_pickle`` (the restricted unpickler), one per format (``digits``, ``idx``, ``cifar``,
``animal_mnist``, ``imagefolder``) and ``registry`` (the name -> loader table, load_source,
split_for, preview_counts). Every name is re-exported here.
"""

from __future__ import annotations

from mfm.data.sources.base import DataError, Source
from mfm.data.sources.cifar import CIFAR_DIRS, CifarUnpickler, read_cifar_pickle
from mfm.data.sources.digits import balanced_holdout
from mfm.data.sources.download import DOWNLOAD_TIMEOUT_S
from mfm.data.sources.idx import (
    DEBIAN_FASHION_MNIST,
    FASHION_CLASSES,
    IDX_FILES,
    TORCHVISION_RAW,
    idx_info,
    read_idx,
)
from mfm.data.sources.imagefolder import IMAGE_EXTENSIONS
from mfm.data.sources.registry import LOADERS, Loader, load_source, preview_counts, split_for
from mfm.data.sources.safe_pickle import NumpyUnpickler, read_numpy_pickle

__all__ = ["CIFAR_DIRS", "DEBIAN_FASHION_MNIST", "DOWNLOAD_TIMEOUT_S", "FASHION_CLASSES",
           "IDX_FILES", "IMAGE_EXTENSIONS", "LOADERS", "TORCHVISION_RAW", "CifarUnpickler",
           "DataError", "Loader", "NumpyUnpickler", "Source", "balanced_holdout", "idx_info",
           "load_source", "preview_counts", "read_cifar_pickle", "read_idx", "read_numpy_pickle",
           "split_for"]
