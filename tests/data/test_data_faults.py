"""Bad data roots and hostile data files: one line naming data.root or the file, never a
traceback, and (through the CLI) exit code 2 with the records untouched.

Everything is built under tmp_path: small IDX files, CIFAR pickles in the real files' layout
(including a byte-for-byte Python 2 pickle like the ones the CIFAR archives hold) and image
folders. The CIFAR unpickler is restricted, so a pickle that would run code is refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from mfm.config import Config, ConfigError, DataConfig
from mfm.data.sources import (
    CifarUnpickler,
    DataError,
    idx_info,
    load_source,
    preview_counts,
    read_cifar_pickle,
)
from mfm.runner.preflight import PreflightError, check_data

# ---------------------------------------------------------------- writers


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    data = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data += arr.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_idx_root(root: Path, gz: bool = False, per_class: int = 20) -> dict[str, Path]:
    """The four (Fashion-)MNIST IDX files with tiny random images."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    y_train, y_test = np.tile(np.arange(10), per_class), np.tile(np.arange(10), 5)
    return {
        "train_images": write_idx(root / "train-images-idx3-ubyte",
                                  rng.integers(0, 256, (y_train.size, 28, 28)), gz),
        "train_labels": write_idx(root / "train-labels-idx1-ubyte", y_train, gz),
        "test_images": write_idx(root / "t10k-images-idx3-ubyte",
                                 rng.integers(0, 256, (y_test.size, 28, 28)), gz),
        "test_labels": write_idx(root / "t10k-labels-idx1-ubyte", y_test, gz),
    }


