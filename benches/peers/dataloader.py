"""PyTorch DataLoader peers for `uic bench loader`.

Reads the original JPEGs of a flat folder (e.g. ../shared/data/imagenet-sample) and yields
uint8 N x 3 x 224 x 224 batches after RandomResizedCrop(224) + RandomHorizontalFlip, as our
loader does (`--preset paper`), or with the strong preset's augmentations after them, as
`uic bench loader --preset strong` (`--preset strong`: ColorJitter(0.4, 0.4, 0.4, 0.1) with
p 0.8, RandomGrayscale(0.2), GaussianBlur(23, sigma (0.1, 2.0)) with p 0.5, on the uint8
images). Two decoders:
  --decoder pil          the usual ImageFolder-style pipeline: PIL open + torchvision transforms
  --decoder decode_jpeg  torchvision.io.decode_jpeg on the file bytes, transforms on tensors

Run (in a venv with `pip install torch==2.11.0 torchvision pillow`):
  python benches/peers/dataloader.py ../shared/data/imagenet-sample --decoder pil --workers 2
  python benches/peers/dataloader.py DIR --decoder decode_jpeg --preset strong --workers 2
Prints one JSON line with images_per_s (median of the timed epochs after one warm-up epoch).
"""
import argparse
import json
import os
import statistics
import time

import torch
import torchvision
from torchvision.transforms import v2 as T
from PIL import Image


def strong():
    """SimCLR's colour and blur steps, as our `strong` preset (kernel 10% of 224, made odd)."""
    return [
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
    ]


class Files(torch.utils.data.Dataset):
    def __init__(self, root, decoder, preset):
        exts = (".jpeg", ".jpg")
        self.paths = sorted(os.path.join(root, f) for f in os.listdir(root) if f.lower().endswith(exts))
        self.decoder = decoder
        extra = strong() if preset == "strong" else []
        # PIL: the colour steps run on the PIL image (torchvision's PIL kernels), as an
        # ImageFolder pipeline would; decode_jpeg: on uint8 tensors.
        self.pil_tf = T.Compose([T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip(), *extra,
                                 T.PILToTensor()])
        self.tensor_tf = T.Compose([T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip(), *extra])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if self.decoder == "pil":
            with Image.open(self.paths[i]) as im:
                return self.pil_tf(im.convert("RGB"))
        data = torchvision.io.read_file(self.paths[i])
        img = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB)
        return self.tensor_tf(img)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--decoder", choices=["pil", "decode_jpeg"], default="pil")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--preset", choices=["paper", "strong"], default="paper")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ds = Files(a.root, a.decoder, a.preset)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers,
                                     persistent_workers=True, prefetch_factor=4)
    rates = []
    for epoch in range(a.epochs + 1):
        t = time.perf_counter()
        n = 0
        for batch in dl:
            assert batch.dtype == torch.uint8 and batch.shape[1:] == (3, 224, 224)
            n += batch.shape[0]
        if epoch > 0:
            rates.append(n / (time.perf_counter() - t))
    print(json.dumps({"peer": f"dataloader-{a.decoder}", "preset": a.preset, "workers": a.workers, "images_per_s": statistics.median(rates),
                      "epochs": rates, "torch": torch.__version__, "torchvision": torchvision.__version__}))


if __name__ == "__main__":
    main()
