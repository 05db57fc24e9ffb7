"""Type stubs of the native module (src/*.rs)."""

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, "os.PathLike[str]"]

def convert(
    input: Union[_Path, Sequence[_Path]],
    output: _Path,
    labels: Optional[_Path] = None,
    label_column: Optional[str] = None,
    max_side: Optional[int] = None,
    quality: Optional[int] = None,
    mode: str = "jpeg",
    threads: int = 0,
    strict: bool = False,
    file_list: Optional[_Path] = None,
    max_pixels: Optional[int] = None,
) -> Dict[str, Any]:
    """Converts images into a record file, as `uic convert` does.

    input: a folder (ImageFolder when it has class subfolders, flat otherwise with
      `labels`), the ImageNet train tar (a tar of per-class tars), a tar of images with
      `labels`, or WebDataset shards (a list of .tar files, or a brace pattern such as
      "shard-{000000..000099}.tar").
    labels: a CSV with a header (`file` and `label_column` columns), Kaggle's
      LOC_val_solution.csv, or `file label` lines (ImageNet's val.txt), told apart by content.
    max_side: downscale images whose longest side exceeds it (re-encodes every JPEG).
    quality: JPEG quality 1-100 of re-encoded images (giving it re-encodes every JPEG).
    mode: "jpeg" (passthrough or re-encoded) or "raw" (RGB pixels).
    threads: worker threads, 0 for one per core.
    strict: fail, writing nothing, if any input file is skipped.
    file_list: a text file of image paths relative to `input`, one per line, converted in
      list order.
    max_pixels: skip images declaring more pixels than this (decompression bombs); the
      CLI's default when None.

    Returns the report (also written to OUTPUT.report.json) plus its one-line `summary`.
    An existing output is replaced only when the conversion succeeds. Raises ValueError
    for bad input or settings and OSError for I/O, with the CLI's messages.
    """

class RecordFile:
    """A record file written by `convert`, memory-mapped and validated on open."""

    def __init__(self, path: _Path) -> None: ...
    def __len__(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def mode(self) -> str: ...
    @property
    def labels(self) -> Optional[npt.NDArray[np.int64]]:
        """Each sample's label, or None for a file without labels."""
    def source_path(self, index: int) -> str: ...
    def __getitem__(self, index: int) -> Dict[str, Any]:
        """Sample `index` (negative counts from the end) as a dict: index, label (None
        without labels), width, height, path, and data (the stored bytes: a JPEG file, or
        RGB pixels in raw mode)."""
    def verify(self) -> List[Dict[str, Any]]:
        """CRC-checks every record; the bad ones as dicts (index, path, expected, actual)."""

Batch = Tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64]]

class Epoch(Iterator[Batch]):
    """One epoch's batches, in order; `len()` is its batch count."""

    @property
    def epoch(self) -> int: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> "Epoch": ...
    def __next__(self) -> Batch: ...

class Loader:
    """A multithreaded loader over a record file.

    Each batch is `(images, labels, indices)`: images uint8 N x 3 x H x W (RGB, the
    loader's own buffer lent without a copy: valid while held), labels and indices int64.

    file: a path or a RecordFile.
    size: output side, or (height, width).
    threads: decoding threads, 0 for one per core.
    order: "random" (a fresh permutation each epoch), "sequential", or "quasi_random"
      (FFCV's: 8 MiB blocks shuffled, samples shuffled within 2 blocks; for files larger
      than RAM).
    seed: seeds the order and every crop and augmentation draw: batches are a pure function
      of (file, settings, seed, epoch), whatever `threads` is.
    preset: "paper" (RandomResizedCrop + flip), "strong" (+ colour jitter, grayscale, blur),
      or "eval" (resize to side * 256 / 224, centre crop).
    drop_last: drop the last, incomplete batch.
    rank, world_size: data parallelism; each rank takes every world_size-th sample of the
      epoch's order (len // world_size of them), and a sample's view does not depend on
      world_size.
    batches_ahead: finished batches that may wait for the consumer.
    """

    def __init__(
        self,
        file: Union[_Path, RecordFile],
        batch_size: int,
        size: Union[int, Tuple[int, int]] = 224,
        threads: int = 0,
        order: str = "random",
        seed: int = 0,
        preset: str = "paper",
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        batches_ahead: int = 3,
    ) -> None: ...
    def epoch(self, epoch: int) -> Epoch:
        """The batches of epoch `epoch` (to replay or resume one)."""
    def __iter__(self) -> Epoch:
        """The next epoch: 0 first, then 1, ... (see `next_epoch`)."""
    def __len__(self) -> int:
        """Batches per epoch, for this rank."""
    @property
    def file(self) -> RecordFile: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def size(self) -> Tuple[int, int]: ...
    @property
    def threads(self) -> int: ...
    @property
    def num_samples(self) -> int:
        """This rank's samples per epoch."""
    @property
    def next_epoch(self) -> int:
        """The epoch plain iteration runs next; settable, to resume."""
    @next_epoch.setter
    def next_epoch(self, epoch: int) -> None: ...
    @property
    def substituted(self) -> int:
        """Samples that failed to decode and were replaced by grey, so far."""
