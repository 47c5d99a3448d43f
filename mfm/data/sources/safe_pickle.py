"""Restricted unpickling for data files that are pickles (CIFAR batches, animal-mnist): the one
home of the rule of what such a file may build.

:class:`NumpyUnpickler` builds dicts, lists, tuples, str/bytes, numbers and numpy arrays and
nothing else: a pickle that asks for any other global (``os.system``, ``builtins.eval``) is
refused before anything in it runs. :func:`read_numpy_pickle` reads one file (gzipped or not)
with it and turns every failure into a one-line :class:`DataError` naming the file.

numpy and the standard library only.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mfm.data.sources.base import DataError, one_line, shown_path
from mfm.text import visible

__all__ = ["NumpyUnpickler", "read_numpy_pickle"]


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


def _latin1_encode(text: str, encoding: str) -> bytes:
    # How pickle protocols 0-2 write a bytes object: _codecs.encode(text, 'latin1').
    if encoding != "latin1" or not isinstance(text, str):
        raise _Refused("_codecs", f"encode(..., {encoding!r})")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # What numpy arrays pickle as (numpy.core.multiarray._reconstruct, numpy.ndarray,
    # numpy.dtype; the CIFAR batches and the animal-mnist files reference exactly these), plus
    # what numpy 2 and newer pickle protocols write for the same objects, each mapped to this
    # numpy's objects: numpy._core (numpy 2's module name), multiarray.scalar (a list of numpy
    # ints), numeric._frombuffer (an array at protocol 5, Python 3.14's default) and
    # _codecs.encode (bytes at protocol 2, latin1 only). None of these runs anything but a
    # numpy constructor.
    reconstruct = np.array(0).__reduce__()[0]
    scalar = np.int64(0).__reduce__()[0]
    frombuffer = np.arange(2).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                           ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler for data files: dicts, lists, tuples, str/bytes, numbers and numpy arrays.
    ``find_class`` hands out numpy's array/dtype/scalar reconstructors and nothing else, so a
    pickle that asks for any other global (``os.system``, ``builtins.eval``) is refused before
    anything in it runs."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if NumpyUnpickler._allowed is None:
            NumpyUnpickler._allowed = _numpy_globals()
        found = NumpyUnpickler._allowed.get((module, name))
        if found is None:
            raise _Refused(module, name)
        return found


def read_numpy_pickle(path: str | Path, *, noun: str, fix: str, encoding: str = "latin1",
                      gzipped: bool = False) -> Any:
    """Unpickle one file with :class:`NumpyUnpickler` (through gzip when ``gzipped``).

    ``noun`` names what the file should be in errors ("a CIFAR batch"); ``fix`` says how to
    get a good copy of a truncated one. ``encoding`` decodes Python 2 str objects: 'latin1'
    gives str, 'bytes' gives bytes; numpy arrays load either way. Errors are one-line
    :class:`DataError`."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            return NumpyUnpickler(f, encoding=encoding).load()
    except _Refused as e:
        module = "os" if e.module in ("posix", "nt") else e.module  # os.system's home
        asked = visible(f"{module}.{e.name}", limit=120)
        raise DataError(f"{shown_path(path)} is not {noun} (it asks to load {asked}); "
                        "refusing to unpickle it") from None
    except EOFError:  # the pickle (or the gzip stream around it) ends early
        raise DataError(f"{shown_path(path)} is truncated (the pickle ends early; {fix})") \
            from None
    except OSError as e:  # includes gzip.BadGzipFile
        raise DataError(f"cannot read {shown_path(path)} ({noun}): {one_line(e)}") from None
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise DataError(f"{shown_path(path)} is truncated (the pickle ends early; {fix})") \
                from None
        raise DataError(f"{shown_path(path)} is not {noun} (a pickle): {one_line(e)}") from None
    except zlib.error as e:
        raise DataError(f"cannot read {shown_path(path)} ({noun}): {one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"{shown_path(path)} is not {noun} (a pickle): {one_line(e)}") from None