def py2_pickle(obj: object) -> bytes:
    """``obj`` pickled as Python 2's cPickle (protocol 2) wrote the CIFAR batches: bytes are
    Python 2 str (SHORT_BINSTRING/BINSTRING), uint8 arrays go through
    numpy.core.multiarray._reconstruct, numpy.ndarray and numpy.dtype."""
    out = bytearray(b"\x80\x02")

    def w(o: object) -> None:
        if isinstance(o, bytes):
            out.extend(b"U" + bytes([len(o)]) + o if len(o) < 256
                       else b"T" + struct.pack("<i", len(o)) + o)
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else b"J" + struct.pack("<i", o))
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, tuple):
            out.extend(b"(")
            for x in o:
                w(x)
            out.extend(b"t")
        elif isinstance(o, list):
            out.extend(b"](")
            for x in o:
                w(x)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                w(k)
                w(v)
            out.extend(b"u")
        elif isinstance(o, np.ndarray) and o.dtype == np.uint8:
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            w((0,))
            w(b"b")
            out.extend(b"\x87R(K\x01")  # TUPLE3 REDUCE, then the state tuple
            w(tuple(o.shape))
            out.extend(b"cnumpy\ndtype\n")
            w(b"u1")
            w(0)
            w(1)
            out.extend(b"\x87R")
            w((3, b"|", None, None, None, -1, -1, 0))
            out.extend(b"b\x89")
            w(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    w(obj)
    return bytes(out + b".")


def _cifar_batch(n: int, label_key: bytes, num_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"training batch",
             label_key: [int(i % num_classes) for i in range(n)],
             b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
             b"filenames": [b"img_%d.png" % i for i in range(n)]}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [0] * n
    return batch


def make_cifar_root(root: Path, name: str = "cifar10", py2: bool = True) -> Path:
    """A CIFAR folder in the real layout (bytes keys as the real files show under
    encoding='bytes'); Python 2 pickles like the archives', or Python 3 ones."""
    dump = py2_pickle if py2 else pickle.dumps
    if name == "cifar10":
        d = root / "cifar-10-batches-py"
        d.mkdir(parents=True)
        for i in range(1, 6):
            (d / f"data_batch_{i}").write_bytes(dump(_cifar_batch(30, b"labels", 10, i)))
        (d / "test_batch").write_bytes(dump(_cifar_batch(20, b"labels", 10, 0)))
        (d / "batches.meta").write_bytes(dump({
            b"label_names": [b"c%d" % i for i in range(10)], b"num_cases_per_batch": 30,
            b"num_vis": 3072}))
    else:
        d = root / "cifar-100-python"
        d.mkdir(parents=True)
        (d / "train").write_bytes(dump(_cifar_batch(1500, b"fine_labels", 100, 1)))
        (d / "test").write_bytes(dump(_cifar_batch(200, b"fine_labels", 100, 2)))
        (d / "meta").write_bytes(dump({b"fine_label_names": [b"f%d" % i for i in range(100)],
                                       b"coarse_label_names": [b"k%d" % i for i in range(20)]}))
    return d


def make_imagefolder(root: Path, classes=("a", "b"), per_class: int = 6) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(d / f"{i}.png")
    return root


def data_cfg(name: str, root: Path | str, **kw) -> DataConfig:
    kw.setdefault("meta_per_class", 1)
    kw.setdefault("imbalance_factor", 2.0)
    return DataConfig(name=name, root=str(root), **kw)


def preflight_error(cfg: DataConfig, *needles: str) -> str:
    """check_data's message: one line, naming data.root and each needle."""
    with pytest.raises(PreflightError) as e:
        check_data(Config(data=cfg))
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg and "Traceback" not in msg
    assert msg.startswith("data.root: "), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ---------------------------------------------------------------- hostile pickles

class _RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpensFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("make, asked", [(_RunsShell, "os.system"), (_OpensFile, "io.open")])
@pytest.mark.parametrize("victim", ["data_batch_1", "batches.meta", "test_batch"])
def test_code_running_pickle_is_refused(tmp_path, make, asked, victim):
    d = make_cifar_root(tmp_path / "root")
    marker = tmp_path / "pwned"
    (d / victim).write_bytes(pickle.dumps({b"data": make(marker), b"labels": [0]}))
    msg = preflight_error(data_cfg("cifar10", tmp_path / "root"), str(d / victim), asked,
                          "refusing to unpickle")
    assert "is not a CIFAR batch" in msg
    with pytest.raises(DataError):
        load_source(data_cfg("cifar10", tmp_path / "root"), download=False)
    assert not marker.exists()


def test_the_hostile_pickle_would_have_run(tmp_path):
    """The control: plain pickle.load does create the marker; the restricted one does not."""
    evil = tmp_path / "data_batch_1"
    marker = tmp_path / "pwned"
    evil.write_bytes(pickle.dumps({"data": _OpensFile(marker)}))
    with pytest.raises(DataError, match="io.open"):
        read_cifar_pickle(evil)
    assert not marker.exists()
    with open(evil, "rb") as f:
        pickle.load(f).clear()
    assert marker.exists()


@pytest.mark.parametrize("payload", [
    b"\x80\x02cbuiltins\neval\nU\x041+1\x85R.",                  # GLOBAL builtins.eval
    b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.",  # STACK_GLOBAL
    b"cposix\nsystem\n(S'true'\ntR.",                          # protocol 0
    b"\x80\x02c_codecs\nencode\nU\x01xU\x09rot13xxxx\x86R.",    # encode, not latin1
])
def test_other_globals_are_refused(tmp_path, payload):
    p = tmp_path / "data_batch_1"
    p.write_bytes(payload)
    with pytest.raises(DataError) as e:
        read_cifar_pickle(p)
    assert "refusing to unpickle" in str(e.value) or "not a CIFAR" in str(e.value)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_refused_name_is_shown_safely(tmp_path):
    p = tmp_path / "data_batch_1"
    name = b"sy\x1b[31mstem\x1b"
    p.write_bytes(b"\x80\x04\x8c\x02os\x8c" + bytes([len(name)]) + name + b"\x93.")
    with pytest.raises(DataError) as e:
        read_cifar_pickle(p)
    assert "\x1b" not in str(e.value) and "\\e[31m" in str(e.value)


# ---------------------------------------------------------------- genuine CIFAR layouts load

@pytest.mark.parametrize("py2", [True, False], ids=["python2-pickles", "python3-pickles"])
def test_cifar10_real_layout_loads(tmp_path, py2):
    make_cifar_root(tmp_path, "cifar10", py2=py2)
    s = load_source(data_cfg("cifar10", tmp_path), download=False)
    assert s.classes == tuple(f"c{i}" for i in range(10))
    assert s.train_images.shape == (150, 3, 32, 32) and s.train_images.dtype == np.uint8
    assert s.test_images.shape == (20, 3, 32, 32)
    assert np.bincount(s.train_labels).tolist() == [15] * 10
    check_data(Config(data=data_cfg("cifar10", tmp_path)))
    assert preview_counts(data_cfg("cifar10", tmp_path))["test"] == [2] * 10


def test_cifar100_real_layout_loads(tmp_path):
    make_cifar_root(tmp_path, "cifar100")
    s = load_source(data_cfg("cifar100", tmp_path), download=False)
    assert s.num_classes == 100 and s.classes[7] == "f7"
    assert s.train_images.shape == (1500, 3, 32, 32)
    assert np.bincount(s.train_labels).tolist() == [15] * 100


@pytest.mark.parametrize("encoding, key", [("bytes", b"data"), ("latin1", "data")])
def test_python2_batch_under_both_encodings(tmp_path, encoding, key):
    batch = _cifar_batch(4, b"labels", 10, 0)
    p = tmp_path / "data_batch_1"
    p.write_bytes(py2_pickle(batch))
    got = read_cifar_pickle(p, encoding=encoding)
    assert np.array_equal(got[key], batch[b"data"]) and got[key].dtype == np.uint8
    # the same objects as an unrestricted load gives
    ref = pickle.loads(p.read_bytes(), encoding=encoding)
    assert list(got) == list(ref) and np.array_equal(got[key], ref[key])


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickles_of_every_protocol_load(protocol):
    obj = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [np.int64(3), 4]}
    got = CifarUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol)),
                         encoding="bytes").load()
    assert np.array_equal(got[b"data"], obj[b"data"]) and got[b"labels"] == [3, 4]


