"""Record files of images, and a fast multithreaded JPEG loader whose batches feed any
PyTorch (or NumPy) training loop.

    import uic, torch
    uic.convert("imagenet/train", "train.uicr")            # a folder, or ImageNet's tars
    loader = uic.Loader("train.uicr", batch_size=256, threads=8)
    for images, labels, indices in loader:                 # one epoch; the next loop, the next
        x = torch.from_numpy(images).cuda(non_blocking=True).float().div_(255)

`images` is a uint8 NumPy array N x 3 x H x W (RGB) that shares the loader's buffer (no
copy): it stays valid as long as you hold it, and its buffer returns to the loader when the
last reference goes. `labels` and `indices` are int64 (labels -1 for a file without labels).
Decoding, cropping and augmenting run on Rust threads without the GIL.
"""

from ._uic import Epoch, Loader, RecordFile, convert

__all__ = ["convert", "RecordFile", "Loader", "Epoch"]
__version__ = "0.1.0"
