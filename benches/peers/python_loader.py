"""`uic.Loader` from Python beside its peers, in one process and one timing harness.

Every loader yields uint8 N x 3 x 224 x 224 batches of 256 after RandomResizedCrop(224) +
random horizontal flip, in random order, on the same number of threads (our loader's
threads, the peers' workers). Each is timed the same way: one warm-up epoch, then the median
of EPOCHS epochs, iterating batches in Python and touching each one. Rounds alternate the
loaders, so a drift of the machine's speed hits them alike; compare ratios within a round.

  uic.Loader     on a record file (`--file`, repeatable: passthrough and re-encoded, say)
  uic bench      `uic bench loader FILE` (the Rust loader alone, as a subprocess), for each
                 --file when --uic-bin is given: what Python iteration is measured against
  ffcv           FFCV 1.0.2 on a .beton (--beton), if ffcv imports
  dataloader     torch DataLoader over the JPEG folder (--folder) with decode_jpeg, if torch
                 and torchvision import

Run (in a venv with the uic package, and torch, torchvision, ffcv for the peers):
  python benches/peers/python_loader.py --file /tmp/pass.uicr --file /tmp/q90.uicr \
      --uic-bin target/release/uic --beton /tmp/sample.beton \
      --folder ../shared/data/imagenet-sample --threads 2 --epochs 3 --rounds 2
Prints one JSON line per loader and round, then one summary line.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import uic


def timed(make_epoch, epochs):
    """Median images/s over `epochs` epochs after one warm-up; `make_epoch()` gives an
    iterable of batches whose first element has a len."""
    rates = []
    for e in range(epochs + 1):
        t = time.perf_counter()
        n = 0
        for batch in make_epoch():
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            assert tuple(images.shape[1:]) == (3, 224, 224), images.shape
            n += images.shape[0]
        if e > 0:
            rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates), rates


def uic_loader(path, threads, torch):
    loader = uic.Loader(path, batch_size=256, size=224, threads=threads, preset="paper", drop_last=False)

    def epoch():
        for images, labels, indices in loader:
            # What a training loop does first: a tensor over the batch (no copy).
            yield (torch.from_numpy(images),) if torch else (images,)

    return epoch


def uic_bench(bin_path, path, threads, epochs):
    out = subprocess.run(
        [bin_path, "bench", "loader", path, "--threads", str(threads), "--epochs", str(epochs), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    j = json.loads(out.strip().splitlines()[-1])
    return j["images_per_s"], j.get("fraction_of_limit_per_epoch")


def ffcv_loader(beton, threads):
    from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage

    pipe = [RandomResizedCropRGBImageDecoder((224, 224)), RandomHorizontalFlip(), ToTensor(), ToTorchImage(channels_last=False)]
    loader = Loader(beton, batch_size=256, num_workers=threads, order=OrderOption.RANDOM, os_cache=True,
                    pipelines={"image": pipe, "label": None})
    return lambda: loader


def dataloader(folder, threads):
    import torch
    import torchvision
    from torchvision.transforms import v2 as T

    class Files(torch.utils.data.Dataset):
        def __init__(self):
            self.paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith((".jpeg", ".jpg")))
            self.tf = T.Compose([T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip()])

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            data = torchvision.io.read_file(self.paths[i])
            return self.tf(torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB))

    dl = torch.utils.data.DataLoader(Files(), batch_size=256, shuffle=True, num_workers=threads,
                                     persistent_workers=True, prefetch_factor=4)
    return lambda: dl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", action="append", default=[], help="record file for uic.Loader (repeatable)")
    ap.add_argument("--uic-bin", help="the uic binary, to run `uic bench loader` on each --file")
    ap.add_argument("--beton", help="FFCV .beton (benches/peers/ffcv_loader.py writes one)")
    ap.add_argument("--folder", help="JPEG folder for the torch DataLoader peer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None

    runs = {}
    for path in a.file:
        runs[f"uic.Loader {os.path.basename(path)}"] = ("python", uic_loader(path, a.threads, torch))
        if a.uic_bin:
            runs[f"uic bench {os.path.basename(path)}"] = ("bench", path)
    if a.beton:
        runs["ffcv " + os.path.basename(a.beton)] = ("python", ffcv_loader(a.beton, a.threads))
    if a.folder:
        runs["dataloader decode_jpeg"] = ("python", dataloader(a.folder, a.threads))

    results = {name: [] for name in runs}
    for r in range(a.rounds):
        for name, (kind, what) in runs.items():
            line = {"round": r + 1, "loader": name, "threads": a.threads}
            if kind == "bench":
                rate, fractions = uic_bench(a.uic_bin, what, a.threads, a.epochs)
                line["fraction_of_limit_per_epoch"] = [round(x, 2) for x in fractions or []]
            else:
                rate, per_epoch = timed(what, a.epochs)
                line["epochs"] = [round(x, 1) for x in per_epoch]
            results[name].append(rate)
            line["images_per_s"] = round(rate, 1)
            print(json.dumps(line), flush=True)
    print(json.dumps({"summary": {name: [round(x, 1) for x in v] for name, v in results.items()},
                      "uic": uic.__version__, "torch": torch.__version__ if torch else None}))


if __name__ == "__main__":
    main()
