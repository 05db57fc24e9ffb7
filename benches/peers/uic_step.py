#!/usr/bin/env python3
"""PyTorch eager reference for one UIC training step, to compare with `uic bench step`.

The same model, batch and step as the Rust trainer: a uint8 NCHW batch is normalised,
optionally passed through the fixed Sobel layer, fed to the network, cross-entropy on the
targets, backward, SGD (momentum 0.9, weight decay 1e-4), and argmax of the logits (the
next epoch's labels). Prints one JSON object with the median step time.

    python benches/peers/uic_step.py --arch alexnet-small --width 0.5 --input-size 32 \
        --batch-size 128 --k 30 --threads 2
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, k, stride, pad):
    return [nn.Conv2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    def __init__(self, width, small, in_ch, k, input_size, dropout=0.5):
        super().__init__()
        ch = [64, 192, 384, 256, 256] if small else [96, 256, 384, 384, 256]
        c = [max(1, round(x * width)) for x in ch]
        k1, s1 = (5, 2) if small else (11, 4)
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=small)
        layers = conv_bn(in_ch, c[0], k1, s1, 2) + [pool()]
        layers += conv_bn(c[0], c[1], 5, 1, 2) + [pool()]
        layers += conv_bn(c[1], c[2], 3, 1, 1) + conv_bn(c[2], c[3], 3, 1, 1) + conv_bn(c[3], c[4], 3, 1, 1)
        layers += [pool()]
        self.features = nn.Sequential(*layers)
        if small:
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            dim = c[4]
        else:
            side = (input_size + 4 - 11) // 4 + 1
            for _ in range(3):
                side = (side - 3) // 2 + 1
            hidden = max(1, round(4096 * width))
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Dropout(dropout), nn.Linear(c[4] * side * side, hidden), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
            dim = hidden
        self.top_layer = nn.Linear(dim, k)

    def forward(self, x):
        return self.top_layer(self.classifier(self.features(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="alexnet-small", choices=["alexnet", "alexnet-small"])
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--sobel", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--channels-last", action="store_true",
                    help="model and input in torch.channels_last (NHWC) memory format")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast of the forward pass (CUDA)")
    ap.add_argument("--data-on-device", action="store_true",
                    help="keep the batch on the device; by default it is uploaded from host memory "
                         "every step (pinned, non-blocking), as in training")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    small = args.arch == "alexnet-small"
    model = AlexNet(args.width, small, 2 if args.sobel else 3, args.k, args.input_size)
    model.train()
    model = model.to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)
    scale, shift = 1.0 / (255.0 * std), -mean / std
    gx = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    sobel_w = (torch.stack([gx, gx.t()]).unsqueeze(1).repeat(1, 3, 1, 1) / 3.0).to(dev)
    s = args.input_size
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (args.batch_size, 3, s, s), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, args.k, (args.batch_size,), generator=g)
    if dev.type != "cpu" and args.data_on_device:
        pixels = pixels.to(dev)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        x = pixels
        if x.device.type != dev.type:
            x = x.pin_memory().to(dev, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.float() * scale + shift
        if args.sobel:
            x = F.conv2d(x, sobel_w, padding=1)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), targets.to(dev))
        opt.zero_grad()
        loss.backward()
        lv = loss.item()
        opt.step()
        pred = logits.detach().argmax(1).tolist()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
        assert lv == lv and len(pred) == args.batch_size
    med = statistics.median(times)
    print(json.dumps({
        "peer": "pytorch-eager", "torch": torch.__version__, "arch": args.arch, "width": args.width,
        "input_size": s, "batch_size": args.batch_size, "k": args.k, "sobel": args.sobel,
        "threads": args.threads, "channels_last": args.channels_last, "device": args.device,
        "amp": args.amp, "data_on_device": args.data_on_device, "steps": args.steps, "step_ms_median": med * 1e3,
        "step_ms_mean": statistics.mean(times) * 1e3, "images_per_s": args.batch_size / med,
    }))


if __name__ == "__main__":
    main()