# ---------------------------------------------------------------- CIFAR files that are wrong

def test_cifar_truncated(tmp_path):
    d = make_cifar_root(tmp_path)
    p = d / "data_batch_3"
    p.write_bytes(p.read_bytes()[:5000])
    preflight_error(data_cfg("cifar10", tmp_path), str(p), "truncated")


def test_cifar_not_a_pickle(tmp_path):
    d = make_cifar_root(tmp_path)
    (d / "test_batch").write_text("hello, this is not a pickle\n" * 3)
    preflight_error(data_cfg("cifar10", tmp_path), str(d / "test_batch"), "not a CIFAR")


def test_cifar_empty_file(tmp_path):
    d = make_cifar_root(tmp_path)
    (d / "batches.meta").write_bytes(b"")
    preflight_error(data_cfg("cifar10", tmp_path), str(d / "batches.meta"), "truncated")


def test_cifar10_folder_given_as_cifar100(tmp_path):
    """The right folder name holding the other dataset's files: the key is named."""
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name in ("train", "test"):
        (d / name).write_bytes(py2_pickle(_cifar_batch(10, b"labels", 10, 0)))
    (d / "meta").write_bytes(py2_pickle({b"fine_label_names": [b"x"] * 100}))
    preflight_error(data_cfg("cifar100", tmp_path), str(d / "train"), "fine_labels")


@pytest.mark.parametrize("batch, words", [
    ({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, "(3, 3072)"),
    ({b"data": np.zeros((3, 3072), np.float32), b"labels": [0, 1, 2]}, "uint8"),
    ({b"data": [1, 2, 3], b"labels": [0, 1, 2]}, "got list"),
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 12]}, "0..9"),
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": ["a", "b", "c"]}, "integer labels"),
    ([1, 2, 3], "found a list"),
])
def test_cifar_batch_contents_checked(tmp_path, batch, words):
    d = make_cifar_root(tmp_path)
    (d / "data_batch_2").write_bytes(pickle.dumps(batch))
    preflight_error(data_cfg("cifar10", tmp_path), str(d / "data_batch_2"), words)


