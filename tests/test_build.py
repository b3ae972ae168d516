"""The installed package: compiled core, kernels subpackage, import guard."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cleann
from conftest import run_without_core


def test_compiled_core_loaded_with_openmp():
    from cleann import _C

    info = _C.build_info()
    assert info["openmp"], "the C++ core was built without OpenMP"
    assert _C.__name__ == "cleann._C"


def test_kernels_subpackage_ships():
    import cleann.kernels

    assert cleann.kernels.__name__ == "cleann.kernels"


@pytest.mark.skipif(sys.platform != "linux", reason="ldd is Linux-only")
def test_core_does_not_link_libtorch():
    from cleann import _C

    out = subprocess.run(["ldd", _C.__file__], capture_output=True, text=True, check=True).stdout
    libraries = [line.split()[0] for line in out.splitlines() if line.strip()]  # names, not load addresses
    assert libraries and not [lib for lib in libraries if "torch" in lib or "c10" in lib], out


def test_import_guard_without_core():
    # Hide cleann._C: import still works, "cpu" says how to rebuild, "auto" falls back with a warning.
    out = run_without_core("""
        import warnings
        import numpy as np
        import cleann
        R = np.array([[1.0, 0.2, 0.1], [0.2, 1.0, 0.3], [0.1, 0.3, 1.0]])
        try:
            cleann.skeleton(R, 50, backend="cpu")
        except cleann.CoreUnavailableError as e:
            assert "pip install --force-reinstall" in str(e), e
        else:
            raise SystemExit("no error")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            sk = cleann.skeleton(R, 50)
        assert sk.backend == "numpy" and any("NumPy reference" in str(x.message) for x in w)
        print("ok")
    """)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_public_names():
    for name in ("attention_to_correlation", "partial_correlation", "fisher_z_pvalue", "skeleton"):
        assert name in cleann.__all__ and callable(getattr(cleann, name))
    assert isinstance(cleann.skeleton(np.eye(2), 10).adjacency, np.ndarray)


def test_ci_runs_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if "pytest" in line)
    assert command.strip() in readme
