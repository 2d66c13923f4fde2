"""The public API (issue 16): every listed name imports from the package, is its module's object, and importing the
package or the sampler pulls in no plotting or Hugging Face code."""
import importlib, subprocess, sys
import pytest
import ijepa_edu


@pytest.mark.parametrize('module', sorted(ijepa_edu.API))
def test_every_public_name_is_its_modules_object(module):
    mod = importlib.import_module(f'ijepa_edu.{module}')
    for name in ijepa_edu.API[module]:
        assert getattr(ijepa_edu, name) is getattr(mod, name), name
        assert name in mod.__all__, f'{name} is public in ijepa_edu but not in ijepa_edu.{module}.__all__'


def test_all_lists_the_api_and_unknown_names_fail_clearly():
    assert sorted(ijepa_edu.__all__) == sorted(n for ns in ijepa_edu.API.values() for n in ns)
    assert set(ijepa_edu.__all__) <= set(dir(ijepa_edu))
    with pytest.raises(AttributeError, match='the public names are'): ijepa_edu.no_such_name
    assert ijepa_edu.__version__


def test_star_import_and_lazy_loading():
    code = ('import sys; from ijepa_edu import *; '
            'print(sorted(m for m in ("matplotlib", "transformers", "timm") if m in sys.modules and m != "ijepa_edu"))')
    lazy = ('import sys, ijepa_edu; from ijepa_edu import MaskCollator, get_config; '
            'print(sorted(m for m in ("matplotlib", "transformers", "timm") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', lazy], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == '[]', out.stdout + out.stderr
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
