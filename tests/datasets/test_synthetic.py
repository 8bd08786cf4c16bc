"""The generated GRC Shapes dataset: COCO format, seeded, never overwrites."""
import json
import os

import pytest

from grc_mmdet.datasets import dataset_ready, make_synthetic_coco


def test_seeded_coco_files(tmp_path):
    a = make_synthetic_coco(str(tmp_path / 'a'), num_train=3, num_val=2, img_size=(40, 56))
    b = make_synthetic_coco(str(tmp_path / 'b'), num_train=3, num_val=2, img_size=(40, 56))
    for split in ('train', 'val'):
        with open(a[split]) as fa, open(b[split]) as fb:
            ja, jb = json.load(fa), json.load(fb)
        assert ja == jb and ja['annotations'] and len(ja['categories']) == 4
    assert dataset_ready(str(tmp_path / 'a'))


@pytest.mark.parametrize('leave', ['annotations', 'images'])
def test_never_overwrites(tmp_path, leave):
    root = tmp_path / 'shapes'
    make_synthetic_coco(str(root), num_train=2, num_val=1, img_size=(32, 32))
    if leave == 'images':  # images without annotation files
        for f in (root / 'annotations').iterdir():
            f.unlink()
    before = {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}
    with pytest.raises(FileExistsError, match='never overwrites'):
        make_synthetic_coco(str(root), num_train=2, num_val=1, img_size=(32, 32))
    assert before == {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}
    assert os.listdir(root / 'train')
