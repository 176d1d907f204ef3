# Image targets, included by the Makefile. Each uses docker where a Docker engine answers and
# buildah/podman otherwise (docker/podman-env.sh). Settings from the environment, passed to
# docker/build-image.sh: BASE_IMAGE, WITH_RLPYT, RLPYT_SOURCE (rlpyt from a local checkout at
# the pinned commit: no github needed), WHEELS_DIR. Without a registry, the base is made
# locally with debootstrap (podman) or the build says in one line what to set.

.PHONY: image image-cpu smoke image-cuda-check lint lock sbom

# The CUDA image: torch's CUDA 13.0 build from PyPI (driver R580+), rlpyt.
image:
	docker/build-image.sh cuda localhost/warmstart-dqn:cuda

# The CPU image (CPU torch from PyTorch's CPU index or WHEELS_DIR, rlpyt included).
image-cpu:
	docker/build-image.sh cpu localhost/warmstart-dqn:cpu

# Build the CPU image and run it against a temporary volume: cold start, warm start, inspect,
# eval, lineage, SIGTERM with a final snapshot, bad volumes.
smoke: image-cpu
	docker/smoke.sh localhost/warmstart-dqn:cpu

# Build the CUDA image and check it without a GPU: torch's CUDA libraries load, the driver
# floor is declared, and a faked GPU that torch cannot use stops the trainer with exit 6.
image-cuda-check:
	docker/cuda-check.sh localhost/warmstart-dqn:cuda

lint:
	docker/lint.sh

# Regenerate the hashed lock files the images install from (docker/requirements-*.lock) after
# a pin in docker/requirements.txt or requirements-rlpyt.txt changed. Needs PyPI, and PyTorch's
# CPU torch index or WHEELS_DIR=DIR holding the torch +cpu wheel (docker/lock.sh).
lock:
	docker/lock.sh

# The SBOM of the CPU image built by make image-cpu (SBOM_IMAGE to pick another): cdxgen, pinned,
# reads Debian's and the venv's packages from the image's files; torch, numpy, ale-py and the
# Debian packages must be listed with versions (docker/sbom.sh, docs/images.md).
SBOM_IMAGE ?= localhost/warmstart-dqn:cpu
sbom:
	docker/sbom.sh "$(SBOM_IMAGE)"
