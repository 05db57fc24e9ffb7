"""Re-encodes a flat folder of JPEGs as `uic convert --max-side 512 --quality 90` stores them
(longer side at most 512 px, JPEG quality 90), so that file-reading peers decode images of
the same size and quality as the record file our loader reads.

  python benches/peers/reencode.py ../shared/data/imagenet-sample /tmp/q90dir
"""
import os
import sys

from PIL import Image


def main():
    src, dst = sys.argv[1], sys.argv[2]
    max_side = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    os.makedirs(dst, exist_ok=True)
    n = 0
    for f in sorted(os.listdir(src)):
        if not f.lower().endswith((".jpeg", ".jpg")):
            continue
        with Image.open(os.path.join(src, f)) as im:
            im = im.convert("RGB")
            w, h = im.size
            if max(w, h) > max_side:
                s = max_side / max(w, h)
                im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
            im.save(os.path.join(dst, f), quality=90)
        n += 1
    print(f"{n} images -> {dst}")


if __name__ == "__main__":
    main()
