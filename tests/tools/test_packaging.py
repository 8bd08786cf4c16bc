"""A wheel built from the tree holds the configs and tools, installs into a
fresh folder and trains the synthetic config from outside the clone."""
import glob
import os
import os.path as osp
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import FAST, ROOT, run_tool

CONFIG = 'configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py'


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp('dist')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '--disable-pip-version-check', '-q', '-w', str(dist), ROOT],
                   check=True, timeout=600, capture_output=True)
    (path,) = glob.glob(str(dist / 'grc_mmdet-*.whl'))
    return path


def test_wheel_holds_configs_tools_and_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in (CONFIG, 'configs/cached_pvt/mask-rcnn_cached-pvt-t_fpn_1x_coco.py',
                'tools/train.py', 'tools/test.py', 'tools/dist_train.sh',
                'tools/analysis_tools/benchmark.py'):
        assert f'grc_mmdet/.mim/{rel}' in names, rel
    assert any(n.endswith('.dist-info/licenses/LICENSE') or n.endswith('.dist-info/LICENSE')
               for n in names)
    meta = next(n for n in names if n.endswith('.dist-info/METADATA'))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert 'Requires-Dist: torch>=2.1' in text
    assert 'Requires-Dist: mmcv' in text and 'extra == "mim"' in text  # mmcv only as an extra


def test_installed_wheel_trains_outside_the_clone(wheel, shapes_root, tmp_path):
    site = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-compile', '-q',
                    '--disable-pip-version-check', '--target', str(site), wheel],
                   check=True, timeout=600, capture_output=True)
    outside = tmp_path / 'elsewhere'
    outside.mkdir()
    env = {'PYTHONPATH': str(site)}
    where = run_tool(['-c', 'import grc_mmdet, grc_mmdet.utils as u; '
                      'print(grc_mmdet.__file__); print(u.mim_root())'],
                     shapes_root, env_extra=env, cwd=str(outside))
    pkg_file, mim = where.split()[-2:]
    assert pkg_file.startswith(str(site)) and mim == osp.join(str(site), 'grc_mmdet', '.mim')
    out = run_tool([osp.join(mim, 'tools', 'train.py'), osp.join(mim, CONFIG),
                    '--work-dir', str(tmp_path / 'work'), '--cfg-options'] + FAST,
                   shapes_root, env_extra=env, cwd=str(outside))
    assert 'coco/bbox_mAP' in out and osp.isfile(tmp_path / 'work' / 'iter_4.pth')


def test_readme_quick_start_from_the_wheel(wheel, tmp_path):
    """The README's block for an installed wheel, run as written in an empty
    folder (training shortened with FAST overrides): first without data,
    where train.py must say how to make it, then the whole block."""
    import re
    site = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-compile', '-q',
                    '--disable-pip-version-check', '--target', str(site), wheel],
                   check=True, timeout=600, capture_output=True)
    readme = open(osp.join(ROOT, 'README.md')).read()
    block = next(b for b in re.findall(r'```bash\n(.*?)```', readme, re.S)
                 if 'u.mim_root()' in b)
    lines = block.strip().splitlines()
    assert len(lines) == 3 and 'make_shapes_dataset.py' in lines[1] and 'train.py' in lines[2]
    outside = tmp_path / 'elsewhere'
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'GRC_SHAPES_ROOT'}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS='2',
               PATH=osp.dirname(sys.executable) + os.pathsep + env.get('PATH', ''))

    def bash(script):
        return subprocess.run(['bash', '-c', 'set -e\n' + script], cwd=outside, env=env,
                              capture_output=True, text=True, timeout=900)

    no_data = bash(lines[0] + '\n' + lines[2])
    assert no_data.returncode != 0
    assert 'GRC Shapes annotations not found' in no_data.stderr
    assert 'tools/misc/make_shapes_dataset.py --out data/shapes/' in no_data.stderr
    fast = ' '.join(f"'{o}'" for o in FAST)
    done = bash('\n'.join(lines) + f' --work-dir work --cfg-options {fast}')
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert osp.isfile(outside / 'data' / 'shapes' / 'annotations' / 'val.json')
    assert osp.isfile(outside / 'work' / 'iter_4.pth')
    assert 'coco/bbox_mAP' in done.stdout + done.stderr
