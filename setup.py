from setuptools import find_packages, setup

version = {}
with open('grc_mmdet/version.py') as f:
    exec(f.read(), version)

setup(
    name='grc_mmdet',
    version=version['__version__'],
    description='Cached Transformers (GRC-Attention) for MMDetection 3.x',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['grc_mmdet', 'grc_mmdet.*']),
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmengine>=0.10.0,<0.11',
        'mmdet>=3.3.0,<3.4',
        'pycocotools>=2.0.7',
        'numpy>=1.24,<2.5',
        'matplotlib>=3.7,<4',
    ],
    extras_require={'tests': ['pytest>=8,<10']},
    license='Apache-2.0',
    zip_safe=False,
)
