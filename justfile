# flowrun tasks. `just --list` shows them all.

# Train with the default config; extra arguments are Hydra overrides, e.g. `just train batch_size=16`.
train *ARGS:
    cargo run --release --bin train -- --config-name=train_fb_flow_matching {{ARGS}}

# The whole test suite (what CI runs).
test:
    cargo test

# The data-parallel tests over MPI (needs libopenmpi-dev, openmpi-bin, libclang-dev).
test-mpi:
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 cargo test --features mpi --test ddp_cpu

# Formatting and lints, warnings denied (what CI runs).
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# The performance harness (issue 9): `train --cfg job`, sgemm, training and sampling throughput of
# CPU_SMALL and NAMO64 with the fused kernels on and off, GFLOP/s, peak RSS; writes
# target/bench/perf.json. `FLOWRUN_FUSED=0` switches the fused kernels off in every binary; the
# fused kernels use OpenBLAS when installed (`just install-openblas`), see README "CPU speed".
# PyTorch runs the same measurements in the same run when installed (`just install-torch-reference`).
bench:
    cargo bench --bench perf

# PyTorch 2.15 for the side-by-side figures of `just bench` (a venv under target/; PyPI's Linux
# wheel brings ~3 GB of CUDA libraries, unused here).
install-torch-reference:
    python3 -m venv target/torch-venv
    target/torch-venv/bin/pip install torch==2.15.0 numpy

# Debian's threaded OpenBLAS, which the fused CPU kernels load at run time (root).
install-openblas:
    apt-get install -y libopenblas0-pthread

# The other benchmarks.
bench-all: bench bench-config bench-solvers bench-data

# Wall time of `train --cfg job` on the shipped tree, against Hydra's 567 ms.
bench-config:
    cargo bench --bench config_compose

# Sampler arithmetic per step on a (64,1,64,64) state, the network excluded.
bench-solvers:
    cargo bench --bench solver_step

# Loader throughput, 224×224 .npz scenes to 64×64 batches, against the trainer's consumption.
bench-data:
    cargo bench --bench data_loader

# Write synthetic NAMO scenes, e.g. `just gen-data --out data/namo --num-scenes 512`.
gen-data *ARGS:
    cargo run --release --bin gen-data -- {{ARGS}}

# Summarise or compare trained runs, e.g. `just inspect 'runs=[outputs/a,outputs/b]' plot=true`.
inspect *ARGS:
    cargo run --release --bin inspect -- {{ARGS}}

# Hydra conformance through the independent Python checker (needs PyYAML).
conformance:
    cargo build --release --bin train
    python3 tests/hydra_conformance/check.py --cases tests/hydra_conformance/cases --cmd "$PWD/target/release/train"

# Check the event-file writer against TensorBoard itself (needs `pip install tensorboard`).
tensorboard-check DIR="/tmp/flowrun_tb_sample":
    rm -rf {{DIR}}
    cargo run --example tensorboard_sample -- {{DIR}}
    python3 tests/tensorboard/check_events.py {{DIR}}

# Compile and link `--features cuda,nccl` with NVIDIA's CUDA 13.4 PyPI wheels (no GPU needed; ~15 min cold).
check-cuda *ARGS:
    scripts/check-cuda.sh {{ARGS}}
