"""Checks an event file written by `cargo run --example tensorboard_sample -- DIR` with
TensorBoard's own EventAccumulator. Usage: python3 check_events.py DIR (needs `pip install
tensorboard`; not run by CI)."""

import io
import sys

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

acc = event_accumulator.EventAccumulator(
    sys.argv[1], size_guidance={event_accumulator.IMAGES: 0, event_accumulator.SCALARS: 0}
)
acc.Reload()
tags = acc.Tags()
print("tags:", {k: v for k, v in tags.items() if v})

loss = acc.Scalars("train_loss")
assert [e.step for e in loss] == list(range(100)), "train_loss steps"
assert all(e.value == np.float32(1.0 / (e.step + 1.0)) for e in loss), "train_loss values"
assert all(e.value == np.float32(1e-4) for e in acc.Scalars("lr")), "lr values"
print("scalars: 100 steps each, values exact to f32")

def decoded(tag):
    (event,) = acc.Images(tag)
    img = np.array(Image.open(io.BytesIO(event.encoded_image_string)))
    return event, img

event, rgb = decoded("rgb_32x64")
assert (event.height, event.width) == (32, 64) and rgb.shape == (32, 64, 3), rgb.shape
ys, xs = np.mgrid[0:32, 0:64]
assert (rgb[..., 0] == 4 * xs).all() and (rgb[..., 1] == 8 * ys).all() and (rgb[..., 2] == 128).all()
print("rgb 32x64: shape", rgb.shape, "pixels correct")

event, gray = decoded("gray_48x16")
assert (event.height, event.width) == (48, 16) and gray.shape == (48, 16), gray.shape
ys, xs = np.mgrid[0:48, 0:16]
assert (gray == 5 * ys + xs).all()
print("gray 48x16: shape", gray.shape, "mode", Image.open(io.BytesIO(event.encoded_image_string)).mode, "pixels correct")

event, grid = decoded("Validation_Samples_0")
assert grid.shape == (34, 76, 3), grid.shape
print("Validation_Samples_0:", grid.shape)

(text_event,) = acc.Tensors("config")
text = tensor_util.make_ndarray(text_event.tensor_proto).item().decode()
assert text == "```yaml\nmodel:\n  depth: 4\nbase_lr: 0.0001\n```", text
print("text plugin content:", repr(text))
print("OK")
