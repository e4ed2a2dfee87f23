"""Peak memory of train + eval on generated 224×224 image folders of two sizes, and the loader's images/s.

    .venv/bin/python benchmarks/imagefolder_memory.py [--small 2000] [--large 20000] [--model NAME]

For each folder size, a fresh process trains one epoch through `edgepipe.stages.train` (DataLoader workers,
augmentation) and scores the val and test splits; its peak RSS (the main process, and the largest worker) is
read from getrusage. Memory that does not grow with the folder is the point: the large folder's peak should
stay within 20 % of the small one's, and under 3 GB. The loader's decode rate (images/s through the training
view, same workers) is reported beside the model's own training step rate on the same batch size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch, yaml
from edgepipe.recipe import load_recipe
from edgepipe.data import load_dataset
from edgepipe.stages.train import train
recipe_path, out = Path(sys.argv[1]), Path(sys.argv[2])
recipe = load_recipe(recipe_path)
data = load_dataset(recipe.dataset)
order = torch.randperm(len(data.train)).split(recipe.train.batch_size)[:20]
start = time.perf_counter(); seen = 0
for batch in data.train.train_batches(order):
    seen += len(batch)
loader_rate = seen / (time.perf_counter() - start)
from edgepipe.models import build_model
model = build_model({"name": recipe.model.name, "params": {}, "input_shape": list(data.input_shape),
                     "num_classes": data.num_classes})
x = torch.randn(recipe.train.batch_size, *data.input_shape); y = torch.zeros(len(x), dtype=torch.long)
opt = torch.optim.Adam(model.parameters())
start = time.perf_counter()
for _ in range(3):
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
step_rate = 3 * len(x) / (time.perf_counter() - start)
started = time.perf_counter()
train(recipe, out)
seconds = time.perf_counter() - started
print(json.dumps({"images": len(data.train) + len(data.val) + len(data.test), "train_eval_s": round(seconds, 1),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "loader_images_per_s": round(loader_rate, 1), "train_step_images_per_s": round(step_rate, 1)}))
"""


def _measure(root: Path, images: int, model: str, workers: int) -> dict:
    from edgepipe.data.sample_folder import write_sample_folder

    folder = root / f"folder-{images}"
    if not folder.is_dir():
        started = time.perf_counter()
        write_sample_folder(folder, images=images, sizes=(200, 320), seed=images)
        print(f"generated {images} images in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    recipe = root / f"recipe-{images}.yaml"
    recipe.write_text(json.dumps({
        "name": f"memory-{images}", "model": {"name": model},
        "dataset": {"name": "imagefolder", "path": str(folder), "image_size": [224, 224], "resize": 256,
                    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "workers": workers,
                    "augment": {"random_resized_crop": [0.35, 1.0], "horizontal_flip": 0.5}},
        "train": {"epochs": 1, "batch_size": 32}}))
    result = subprocess.run([sys.executable, "-c", CHILD, str(recipe), str(root / f"run-{images}")],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--model", default="torchvision:mobilenet_v3_small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path("runs/imagefolder-memory"))
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    rows = [_measure(args.root, n, args.model, args.workers) for n in (args.small, args.large)]
    print(f"{'images':>8} {'train+eval s':>13} {'peak RSS MiB':>13} {'worker MiB':>11} {'loader img/s':>13} "
          f"{'model img/s':>12}")
    for row in rows:
        print(f"{row['images']:>8} {row['train_eval_s']:>13} {row['peak_rss_mib']:>13.0f} "
              f"{row['worker_peak_rss_mib']:>11.0f} {row['loader_images_per_s']:>13} "
              f"{row['train_step_images_per_s']:>12}")
    growth = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"] - 1
    print(f"peak RSS grows {growth:+.1%} for {rows[1]['images'] / rows[0]['images']:.0f}x the images "
          f"(floor: within 20 %, under 3 GB); this benchmark's own process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
