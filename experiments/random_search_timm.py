"""Random search over timm ViTs with an exported proxy: needs only torch, timm and the exported file.

autoprox export PROXY.json --format python --out proxy.py
python experiments/random_search_timm.py proxy.py --trials 20 --max-params 10
"""

import argparse
import importlib.util
import random
import sys

import timm
import torch

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("proxy", help="a Python file written by `autoprox export --format python`")
parser.add_argument("--trials", type=int, default=20)
parser.add_argument("--max-params", type=float, default=10.0, help="millions")
parser.add_argument("--image-size", type=int, default=224)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
spec = importlib.util.spec_from_file_location("proxy", args.proxy)
proxy = sys.modules["proxy"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(proxy)

rng, best = random.Random(args.seed), None
images = torch.randn(16, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(args.seed))
for trial in range(args.trials):
    heads, depth, mlp_ratio = rng.choice([3, 4]), rng.choice([10, 12, 14]), rng.choice([3.0, 3.5, 4.0])
    config = dict(depth=depth, embed_dim=64 * heads, num_heads=heads, mlp_ratio=mlp_ratio)
    torch.manual_seed(trial)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=100, img_size=args.image_size, **config)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    if params > args.max_params:
        continue
    score = proxy.score(model, images)
    print(f"{trial:3d}  {params:5.2f}M  score {score:.6g}  {config}")
    if best is None or score > best[0]:
        best = (score, params, config)
print(f"best: {best[2]} ({best[1]:.2f}M parameters, score {best[0]:.6g})" if best else "no architecture fits")
