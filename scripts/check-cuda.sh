#!/usr/bin/env bash
# Compile (and link) flowrun with `--features cuda,nccl` on a machine without a GPU or a system CUDA
# toolkit, using NVIDIA's CUDA 13.4 PyPI wheels. Idempotent: the venv, the unversioned library links and
# the libcuda link stub are created only when missing. The resulting binaries need a real driver to start.
# Usage: scripts/check-cuda.sh [extra cargo args]; CU13_VENV and CARGO_TARGET_DIR may be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CU13_VENV:-/opt/cu13}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-cuda}"

if [ ! -x "$venv/bin/pip" ]; then
    python3 -m venv "$venv"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cu="$site/nvidia/cu13"
nccl_lib="$site/nvidia/nccl/lib"
# Pinned to 13.4.x: cudarc 0.19.10 reads the CUDA version from `nvcc --version` and knows 13.4 at most.
if [ ! -x "$cu/bin/nvcc" ] || [ ! -e "$nccl_lib/libnccl.so.2" ]; then
    "$venv/bin/pip" install --quiet \
        nvidia-cuda-nvcc==13.4.92 nvidia-cuda-runtime==13.4.92 nvidia-cuda-crt==13.4.92 \
        nvidia-nvvm==13.4.92 nvidia-cuda-cccl nvidia-cuda-nvrtc==13.4.92 nvidia-curand nvidia-cublas \
        nvidia-nccl-cu13==2.30.7
fi
# The stub below reads cudarc's declarations from the registry sources.
cargo fetch --quiet

# The wheels ship only versioned sonames; the linker wants the plain names.
(
    cd "$cu/lib"
    for l in cublas cublasLt nvrtc cudart; do [ -e "lib$l.so" ] || ln -s "lib$l.so.13" "lib$l.so"; done
    [ -e libcurand.so ] || ln -s libcurand.so.10 libcurand.so
    [ -e libnccl.so ] || ln -s "$nccl_lib/libnccl.so.2" libnccl.so
)
# PyPI has no driver library: link against a stub exporting the driver API symbols cudarc declares.
if [ ! -e "$cu/lib/libcuda.so" ]; then
    sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src/driver/sys/mod.rs | head -n1)"
    stub="$(mktemp -d)"
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$sys" | sort -u | awk '{print "int " $4 "(void){return 999;}"}' \
        > "$stub/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cu/lib/libcuda.so" "$stub/cuda_stub.c"
    rm -rf "$stub"
fi

export PATH="$cu/bin:$PATH" CUDA_HOME="$cu" CUDA_ROOT="$cu" CUDA_PATH="$cu" CUDA_COMPUTE_CAP=90
export LIBRARY_PATH="$cu/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
nvcc --version | tail -n2
time cargo build --features cuda,nccl --bins "$@"
