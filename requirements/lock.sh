#!/usr/bin/env bash
# Writes requirements/production.lock: every dependency of the real stack's images (the core,
# the `server` and `s3` extras), pinned with hashes, for the images' Python (3.11, x86_64 Linux).
# torch and the CUDA libraries it pulls are left out: each image installs torch itself, pinned,
# from PyTorch's index for its build (CPU or CUDA; see the Dockerfile).
#   bash requirements/lock.sh        (needs uv: pip install uv)
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-uv}"
compile() {
  "$UV" pip compile pyproject.toml --extra server --extra s3 --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet "$@"
}
# the resolver's own picture of torch's CUDA dependencies, left out by name
exclude=(--no-emit-package torch)
for name in $(compile --no-emit-package torch | grep -oE '^(nvidia-[a-z0-9-]+|cuda-[a-z-]+|triton)==' | tr -d '='); do
  exclude+=(--no-emit-package "$name")
done
compile "${exclude[@]}" --custom-compile-command "bash requirements/lock.sh" -o requirements/production.lock
echo "requirements/production.lock: $(grep -cE '^[a-z0-9]' requirements/production.lock) packages"
