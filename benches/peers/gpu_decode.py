#!/usr/bin/env python3
"""PyTorch's own GPU decode path, the peer of `uic`'s nvJPEG loader: batches of JPEG bytes
decoded by `torchvision.io.decode_jpeg(device="cuda")` (batched nvJPEG), then per image a
RandomResizedCrop (scale 0.08-1, antialiased resize to 224x224) and a random flip with
`torchvision.transforms.v2.functional` on the GPU, stacked into a uint8 NCHW batch. That is
how a PyTorch user without DALI decodes on the GPU.

It reads a `uic` record file directly (layout in docs/format.md), so it decodes exactly the
bytes `uic gpu-check` times. Prints one JSON object.

    python benches/peers/gpu_decode.py gpu-check/sample320.uicr --epochs 3
"""
import argparse
import json
import random
import struct
import sys
import time


def records(path):
    """(offset, length) of every record, and the file's bytes."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if data[:8] != b"\x89UICR\r\n\x1a":
        sys.exit(f"{path}: not a uic record file")
    (num_samples,) = struct.unpack_from("<Q", data, 24)
    if data[36] != 1:
        sys.exit(f"{path}: records are not JPEG (mode {data[36]})")
    (samples_offset,) = struct.unpack_from("<Q", data, 56)
    out = []
    for i in range(num_samples):
        off, length = struct.unpack_from("<QI", data, samples_offset + 32 * i)
        out.append((off, length))
    return data, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    import torch
    import torchvision
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms import RandomResizedCrop as RRC
    from torchvision.transforms.v2 import functional as F

    data, recs = records(args.file)
    jpegs = [torch.frombuffer(data, dtype=torch.uint8, count=n, offset=o) for o, n in recs]
    rng = random.Random(0)
    n = len(jpegs)
    images = 0
    t0 = time.perf_counter()
    for epoch in range(args.epochs + 1):  # epoch 0 warms up
        if epoch == 1:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            images = 0
        order = list(range(n))
        rng.shuffle(order)
        for b in range(0, n, args.batch_size):
            idx = order[b:b + args.batch_size]
            decoded = decode_jpeg([jpegs[i] for i in idx], device="cuda", mode=ImageReadMode.RGB)
            out = []
            for img in decoded:
                top, left, h, w = RRC.get_params(img, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
                crop = F.resized_crop(img, top, left, h, w, [args.size, args.size], antialias=True)
                if rng.random() < 0.5:
                    crop = F.horizontal_flip(crop)
                out.append(crop)
            batch = torch.stack(out)
            images += batch.shape[0]
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    print(json.dumps({
        "peer": "torchvision-decode_jpeg-cuda", "torch": torch.__version__,
        "torchvision": torchvision.__version__, "images_per_s": images / secs, "images": images,
        "batch_size": args.batch_size, "size": args.size, "epochs": args.epochs,
    }))


if __name__ == "__main__":
    main()
