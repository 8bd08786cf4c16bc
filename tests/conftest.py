import pytest


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """A small GRC Shapes dataset (12 train / 4 val images of 96x128)."""
    from grc_mmdet.datasets import make_synthetic_coco
    root = tmp_path_factory.mktemp('shapes')
    make_synthetic_coco(str(root), num_train=12, num_val=4, img_size=(96, 128), max_objects=3)
    return str(root) + '/'


@pytest.fixture(scope='session')
def crops_root(tmp_path_factory):
    """A small GRC Shapes crops dataset (ImageNet layout) for pre-training."""
    from grc_mmdet.classification import make_shapes_crops
    root = str(tmp_path_factory.mktemp('crops') / 'data')
    counts = make_shapes_crops(root, num_train=12, num_val=4, img_size=(96, 128))
    assert counts['train'] > 0 and counts['val'] > 0
    return root