def test_cifar_meta_without_names(tmp_path):
    d = make_cifar_root(tmp_path)
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": []}))
    preflight_error(data_cfg("cifar10", tmp_path), str(d / "batches.meta"), "label_names")


# ---------------------------------------------------------------- IDX files

def test_idx_reference_folder_passes(tmp_path):
    make_idx_root(tmp_path)
    check_data(Config(data=data_cfg("fashion-mnist", tmp_path)))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("which", ["train_images", "train_labels", "test_images",
                                   "test_labels"])
def test_idx_truncated(tmp_path, which, gz):
    files = make_idx_root(tmp_path, gz=gz)
    p = files[which]
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    msg = preflight_error(data_cfg("fashion-mnist", tmp_path), str(p))
    assert "truncated" in msg or "cannot read" in msg


@pytest.mark.parametrize("which", ["train_images", "test_labels"])
def test_idx_wrong_magic(tmp_path, which):
    p = make_idx_root(tmp_path)[which]
    data = bytearray(p.read_bytes())
    data[0:4] = b"\x1f\x8b\x08\x00"  # e.g. a gzip file saved without .gz
    p.write_bytes(bytes(data))
    preflight_error(data_cfg("mnist", tmp_path), str(p), "not an IDX file", "magic")


def test_idx_header_cut_short(tmp_path):
    p = make_idx_root(tmp_path)["test_images"]
    p.write_bytes(p.read_bytes()[:9])
    preflight_error(data_cfg("mnist", tmp_path), str(p), "truncated IDX file (header")


def test_idx_images_labels_disagree(tmp_path):
    files = make_idx_root(tmp_path)
    write_idx(files["test_images"], np.zeros((7, 28, 28), np.uint8))
    preflight_error(data_cfg("fashion-mnist", tmp_path), str(files["test_images"]), "N = 50")


def test_idx_labels_out_of_range(tmp_path):
    files = make_idx_root(tmp_path)
    write_idx(files["train_labels"], np.full(200, 11, np.uint8))
    preflight_error(data_cfg("mnist", tmp_path), str(files["train_labels"]), "0..9")


def test_idx_info_does_not_load_all(tmp_path):
    p = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((5, 4, 4), np.uint8), gz=True)
    dtype, shape = idx_info(p)
    assert dtype == np.uint8 and shape == (5, 4, 4)


# ---------------------------------------------------------------- roots and folders

def test_missing_root(tmp_path):
    preflight_error(data_cfg("fashion-mnist", tmp_path / "nope"), str(tmp_path / "nope"),
                    "does not exist")


def test_root_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    preflight_error(data_cfg("cifar100", f), str(f), "not a folder")


@pytest.mark.parametrize("name, words", [("fashion-mnist", "train-images-idx3-ubyte"),
                                         ("mnist", "IDX files"),
                                         ("cifar10", "cifar-10-batches-py/"),
                                         ("cifar100", "cifar-100-python/"),
                                         ("imagefolder", "no train/ folder")])
def test_empty_root(tmp_path, monkeypatch, name, words):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/mfm fallback
    (tmp_path / "empty").mkdir()
    preflight_error(data_cfg(name, tmp_path / "empty"), str(tmp_path / "empty"), words)


def test_imagefolder_without_test(tmp_path):
    make_imagefolder(tmp_path)
    for p in sorted((tmp_path / "test").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (tmp_path / "test").rmdir()
    preflight_error(data_cfg("imagefolder", tmp_path), str(tmp_path), "no test/ folder")


def test_imagefolder_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "loose.png").write_bytes(b"")
    preflight_error(data_cfg("imagefolder", tmp_path), str(tmp_path / "train"),
                    "no class sub-folders")


def test_imagefolder_class_without_images(tmp_path):
    make_imagefolder(tmp_path)
    (tmp_path / "train" / "c").mkdir()
    (tmp_path / "test" / "c").mkdir()
    preflight_error(data_cfg("imagefolder", tmp_path), str(tmp_path / "train" / "c"),
                    "no image files")


