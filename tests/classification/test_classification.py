"""The ImageNet pre-training path: transforms and batch augmentations against
their definitions, datasets in both layouts, top-k accuracy, the recipe in the
configs, and a classifier's checkpoint feeding a cached Mask R-CNN."""
import math
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import grc_mmdet  # noqa: F401
from grc_mmdet.classification import (ClsDataPreprocessor, ImageNetDataset, ImageNetRandAugment,
                                      RandomResizedCrop, make_synthetic_imagenet, sample_crop,
                                      smooth_one_hot, topk_accuracy)
from grc_mmdet.classification.model import cutmix, mixup
from grc_mmdet.classification.transforms import RAND_AUGMENT_OPS
from grc_mmdet.models import grc_layers
from tests.helpers import ROOT, SMALL_CONFIG, run_tool

register_all_modules()


def test_crop_area_and_aspect_follow_their_ranges():
    rng = random.Random(0)
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    areas, aspects = [], []
    for _ in range(2000):
        top, left, h, w = sample_crop(480, 640, scale, ratio, rng)
        assert 0 <= top and top + h <= 480 and 0 <= left and left + w <= 640
        areas.append(h * w / (480 * 640))
        aspects.append(w / h)
    assert min(areas) >= 0.08 * 0.9 and max(areas) <= 1.0
    assert min(aspects) >= 0.75 * 0.97 and max(aspects) <= 4 / 3 * 1.03
    # log-uniform aspect: about half the crops are wider than tall
    assert 0.4 < np.mean(np.array(aspects) > 1) < 0.6
    # a narrow image falls back to the largest centred crop within the ratio range
    top, left, h, w = sample_crop(1000, 100, (0.9, 1.0), ratio, rng)
    assert (w, h) == (100, round(100 / 0.75)) and top == (1000 - h) // 2


def test_random_resized_crop_output_size():
    out = RandomResizedCrop(size=(32, 48))(dict(img=np.zeros((100, 70, 3), np.uint8)))
    assert out['img'].shape == (32, 48, 3)


def test_label_smoothing_target():
    t = smooth_one_hot(torch.tensor([2, 0]), 5, 0.1)
    assert torch.allclose(t[0], torch.tensor([0.02, 0.02, 0.92, 0.02, 0.02]))
    assert torch.allclose(t.sum(1), torch.ones(2))


def test_mixup_mixes_images_and_labels_with_the_same_weight():
    x = torch.randn(4, 3, 8, 8)
    y = smooth_one_hot(torch.tensor([0, 1, 2, 3]), 4, 0.1)
    perm = torch.tensor([1, 2, 3, 0])
    xm, ym = mixup(x, y, 0.7, perm)
    assert torch.allclose(xm, 0.7 * x + 0.3 * x[perm])
    assert torch.allclose(ym, 0.7 * y + 0.3 * y[perm])
    assert torch.allclose(ym.sum(1), torch.ones(4))


def test_cutmix_label_weight_is_the_pasted_area():
    x = torch.zeros(3, 1, 20, 30)
    x[1] = 1  # the image pasted into image 0
    y = torch.eye(3)
    perm = torch.tensor([1, 2, 0])
    xm, ym = cutmix(x, y, 0.6, perm, np.random.default_rng(3))
    pasted = float(xm[0].mean())  # fraction of image 0 that now comes from image 1
    assert 0 < pasted < 1
    assert torch.allclose(ym[0], torch.tensor([1 - pasted, pasted, 0.]), atol=1e-6)
    assert torch.allclose(ym.sum(1), torch.ones(3))


def test_preprocessor_makes_soft_targets_and_mixes_in_training():
    from mmengine.structures import LabelData

    from grc_mmdet.classification import ClsDataSample
    pre = ClsDataPreprocessor(num_classes=4, label_smoothing=0.1, mixup_alpha=0.8,
                              cutmix_alpha=1.0)
    samples = []
    for i in range(4):
        s = ClsDataSample()
        s.gt_label = LabelData(label=torch.tensor([i]))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)
                        for _ in range(4)], data_samples=samples)
    out = pre(data, training=True)
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    assert torch.allclose(scores.sum(1), torch.ones(4))
    assert (scores.max(1).values < 0.925 + 1e-6).all()


@pytest.mark.parametrize('kwargs,word', [
    (dict(mixup_alpha=float('inf')), 'mixup_alpha'), (dict(mixup_alpha=-1.), 'mixup_alpha'),
    (dict(mixup_alpha=float('nan')), 'mixup_alpha'), (dict(cutmix_alpha=-0.5), 'cutmix_alpha'),
    (dict(cutmix_alpha=True), 'cutmix_alpha'), (dict(switch_prob=5), 'switch_prob'),
    (dict(switch_prob=-0.1), 'switch_prob'), (dict(num_classes=0), 'num_classes')])
def test_preprocessor_refuses_out_of_range_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ClsDataPreprocessor(**dict(dict(num_classes=4), **kwargs))


