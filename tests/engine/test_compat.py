"""Safe checkpoint loading: our checkpoints need no numpy global, hostile
files are refused with an exception (never a crash, never code run), and
http(s) checkpoints load with weights_only=True."""
import functools
import http.server
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader

import grc_mmdet  # noqa: F401
from grc_mmdet.compat import to_builtins
from tests.helpers import ROOT


class _Dtype:
    """Pickles as numpy.dtype('i8') whose state is forged to an object dtype."""

    def __reduce__(self):
        return (np.dtype, ('i8', False, True), (3, '|', None, None, None, 8, 8, 0x3f))


class _Scalar:
    """Pickles as numpy's scalar reconstructor reading 8 bytes as that dtype."""

    def __reduce__(self):
        return (np._core.multiarray.scalar, (_Dtype(), b'\x41' * 8))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _load_in_subprocess(path):
    code = ('import torch, grc_mmdet\n'
            f'torch.load({str(path)!r}, weights_only=True)\n')
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_forged_numpy_dtype_is_refused_with_an_exception(tmp_path):
    path = tmp_path / 'forged.pth'
    with open(path, 'wb') as f:
        pickle.dump({'x': _Scalar()}, f, protocol=2)  # torch's own protocol
    proc = _load_in_subprocess(path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])  # not -11 (SIGSEGV)
    assert 'UnpicklingError' in proc.stderr and 'numpy' in proc.stderr


def test_history_buffer_state_is_validated(tmp_path):
    hb = HistoryBuffer()
    hb.update(1.5, 2)
    torch.save({'hb': hb}, tmp_path / 'hb.pth')
    loaded = torch.load(tmp_path / 'hb.pth', weights_only=True)['hb']
    assert loaded.current() == hb.current() and loaded.mean() == hb.mean() == 0.75
    assert 'statistics_methods' not in hb.__getstate__()
    bad = HistoryBuffer.__new__(HistoryBuffer)
    with pytest.raises(ValueError, match='HistoryBuffer'):
        bad.__setstate__({'_log_history': ['x'], '_count_history': [], 'max_length': 1})
    with pytest.raises(ValueError, match='HistoryBuffer'):
        bad.__setstate__({'statistics_methods': {}})


def test_numpy_values_become_builtins():
    ckpt = {'meta': {'seed': np.int64(3), 'arr': np.arange(3)}, 'l': [np.float32(0.5)]}
    out = to_builtins(ckpt)
    assert out == {'meta': {'seed': 3, 'arr': [0, 1, 2]}, 'l': [0.5]}
    assert type(out['meta']['seed']) is int


