"""A plain PyTorch training loop fed by `uic.Loader`.

    python python/examples/train_torch.py train.uicr --steps 100 --batch-size 64
    python python/examples/train_torch.py --synthetic --steps 3     # makes its own tiny data

The loader hands over uint8 N x 3 x H x W batches (no copy); the loop moves them to the
device and normalises them there, as FFCV's and DALI's users do. The model is torchvision's
ResNet-18 when torchvision is installed, else a small CNN. Labels are the file's (supervised,
to keep the example short); a UIC run would use the model's own argmax as the next epoch's
labels (`uic train`).
"""

import argparse
import tempfile
import time

import torch
import torch.nn as nn

import uic

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def small_cnn(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


def make_model(num_classes, arch):
    if arch == "resnet18":
        import torchvision

        return torchvision.models.resnet18(num_classes=num_classes)
    return small_cnn(num_classes)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", help="record file (from uic.convert or `uic convert`)")
    p.add_argument("--synthetic", action="store_true", help="convert a tiny synthetic ImageFolder first")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--arch", choices=["resnet18", "small"], default=None, help="default: resnet18 if torchvision is installed")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()

    tmp = None
    if a.synthetic:
        tmp = tempfile.TemporaryDirectory()
        uic._uic._synth_image_folder(f"{tmp.name}/images", classes=4, per_class=16, size=96, seed=0)
        uic.convert(f"{tmp.name}/images", f"{tmp.name}/train.uicr", threads=a.threads)
        a.file = f"{tmp.name}/train.uicr"
    if not a.file:
        p.error("give a record file, or --synthetic")
    if a.arch is None:
        try:
            import torchvision  # noqa: F401

            a.arch = "resnet18"
        except ImportError:
            a.arch = "small"

    loader = uic.Loader(a.file, batch_size=a.batch_size, size=a.size, threads=a.threads, preset="paper")
    device = torch.device(a.device)
    model = make_model(max(loader.file.num_classes, 1), a.arch).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    mean, std = MEAN.to(device), STD.to(device)
    step, losses, start = 0, [], time.time()
    while step < a.steps:
        for images, labels, _ in loader:  # each pass over the loader is the next epoch
            x = torch.from_numpy(images).to(device, non_blocking=True)  # uint8, no copy on the host
            x = ((x.float() - mean) / std).contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(labels).to(device, non_blocking=True)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step >= a.steps:
                break
    took = time.time() - start
    print(
        f"{a.arch}: {step} steps of {a.batch_size} on {device}, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"{step * a.batch_size / took:.0f} img/s"
    )
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