def test_preprocessor_refuses_a_label_beyond_num_classes():
    from mmengine.structures import LabelData

    from grc_mmdet.classification import ClsDataSample
    s = ClsDataSample()
    s.gt_label = LabelData(label=torch.tensor([7]))
    data = dict(inputs=[torch.zeros(3, 8, 8, dtype=torch.uint8)], data_samples=[s])
    with pytest.raises(ValueError, match=r'labels must be in \[0, 4\)'):
        ClsDataPreprocessor(num_classes=4)(data, training=True)


def test_classifier_gives_its_num_classes_to_the_preprocessor():
    backbone = dict(type='PyramidVisionTransformer', embed_dims=8, num_layers=[1, 1, 1, 1])
    model = MODELS.build(dict(type='ImageClassifier', backbone=backbone, num_classes=5,
                              in_channels=64,
                              data_preprocessor=dict(type='ClsDataPreprocessor')))
    assert model.data_preprocessor.num_classes == 5
    with pytest.raises(ValueError, match='num_classes=5 but its data_preprocessor'):
        MODELS.build(dict(type='ImageClassifier', backbone=backbone, num_classes=5,
                          in_channels=64,
                          data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3)))


def test_rand_augment_magnitudes_and_ops():
    aug = ImageNetRandAugment(num_ops=2, magnitude=9, magnitude_std=0.5, prob=1.0)
    mags = [m for _ in range(500) for _, m in aug.sample(random.Random(_))]
    assert len(mags) == 1000 and 0 <= min(mags) and max(mags) <= 10
    assert abs(np.mean(mags) - 9) < 0.1 and 0.3 < np.std(mags) < 0.6
    img = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    for name, op in RAND_AUGMENT_OPS.items():
        out = op(img.copy(), 9.0, random.Random(1))
        assert out.shape == img.shape and out.dtype == np.uint8, name
    with pytest.raises(ValueError, match='unknown ops'):
        ImageNetRandAugment(ops=['Blur'])


def test_topk_accuracy():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]])
    acc = topk_accuracy(scores, torch.tensor([1, 2, 0]), topk=(1, 2))
    assert acc == pytest.approx({'top1': 100 / 3, 'top2': 200 / 3})


@pytest.fixture(scope='module')
def imagenet_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('imagenet') / 'data')
    make_synthetic_imagenet(root, per_class=4, val_per_class=2, size=64)
    return root + '/'


def test_dataset_layouts(imagenet_root):
    train = ImageNetDataset(data_root=imagenet_root, data_prefix='train')
    assert len(train) == 16 and train.metainfo['classes'] == ('circle', 'square', 'star',
                                                              'triangle')
    val = ImageNetDataset(data_root=imagenet_root, data_prefix='val', ann_file='meta/val.txt')
    assert len(val) == 8 and sorted({d['gt_label'] for d in val}) == [0, 1, 2, 3]
    with pytest.raises(FileExistsError):
        make_synthetic_imagenet(imagenet_root)


def test_synthetic_imagenet_labels_agree_between_train_and_val(imagenet_root):
    """Both splits name the same class with the same label (train/ is read in
    folder order, val/ through meta/val.txt)."""
    train = ImageNetDataset(data_root=imagenet_root, data_prefix='train')
    val = ImageNetDataset(data_root=imagenet_root, data_prefix='val', ann_file='meta/val.txt')
    classes = train.metainfo['classes']
    for d in list(train) + list(val):
        folder_or_prefix = osp.basename(d['img_path']).rsplit('_', 1)[0]
        assert classes[d['gt_label']] == folder_or_prefix, d['img_path']