@pytest.fixture()
def http_root(tmp_path, monkeypatch):
    """A local http server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / 'www'
    www.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()


def test_url_checkpoints_load_with_weights_only(http_root, tmp_path):
    www, url = http_root
    torch.save({'state_dict': {'w': torch.ones(2)}}, www / 'benign.pth')
    marker = tmp_path / 'code_ran'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'x': _RunsCode(marker)}, www / 'hostile.pth')
    ckpt = CheckpointLoader.load_checkpoint(f'{url}/benign.pth', map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))
    with pytest.raises(RuntimeError, match='convert_trusted_checkpoint.py'):
        CheckpointLoader.load_checkpoint(f'{url}/hostile.pth', map_location='cpu')
    assert not marker.exists()


def test_trust_tool_writes_a_safe_checkpoint(tmp_path):
    import argparse
    src = tmp_path / 'trusted.pth'
    torch.save({'model': {'w': torch.arange(3.)}, 'args': argparse.Namespace(lr=1)}, src)
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(src, weights_only=True)
    subprocess.run([sys.executable, 'tools/misc/convert_trusted_checkpoint.py', str(src),
                    str(tmp_path / 'safe.pth')], cwd=ROOT, check=True, timeout=300)
    safe = torch.load(tmp_path / 'safe.pth', weights_only=True)
    assert torch.equal(safe['state_dict']['w'], torch.arange(3.))


def _serve_payload(www, name, marker):
    torch.save({'state_dict': {'w': torch.ones(2)}, 'x': _RunsCode(marker)}, www / name)


def _hub_checkpoints():
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


@pytest.mark.parametrize('scheme', ['open-mmlab', 'openmmlab', 'mmcls', 'torchvision',
                                    'modelzoo'])
def test_named_schemes_load_safely(scheme, http_root, tmp_path, monkeypatch):
    from mmengine.runner import checkpoint as ckpt_mod
    www, url = http_root
    marker = tmp_path / 'code_ran'
    _serve_payload(www, 'payload.pth', marker)
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))
    (tmp_path / 'mmengine_home').mkdir()
    (tmp_path / 'mmengine_home' / 'open_mmlab.json').write_text(
        f'{{"payload": "{url}/payload.pth"}}')
    for table in ('get_mmcls_models', 'get_torchvision_models'):  # (torchvision not needed)
        monkeypatch.setattr(ckpt_mod, table, lambda: {'payload': f'{url}/payload.pth'})
    with pytest.raises(RuntimeError, match='convert_trusted_checkpoint.py'):
        CheckpointLoader.load_checkpoint(f'{scheme}://payload', map_location='cpu')
    assert not marker.exists()
    assert not os.listdir(_hub_checkpoints())  # the refused download is not kept


def test_train_py_load_from_open_mmlab_does_not_run_the_payload(http_root, tmp_path, shapes_root):
    from tests.helpers import FAST, SMALL_CONFIG, run_tool
    www, url = http_root
    marker = tmp_path / 'code_ran'
    _serve_payload(www, 'payload.pth', marker)
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(f'{{"payload": "{url}/payload.pth"}}')
    with pytest.raises(AssertionError, match='safe loading'):
        run_tool(['tools/train.py', SMALL_CONFIG, '--work-dir', str(tmp_path / 'w'),
                  '--cfg-options', 'load_from=open-mmlab://payload'] + FAST, shapes_root,
                 env_extra=dict(MMENGINE_HOME=str(home), TORCH_HOME=os.environ['TORCH_HOME']))
    assert not marker.exists()


def test_poisoned_hub_cache_is_refused_and_removed(http_root, tmp_path):
    www, url = http_root
    marker = tmp_path / 'code_ran'
    name = 'resnet50_v1c-2cccc1ad.pth'  # the file open-mmlab://resnet50_v1c resolves to
    _serve_payload(www, name, marker)
    with pytest.raises(RuntimeError, match='safe loading'):
        CheckpointLoader.load_checkpoint(f'{url}/{name}', map_location='cpu')
    assert not os.path.exists(os.path.join(_hub_checkpoints(), name))
    # a payload already in the cache (put there by anything else) is refused too, offline
    os.makedirs(_hub_checkpoints(), exist_ok=True)
    _serve_payload(tmp_path, name, marker)
    os.replace(tmp_path / name, os.path.join(_hub_checkpoints(), name))
    with pytest.raises(RuntimeError, match='safe loading'):
        CheckpointLoader.load_checkpoint('open-mmlab://resnet50_v1c', map_location='cpu')
    assert not marker.exists()
    assert not os.path.exists(os.path.join(_hub_checkpoints(), name))


def test_html_page_is_not_a_checkpoint(http_root):
    www, url = http_root
    (www / 'page.pth').write_text('<!DOCTYPE html><html><body>Not found</body></html>')
    with pytest.raises(RuntimeError, match='is not a checkpoint') as info:
        CheckpointLoader.load_checkpoint(f'{url}/page.pth', map_location='cpu')
    assert 'convert_trusted' not in str(info.value)
    assert not os.listdir(_hub_checkpoints())


def test_a_scheme_registered_later_loads_with_weights_only(tmp_path):
    marker = tmp_path / 'code_ran'
    _serve_payload(tmp_path, 'payload.pth', marker)

    def careless_loader(filename, map_location=None):
        return torch.load(tmp_path / filename[len('careless://'):], map_location=map_location,
                          weights_only=False)

    CheckpointLoader.register_scheme('careless://', loader=careless_loader, force=True)
    try:
        with pytest.raises(pickle.UnpicklingError):
            CheckpointLoader.load_checkpoint('careless://payload.pth', map_location='cpu')
    finally:
        CheckpointLoader._schemes.pop('careless://')
    assert not marker.exists()
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ  # restored afterwards


def test_history_buffer_statistics_in_a_fresh_process(tmp_path):
    hb = HistoryBuffer()
    hb.update(2.0)
    torch.save({'hb': hb}, tmp_path / 'hb.pth')
    # no HistoryBuffer() is constructed in that process before the load
    code = ('import torch, grc_mmdet\n'
            f'hb = torch.load({str(tmp_path / "hb.pth")!r}, weights_only=True)["hb"]\n'
            'print(hb.statistics("mean"), hb.statistics("current"))\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ['2.0', '2.0']


def test_trust_tool_names_what_it_left_out_and_refuses_its_source(tmp_path):
    src = tmp_path / 'trusted.pth'
    torch.save({'state_dict': {'w': torch.arange(3.), 'arr': np.arange(2),
                               'nested': {'v': torch.ones(1)}}}, src)
    proc = subprocess.run([sys.executable, 'tools/misc/convert_trusted_checkpoint.py', str(src),
                           str(tmp_path / 'safe.pth')], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'left out 2' in proc.stdout and 'arr (numpy.ndarray)' in proc.stdout
    assert 'nested (builtins.dict)' in proc.stdout
    before = src.read_bytes()
    proc = subprocess.run([sys.executable, 'tools/misc/convert_trusted_checkpoint.py', str(src),
                           str(src)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'is the source file' in proc.stderr
    assert src.read_bytes() == before
