"""The installed package: compiled core, kernels subpackage, import guard."""

import os
import shutil
import subprocess
import sys
import zipfile
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


ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc")
CUDA_SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: p.name)
def test_cuda_sources_compile(source, tmp_path):
    # Both architectures the CMake build targets, warnings as errors; nothing built here runs.
    cmd = [NVCC, "-std=c++17", "-O3", f"-I{ROOT / 'csrc'}", "-gencode", "arch=compute_80,code=sm_80",
           "-gencode", "arch=compute_90,code=sm_90", "--fmad=false", "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra",
           "-c", str(source), "-o", str(tmp_path / "kernel.o")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]


def test_cuda_sources_exist():
    assert {p.name for p in CUDA_SOURCES} == {"ci_cuda.cu", "skeleton_cuda.cu"}


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_cuda_build_imports_without_a_gpu(tmp_path):
    # The CLEANN_CUDA=ON build links the CUDA runtime statically: it must import and run its CPU
    # paths on a machine without a GPU or driver, and say why backend="cuda" cannot run.
    pytest.importorskip("scikit_build_core")
    pytest.importorskip("pybind11")
    env = dict(os.environ, CLEANN_CUDA="ON")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", str(ROOT),
                            "-w", str(tmp_path / "wheel"), "-C", f"build-dir={tmp_path / 'build'}"],
                           capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("cleann-*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = f"""
import sys
sys.path[:0] = [{str(tmp_path / 'site')!r}] + {site!r}
import numpy as np
import cleann
from cleann import _C
assert cleann.__file__.startswith({str(tmp_path / 'site')!r}), cleann.__file__
info = _C.build_info()
assert info["cuda"] is True, info
print("devices", _C.cuda_device_count())
assert cleann.skeleton(np.eye(4), 100).backend == "cpu"
if _C.cuda_device_count() == 0:
    try:
        cleann.skeleton(np.eye(4), 100, backend="cuda")
    except cleann.BackendUnavailableError as e:
        print("refused:", e)
"""
    # -S: the checkout's editable install must not shadow the wheel under test
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "devices" in out.stdout