def _copy_tree(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return str(dst) + '/'


def test_hidden_folders_are_skipped_and_empty_ones_refused(imagenet_root, tmp_path):
    import os
    root = _copy_tree(imagenet_root, tmp_path / 'data')
    os.makedirs(osp.join(root, 'train', '.ipynb_checkpoints'))
    train = ImageNetDataset(data_root=root, data_prefix='train')
    assert train.metainfo['classes'] == ('circle', 'square', 'star', 'triangle')
    os.makedirs(osp.join(root, 'train', 'aaa_empty'))
    with pytest.raises(ValueError, match='aaa_empty holds no image'):
        ImageNetDataset(data_root=root, data_prefix='train')


@pytest.mark.parametrize('lines,kwargs,word', [
    ('a.png 1000000000\n', {}, 'label 1000000000 for 1 images'),
    ('a.png 4\n', dict(classes=['a', 'b', 'c', 'd']), 'has label 4, but there are 4 classes'),
    ('a.png 4\n', dict(num_classes=4), 'has label 4, but there are 4 classes'),
    ('', {}, 'no images'),
    ('\n\n', dict(num_classes=4), 'no images'),
    ('a.png -1\n', {}, 'label >= 0'),
])
def test_annotation_file_labels_are_checked(tmp_path, lines, kwargs, word):
    (tmp_path / 'val.txt').write_text(lines)
    with pytest.raises(ValueError, match=word):
        ImageNetDataset(data_root=str(tmp_path), data_prefix='', ann_file='val.txt',
                        lazy_init=False, **kwargs)


RECIPE = {'pvt-t': (0.1, 5), 'pvt-s': (0.1, 5), 'pvt-m': (0.3, 5), 'pvtv2-b2': (0.1, 5),
          'swin-t-p4-w7': (0.2, 20)}


@pytest.mark.parametrize('name', list(RECIPE))
@pytest.mark.parametrize('cached', [False, True])
def test_imagenet_configs_carry_the_recipe(name, cached):
    path = (f'configs/cached_imagenet/cached-{name}_8xb128_in1k.py' if cached
            else f'configs/imagenet/{name}_8xb128_in1k.py')
    cfg = Config.fromfile(osp.join(ROOT, path))
    drop_path, warmup = RECIPE[name]
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.model.backbone.type.startswith('Cached') == cached
    assert cfg.train_cfg.max_epochs == 300
    batch = cfg.train_dataloader.batch_size * 8
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.weight_decay) == ('AdamW', 0.05)
    assert math.isclose(opt.lr, 5e-4 * batch / 512) and cfg.auto_scale_lr.base_batch_size == batch
    warm, cos = cfg.param_scheduler
    assert (warm.type, warm.end, cos.type, cos.begin, cos.end) == \
        ('LinearLR', warmup, 'CosineAnnealingLR', warmup, 300)
    pre = cfg.model.data_preprocessor
    assert (pre.label_smoothing, pre.mixup_alpha, pre.cutmix_alpha) == (0.1, 0.8, 1.0)
    pipe = {t.type: t for t in cfg.train_pipeline}
    assert pipe['RandomResizedCrop'].size == 224
    ra = pipe['ImageNetRandAugment']
    assert (ra.num_ops, ra.magnitude, ra.magnitude_std) == (2, 9, 0.5)
    assert pipe['ImageNetRandomErasing'].prob == 0.25
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert paramwise.norm_decay_mult == 0
    assert ('cache_lambda' in paramwise.custom_keys) == cached
    model = MODELS.build(cfg.model)
    assert model.head.in_features == model.backbone(torch.zeros(1, 3, 64, 64))[-1].shape[1]


NANO = ['model.backbone.embed_dims=32', 'model.backbone.num_heads=[1,2,4,8]',
        'model.backbone.num_layers=[1,1,1,1]', 'model.backbone.mlp_ratios=[4,4,4,4]',
        'model.backbone.use_conv_ffn=True',  # the nano detector's backbone (SMALL_CONFIG)
        'model.backbone.drop_path_rate=0.0', 'model.in_channels=256', 'model.num_classes=4',
        'model.data_preprocessor.num_classes=4', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.batch_size=4', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'train_cfg.max_epochs=2',
        'train_dataloader.dataset.pipeline.1.size=64', 'val_dataloader.dataset.pipeline.1.scale=72',
        'val_dataloader.dataset.pipeline.2.crop_size=64', 'default_hooks.logger.interval=1']


def test_classifier_trains_and_its_backbone_feeds_a_cached_mask_rcnn(imagenet_root, tmp_path,
                                                                     shapes_root):
    work = str(tmp_path / 'cls')
    out = run_tool(['tools/train.py', osp.join(ROOT, 'configs/cached_imagenet/'
                                               'cached-pvt-t_8xb128_in1k.py'),
                    '--work-dir', work, '--cfg-options', f'data_root={imagenet_root}',
                    f'train_dataloader.dataset.data_root={imagenet_root}',
                    f'val_dataloader.dataset.data_root={imagenet_root}'] + NANO, shapes_root)
    assert 'accuracy/top1' in out and 'accuracy/top5' in out and 'loss_cls' in out
    # --resume in a fresh process goes on past its first resumed epoch's validation
    out = run_tool(['tools/train.py', osp.join(ROOT, 'configs/cached_imagenet/'
                                               'cached-pvt-t_8xb128_in1k.py'),
                    '--work-dir', work, '--resume', '--cfg-options', f'data_root={imagenet_root}',
                    f'train_dataloader.dataset.data_root={imagenet_root}',
                    f'val_dataloader.dataset.data_root={imagenet_root}'] + NANO +
                   ['train_cfg.max_epochs=3'], shapes_root)
    assert 'resumed epoch: 2' in out and 'Epoch(val) [3]' in out
    ckpt_path = osp.join(work, 'epoch_2.pth')
    ckpt = torch.load(ckpt_path, weights_only=True)['state_dict']
    cfg = Config.fromfile(SMALL_CONFIG)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', prefix='backbone.',
                                       checkpoint=ckpt_path)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    own = detector.backbone.state_dict()
    backbone_keys = [k for k in ckpt if k.startswith('backbone.')]
    assert len(backbone_keys) == len(own)
    for k in backbone_keys:
        assert torch.equal(own[k[len('backbone.'):]], ckpt[k]), k
    assert all(torch.count_nonzero(m.cache) > 0 for _, m in grc_layers(detector.backbone))
