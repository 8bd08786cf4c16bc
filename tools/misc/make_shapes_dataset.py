"""Write the embedded "GRC Shapes" COCO-format dataset (no download).

    python tools/misc/make_shapes_dataset.py [--out data/shapes] [--num-train 400]
        [--num-val 80] [--height 192 --width 256] [--max-objects 5] [--seed 0]
"""
import argparse
import time

from grc_mmdet.datasets import make_synthetic_coco


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='data/shapes')
    p.add_argument('--num-train', type=int, default=400)
    p.add_argument('--num-val', type=int, default=80)
    p.add_argument('--height', type=int, default=192)
    p.add_argument('--width', type=int, default=256)
    p.add_argument('--max-objects', type=int, default=5)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    t = time.time()
    files = make_synthetic_coco(a.out, a.num_train, a.num_val, (a.height, a.width),
                                a.max_objects, a.seed)
    print(f'wrote {files} in {time.time() - t:.1f}s')


if __name__ == '__main__':
    main()
