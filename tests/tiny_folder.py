"""A tiny ImageFolder tree for training tests: 10 classes, 2 training and 1 test PNG each, 32x32."""
import os

import numpy as np
from PIL import Image


def make_tiny_folder(root, rng, structured=False):
    """Random colour photos, a class-dependent channel darkened.  structured=True also halves and
    shifts the top half per class: some structure, but no flat (clipped) areas, since equal patches
    make max-pool near-ties that rounding breaks either way."""
    for c in range(10):
        for split, n in (("train", 2), ("test", 1)):
            d = os.path.join(root, split, f"c{c}")
            os.makedirs(d)
            for i in range(n):
                px = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
                px[:, :, c % 3] //= (c % 4) + 1
                if structured:
                    px[:16] = px[:16] // 2 + 25 * (c % 5)
                Image.fromarray(px).save(os.path.join(d, f"{i}.png"))
