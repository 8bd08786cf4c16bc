"""grc-mmdet: Cached Transformers (GRC-Attention) for MMDetection 3.x.

Install order (as for OpenMMLab packages): torch, then mmcv with its ops
(``mim install "mmcv>=2.0.0,<2.2.0"`` or a source build), then this package
with ``pip install .`` (or ``pip install ".[mim]"`` to pull mmengine/mmdet).
The OpenMMLab dependencies are an extra, so ``pip install`` never tries to
build mmcv in an isolated environment without torch.

Configs and tools ship inside the package under ``grc_mmdet/.mim/`` (as
OpenMMLab packages do), so an installed wheel is usable without a clone.
"""
import os.path as osp
import shutil

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


def add_mim_extension():
    """Copy configs/ and tools/ into grc_mmdet/.mim/ (replacing an old copy)."""
    mim = osp.join(HERE, 'grc_mmdet', '.mim')
    for name in ('configs', 'tools'):
        src, dst = osp.join(HERE, name), osp.join(mim, name)
        if not osp.isdir(src):  # building from an sdist that already holds .mim
            continue
        if osp.isdir(dst):
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


version = {}
with open(osp.join(HERE, 'grc_mmdet', 'version.py')) as f:
    exec(f.read(), version)

add_mim_extension()
readme = osp.join(HERE, 'README.md')
setup(
    name='grc_mmdet',
    version=version['__version__'],
    description='Cached Transformers (GRC-Attention) for MMDetection 3.x',
    long_description=open(readme).read() if osp.exists(readme) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['grc_mmdet', 'grc_mmdet.*']),
    include_package_data=False,
    package_data={'grc_mmdet': ['.mim/configs/**/*.py', '.mim/tools/*.py',
                                '.mim/tools/*.sh', '.mim/tools/**/*.py']},
    python_requires='>=3.8',
    install_requires=['torch>=2.1'] + read_requirements('runtime.txt'),
    extras_require={
        'mim': read_requirements('mminstall.txt'),
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
        'all': read_requirements('mminstall.txt') + read_requirements('tests.txt') +
        read_requirements('optional.txt'),
    },
    license='Apache-2.0',
    license_files=['LICENSE'],
    zip_safe=False,
)
