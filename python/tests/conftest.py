"""Shared fixtures: a synthetic ImageFolder converted once per session, and the Rust side of
the "same batches" test (loader/examples/batch_dump.rs)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import uic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """An ImageFolder of 4 classes x 10 synthetic 64 px JPEGs."""
    root = tmp_path_factory.mktemp("images")
    uic._uic._synth_image_folder(root, classes=4, per_class=10, size=64, seed=3)
    return root


@pytest.fixture(scope="session")
def record(folder, tmp_path_factory):
    """`folder` converted into a record file (40 samples)."""
    out = tmp_path_factory.mktemp("rec") / "train.uicr"
    uic.convert(folder, out, threads=2)
    return out


@pytest.fixture(scope="session")
def batch_dump():
    """A function running the Rust loader (the `batch_dump` example) on a file, returning
    [(epoch, batch, images bytes, labels, indices)]."""
    exe = os.environ.get("UIC_BATCH_DUMP")
    if not exe:
        built = REPO / "target" / "debug" / "examples" / "batch_dump"
        if not built.exists() and shutil.which("cargo"):
            subprocess.run(
                ["cargo", "build", "-q", "-p", "uic-loader", "--example", "batch_dump"],
                cwd=REPO,
                check=True,
                timeout=1800,
            )
        exe = str(built)
    if not Path(exe).exists():
        pytest.skip(f"the Rust batch_dump example is not built ({exe}); run `cargo build -p uic-loader --example batch_dump`")

    def run(path, tmp, **settings):
        out = Path(tmp) / "dump.bin"
        args = [exe, str(path), str(out)] + [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in settings.items()]
        lines = subprocess.run(args, check=True, capture_output=True, text=True, timeout=300).stdout.splitlines()
        data = out.read_bytes()
        batches = []
        for line in lines:
            b = json.loads(line)
            px = data[b["offset"] : b["offset"] + b["bytes"]]
            batches.append((b["epoch"], b["batch"], px, np.array(b["labels"], dtype=np.int64), np.array(b["indices"], dtype=np.int64)))
        return batches

    return run
