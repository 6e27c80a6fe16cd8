"""Loading the config module stays light: no pandas, numba or numpy (``bt memory inspect``
and every command start with it)."""

from __future__ import annotations

import subprocess
import sys

import orjson


def test_import_config_loads_neither_pandas_nor_numba():
    code = ("import backtester.config, sys; "
            "print('pandas' in sys.modules, 'numba' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_moved_configs_are_still_importable_from_their_old_modules():
    from backtester import portfolio, portfolio_config, regime, regime_config

    assert regime.RegimeConfig is regime_config.RegimeConfig
    for name in ("RiskConfig", "SizingConfig", "CostsConfig", "DEFAULT_KEY", "PerSymbol"):
        assert getattr(portfolio, name) is getattr(portfolio_config, name)


def test_the_ensemble_module_loads_neither_pandas_nor_numba():
    # `bt memory inspect` reads the providers' credit from it
    code = ("import backtester.ensemble, sys; "
            "print('pandas' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
    from backtester import regime, regime_config

    assert regime.REGIME_NAMES is regime_config.REGIME_NAMES


def test_bt_memory_inspect_loads_neither_numba_pandas_faiss_nor_torch(tmp_path):
    # Arrange: a memory of two chunks, with the vector segments a run appends
    from tests.memory.test_text_search import learned

    learned(tmp_path)
    code = ("import sys; from backtester.cli import app\n"
            "try:\n    app(['memory', 'inspect', '--json', '--memory-dir', sys.argv[1]])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('HEAVY', [m for m in ('numba', 'pandas', 'faiss', 'torch') "
            "if m in sys.modules], file=sys.stderr)\n")
    # Act
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True)
    # Assert
    assert out.returncode == 0, out.stderr[-2000:]
    assert orjson.loads(out.stdout)["vectors"]["rows"] == 8  # the manifest's row counts
    assert "HEAVY []" in out.stderr
