"""Every shell command of the README is accounted for: run here (those that
take seconds on a CPU), or named with the test or CI step that runs it, or
with the reason it cannot run on a CPU machine. A new or changed command
fails ``test_every_readme_command_is_accounted_for`` until it is classified."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

README = osp.join(ROOT, 'README.md')

CI = 'CI: .ci/run runs this command as written'
MAIN_JOB = 'tests/tools/test_main_job.py::test_pretrain_handoff_detect_chain'
WHEEL = 'tests/tools/test_packaging.py::test_readme_quick_start_from_the_wheel'
TRAIN_TEST = 'tests/tools/test_train_test.py::test_train_resume_and_test'
SCRIPTS = 'tests/tools/test_scripts.py::test_dist_train_and_test'
SLURM = 'tests/tools/test_scripts.py::test_slurm_train_and_test'
DIST = 'tests/engine/test_distributed.py::test_dist_train_two_cpu_ranks_share_the_cache'
CLS = ('tests/classification/test_classification.py::'
       'test_classifier_trains_and_its_backbone_feeds_a_cached_mask_rcnn')
AB = 'tests/tools/test_cached_vs_plain.py::test_ab_comparison_and_resume'
AB2 = 'tests/tools/test_cached_vs_plain.py::test_two_stage_protocol_with_a_lambda_arm'
ANALYSIS = 'tests/tools/test_analysis_tools.py'
MEASURE = 'tests/tools/test_measurement_tools.py'
COMPAT = 'tests/engine/test_compat.py::test_trust_tool_writes_a_safe_checkpoint'
NEEDS_GPUS = 'not run: needs GPUs (and COCO / ImageNet)'

#: command (comments stripped, continuation lines joined) -> where it runs
COVERAGE = {
    'bash tools/setup_env.sh && .venv/bin/python tools/main_job.py':
        'CI runs tools/setup_env.sh; the main job (20 min) runs short in ' + MAIN_JOB,
    'bash tools/setup_env.sh && .venv/bin/python -m flake8 && .venv/bin/python -m isort '
    '--check-only --diff . && .venv/bin/python -m pytest tests -q': CI,
    'pip install torch': 'not run: installs the CUDA build of torch for the user\'s machine',
    'pip install -U openmim && mim install "mmcv>=2.0.0rc4,<2.2.0"':
        'not run: needs the OpenMMLab download site (CI builds mmcv from source instead)',
    'pip install ".[mim]"': 'run here (test_install_command_is_valid)',
    'ROOT=$(python -c "import grc_mmdet.utils as u; print(u.mim_root())")': WHEEL,
    'python $ROOT/tools/misc/make_shapes_dataset.py --out data/shapes': WHEEL,
    'python $ROOT/tools/train.py $ROOT/configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py':
        WHEEL,
    'bash tools/dist_train.sh configs/cached_pvt/mask-rcnn_cached-pvt-t_fpn_1x_coco.py 8':
        NEEDS_GPUS + '; ' + SCRIPTS + ' and ' + DIST + ' run dist_train.sh on CPUs',
    'bash tools/dist_test.sh configs/cached_pvt/mask-rcnn_cached-pvt-t_fpn_1x_coco.py '
    'work_dirs/mask-rcnn_cached-pvt-t_fpn_1x_coco/epoch_12.pth 8': NEEDS_GPUS + '; ' + SCRIPTS,
    'python tools/train.py CONFIG [--resume [CKPT]] [--cfg-options key=value ...]': TRAIN_TEST,
    'python tools/test.py CONFIG CKPT [--tta] [--out results.pkl]': TRAIN_TEST,
    'bash tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR': SLURM,
    'bash tools/slurm_test.sh PARTITION JOB CONFIG CHECKPOINT': SLURM,
    'bash tools/dist_train.sh configs/cached_imagenet/cached-pvt-t_8xb128_in1k.py 8':
        NEEDS_GPUS + '; ' + CLS + ' trains this config on CPU',
    'bash tools/dist_train.sh configs/cached_pvt/mask-rcnn_cached-pvt-t_fpn_1x_coco.py 8 '
    '--cfg-options model.backbone.init_cfg.prefix=backbone. '
    'model.backbone.init_cfg.checkpoint=work_dirs/cached-pvt-t_8xb128_in1k/epoch_300.pth':
        NEEDS_GPUS + '; ' + CLS + ' hands a classifier\'s backbone to a detector',
    'python tools/analysis_tools/cached_vs_plain.py '
    'configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py --seeds 0 1 2 --jobs 6 --gpus 0 1 '
    '--val-interval 150 [--amp] [--cfg-options ...]': NEEDS_GPUS + '; ' + AB,
    'python tools/analysis_tools/cached_vs_plain.py '
    'configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py --pretrain --lambda-init-arm -4 '
    '--seeds 0 1 2 --jobs 9 --val-interval 200': NEEDS_GPUS + '; ' + AB2,
    'python tools/analysis_tools/attention_ratio.py CONFIG --checkpoint CKPT':
        ANALYSIS + '::test_attention_ratio',
    'python tools/analysis_tools/feature_maps.py CONFIG --checkpoint CKPT --img IMG':
        ANALYSIS + '::test_feature_maps',
    'python tools/analysis_tools/cache_inspect.py CONFIG --checkpoint CKPT':
        ANALYSIS + '::test_cache_inspect',
    'python tools/analysis_tools/get_flops.py CACHED_CONFIG --shape 800 1333':
        ANALYSIS + '::test_get_flops',
    'python tools/analysis_tools/benchmark.py CACHED_CONFIG --device cuda --dtype fp16':
        'on CUDA only; ' + ANALYSIS + '::test_benchmark runs it with --device cpu',
    'python tools/analysis_tools/train_speed.py WORK_DIR [WORK_DIR ...]':
        MEASURE + '::test_train_speed_reads_throughput',
    'python tools/analysis_tools/attention_backends.py': 'not run: CUDA only',
    'python tools/analysis_tools/profile_part.py CACHED_CONFIG --part backbone-train '
    '--count-kernels': 'not run: --count-kernels counts CUDA kernels',
    'python tools/analysis_tools/cached_vs_plain.py CACHED_CONFIG --seeds 0 1 2': AB,
    'python tools/misc/make_shapes_dataset.py --out data/shapes': WHEEL,
    'python tools/misc/convert_trusted_checkpoint.py SRC OUT.pth': COMPAT,
    'python tools/misc/convert_trusted_checkpoint.py URL_OR_PATH out.pth': COMPAT,
    'python tools/model_converters/publish_model.py IN.pth OUT.pth':
        'tests/tools/test_train_test.py::test_stock_mmdet_tools_train_and_test',
}


def readme_commands():
    """Commands of the README's ```bash blocks and of its inline `python
    tools/...` commands: comments stripped, continuation lines joined,
    whitespace collapsed."""
    text = open(README).read()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            line = re.sub(r'(^|\s)#.*$', '', line).strip()
            if line:
                commands.append(' '.join(line.split()))
    for inline in re.findall(r'`((?:python|bash) tools/[^`]*)`', text):
        commands.append(' '.join(inline.split()))
    return commands


def test_every_readme_command_is_accounted_for():
    found = set(readme_commands())
    assert found - set(COVERAGE) == set(), 'README commands not classified in COVERAGE'
    assert set(COVERAGE) - found == set(), 'COVERAGE lists commands no longer in the README'


def test_named_tests_exist():
    """Each test a COVERAGE entry names exists (so the map cannot rot)."""
    for where in COVERAGE.values():
        for path, name in re.findall(r'(tests/[\w/]+\.py)(?:::(\w+))?', where):
            source = open(osp.join(ROOT, path)).read()
            assert not name or f'def {name}(' in source, (path, name)


def test_install_command_is_valid(tmp_path):
    """`pip install ".[mim]"` from the clone: pip accepts the requirement and
    builds the project's metadata (dry run, no download, nothing installed)."""
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-deps',
                           '--no-index', '--no-build-isolation', '--disable-pip-version-check',
                           '.[mim]'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Would install grc_mmdet' in proc.stdout or 'Would install grc-mmdet' in proc.stdout


@pytest.mark.parametrize('bad', ['grc_mmdet[mim] @ .'])
def test_the_old_install_command_was_invalid(bad):
    """The form the README used to show is refused by pip: this is what the
    test above guards against."""
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-deps',
                           '--no-index', '--disable-pip-version-check', bad], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PIP_NO_INPUT='1'))
    assert proc.returncode != 0
