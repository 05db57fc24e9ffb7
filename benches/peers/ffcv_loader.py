"""FFCV peer for `uic bench loader`: writes a .beton of a flat JPEG folder the way FFCV's
ImageNet example does (JPEG re-encoded at quality 90, max side 512), then times its loader
producing uint8 N x 3 x 224 x 224 batches after RandomResizedCrop(224) + flip.

Needs: apt-get install libturbojpeg0-dev libopencv-dev pkg-config; pip install "numpy<2" ffcv
  python benches/peers/ffcv_loader.py ../shared/data/imagenet-sample /tmp/sample.beton --workers 2
Prints one JSON line with images_per_s (median of the timed epochs after one warm-up epoch).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
from PIL import Image


class Folder:
    def __init__(self, root):
        self.paths = sorted(os.path.join(root, f) for f in os.listdir(root) if f.lower().endswith((".jpeg", ".jpg")))

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return (im.convert("RGB"), 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("beton")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    from ffcv.fields import IntField, RGBImageField
    from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage
    from ffcv.writer import DatasetWriter

    if not os.path.exists(a.beton):
        w = DatasetWriter(a.beton, {"image": RGBImageField(write_mode="jpg", max_resolution=512, jpeg_quality=90),
                                    "label": IntField()}, num_workers=a.workers)
        w.from_indexed_dataset(Folder(a.root))
    pipe = [RandomResizedCropRGBImageDecoder((224, 224)), RandomHorizontalFlip(), ToTensor(), ToTorchImage(channels_last=False)]
    loader = Loader(a.beton, batch_size=a.batch_size, num_workers=a.workers, order=OrderOption.RANDOM,
                    os_cache=True, pipelines={"image": pipe, "label": None})
    rates = []
    for epoch in range(a.epochs + 1):
        t = time.perf_counter()
        n = 0
        for (images,) in loader:
            assert images.shape[1:] == (3, 224, 224)
            n += images.shape[0]
        if epoch > 0:
            rates.append(n / (time.perf_counter() - t))
    print(json.dumps({"peer": "ffcv", "workers": a.workers, "images_per_s": statistics.median(rates), "epochs": rates,
                      "beton_bytes": os.path.getsize(a.beton)}))


if __name__ == "__main__":
    main()
