"""Reading MMEngine work dirs: the newest run's ``vis_data/scalars.json``."""
import glob
import json
import os.path as osp
from typing import List, Tuple


def read_scalars(work_dir: str) -> Tuple[str, List[dict]]:
    """(log folder, records) of the newest run under ``work_dir``: the
    folder ``work_dir/<timestamp>`` and every line of its
    ``vis_data/scalars.json`` (training iterations and validations)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no MMEngine log (*/vis_data/scalars.json) under {work_dir}: '
                                f'is this an MMEngine work dir?')
    with open(files[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return osp.dirname(osp.dirname(files[-1])), records


def is_train_record(record: dict) -> bool:
    """A logged training iteration (it has the iteration time and the loss)."""
    return 'time' in record and 'loss' in record
