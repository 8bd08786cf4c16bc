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