def test_imagefolder_unreadable_class_folder(tmp_path, monkeypatch):
    make_imagefolder(tmp_path)
    locked = tmp_path / "train" / "b"
    rglob = Path.rglob

    def denied(self, pattern):  # what chmod 0 gives a non-root user
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return rglob(self, pattern)

    monkeypatch.setattr(Path, "rglob", denied)
    preflight_error(data_cfg("imagefolder", tmp_path), str(locked), "cannot list",
                    "Permission denied")


@pytest.mark.parametrize("workers", [0, 1])
def test_undecodable_image_names_the_file(tmp_path, workers):
    torch = pytest.importorskip("torch")
    from mfm.data.loader import build_data

    make_imagefolder(tmp_path)
    bad = tmp_path / "train" / "a" / "3.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        build_data(data_cfg("imagefolder", tmp_path, image_size=8, num_workers=workers,
                            test_per_class=1),
                   batch_size=4, eval_batch_size=4, device=torch.device("cpu"), seed=0,
                   download=False)
    msg = str(e.value)
    assert "\n" not in msg and "Original Traceback" not in msg
    assert msg.startswith("data.root: imagefolder: cannot decode") and str(bad) in msg


def test_data_error_is_a_config_error_and_pickles():
    e = DataError("'/x/y' is bad")
    assert isinstance(e, ConfigError) and e.key == "data.root"
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) == "data.root: '/x/y' is bad"


# ---------------------------------------------------------------- through the CLI

def _fingerprint(p: Path) -> tuple[str | None, ...]:
    return tuple(hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
                 for f in (p, p.with_name(p.name + "-wal")))


@pytest.fixture
def seeded_db(tmp_path, monkeypatch) -> Path:
    from mfm.store import Database, repo

    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.delenv("MFM_DEBUG", raising=False)
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = tmp_path / "experiments.db"
    with Database(str(db)) as d:
        repo.create_run(d, config={"data": {"name": "digits"}}, epochs_total=1, name="old",
                        status="queued")
    return db


def _cli(db: Path, *sets: str, capsys) -> tuple[int, str]:
    from mfm.cli.main import main

    argv = ["run", "--headless", "--db", str(db), "--set", "model.name=resnet_tiny",
            "--set", "train.epochs=1", "--set", "device=cpu"]
    for s in sets:
        argv += ["--set", s]
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def _assert_refused(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: data.root: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_hostile_cifar(tmp_path, seeded_db, capsys):
    d = make_cifar_root(tmp_path / "cifar")
    marker = tmp_path / "pwned"
    (d / "data_batch_4").write_bytes(pickle.dumps({b"data": _RunsShell(marker)}))
    before = _fingerprint(seeded_db)
    code, err = _cli(seeded_db, "data.name=cifar10", f"data.root={tmp_path / 'cifar'}",
                     "data.meta_per_class=1", capsys=capsys)
    _assert_refused(code, err, str(d / "data_batch_4"), "os.system")
    assert not marker.exists()
    assert _fingerprint(seeded_db) == before


def test_cli_truncated_idx_images(tmp_path, seeded_db, capsys):
    """Only a labels read happens before a run is recorded; the image file is still checked."""
    files = make_idx_root(tmp_path / "fm", gz=True)
    p = files["train_images"]
    p.write_bytes(p.read_bytes()[:3000])
    before = _fingerprint(seeded_db)
    code, err = _cli(seeded_db, "data.name=fashion-mnist", f"data.root={tmp_path / 'fm'}",
                     "data.meta_per_class=1", capsys=capsys)
    _assert_refused(code, err, str(p))
    assert _fingerprint(seeded_db) == before


def test_cli_missing_root(tmp_path, seeded_db, capsys):
    before = _fingerprint(seeded_db)
    code, err = _cli(seeded_db, "data.name=mnist", f"data.root={tmp_path / 'nowhere'}",
                     capsys=capsys)
    _assert_refused(code, err, str(tmp_path / "nowhere"), "does not exist")
    assert _fingerprint(seeded_db) == before
