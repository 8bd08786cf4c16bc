"""Publish a checkpoint for release, as MMDetection's tool of the same name
does, with grc_mmdet imported (so torch >= 2.6 opens our checkpoints with
safe loading, which the stock tool cannot):

    python tools/model_converters/publish_model.py IN_FILE OUT_FILE [--save-keys meta state_dict]

Keeps only ``--save-keys`` of the checkpoint (``meta`` and ``state_dict`` by
default; the optimizer state and message hub are dropped), saves it, and
renames it to ``OUT_FILE`` stem + ``-`` + the first 8 hex digits of its
SHA-256 + ``.pth``, the name MMDetection's model zoo uses.
"""
import argparse
import hashlib
import os
import os.path as osp

import torch

import grc_mmdet  # noqa: F401  (safe loading of our checkpoints)


def publish(in_file: str, out_file: str, save_keys=('meta', 'state_dict')) -> str:
    """Write the published checkpoint; returns its final path."""
    checkpoint = torch.load(in_file, map_location='cpu', weights_only=True)
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise ValueError(f'{in_file} is not an MMEngine checkpoint (no state_dict entry)')
    missing = [k for k in save_keys if k not in checkpoint]
    if missing:
        raise ValueError(f'{in_file} has no {missing} (it has {sorted(checkpoint)})')
    out_file = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    tmp = out_file + '.pth.tmp'
    torch.save({k: checkpoint[k] for k in save_keys}, tmp)
    with open(tmp, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:8]
    final = f'{out_file}-{digest}.pth'
    if osp.abspath(final) == osp.abspath(in_file):
        os.remove(tmp)
        raise ValueError(f'the published file would replace its source {in_file}')
    os.replace(tmp, final)
    return final


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('in_file', help='input checkpoint')
    p.add_argument('out_file', help='output checkpoint (the hash is added to its name)')
    p.add_argument('--save-keys', nargs='+', default=['meta', 'state_dict'],
                   help='checkpoint entries to keep')
    a = p.parse_args()
    print(f'published {publish(a.in_file, a.out_file, a.save_keys)}')


if __name__ == '__main__':
    main()
