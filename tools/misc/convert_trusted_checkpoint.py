"""Convert a checkpoint you trust into one that loads with safe loading.

Safe loading (``torch.load(weights_only=True)``, which grc_mmdet keeps on,
also for http(s) URLs) refuses files that hold Python objects other than
tensors and plain containers. If such a file comes from a source you trust,
this tool loads it ONCE with full unpickling (which can run code from the
file: only do this for files you trust) and writes the tensors alone:

    python tools/misc/convert_trusted_checkpoint.py SRC_PATH_OR_URL OUT.pth

``OUT.pth`` holds ``{'state_dict': {name: tensor}}`` (from the source's
``state_dict`` or ``model`` entry, or its top level), which every loader in
this project reads with safe loading. Every entry that is not a tensor
(numpy arrays, nested dicts, other objects) is left out and named in the
output. ``OUT.pth`` must not be the source file.
"""
import argparse
import os.path as osp
from typing import List, Tuple

import torch


def tensors_only(checkpoint) -> Tuple[dict, List[str]]:
    """The tensors of a checkpoint's state dict (``state_dict``/``model``/top
    level), and the names of the entries left out (with their types)."""
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model'):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict):
        raise ValueError(f'expected a dict of tensors, got {type(checkpoint).__name__}')
    out = {k: v for k, v in checkpoint.items() if torch.is_tensor(v)}
    dropped = [f'{k} ({type(v).__module__}.{type(v).__name__})'
               for k, v in checkpoint.items() if not torch.is_tensor(v)]
    if not out:
        raise ValueError('the checkpoint holds no tensors')
    return out, dropped


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='checkpoint path or http(s) URL you trust')
    p.add_argument('out', help='output .pth (tensors only)')
    a = p.parse_args()
    if not a.src.startswith(('http://', 'https://')) and osp.exists(a.out) and \
            osp.samefile(a.src, a.out):
        raise SystemExit(f'error: the output {a.out} is the source file; write the converted '
                         f'checkpoint to another path')
    if a.src.startswith(('http://', 'https://')):
        ckpt = torch.hub.load_state_dict_from_url(a.src, map_location='cpu', weights_only=False)
    else:
        if not osp.isfile(a.src):
            raise FileNotFoundError(a.src)
        ckpt = torch.load(a.src, map_location='cpu', weights_only=False)
    state, dropped = tensors_only(ckpt)
    torch.save({'state_dict': state}, a.out)
    print(f'wrote {len(state)} tensors to {a.out}')
    if dropped:
        print(f'left out {len(dropped)} entries that are not tensors: ' + ', '.join(dropped))


if __name__ == '__main__':
    main()
