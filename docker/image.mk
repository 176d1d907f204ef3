# Image targets, included by the Makefile. Each uses docker where a Docker engine answers and
# buildah/podman otherwise (docker/podman-env.sh).

.PHONY: image image-cpu smoke lint

# The CUDA image (rlpyt included, pinned by commit; needs github and PyPI).
image:
	docker/build-image.sh cuda localhost/warmstart-dqn:cuda

# The CPU image (CPU torch from PyTorch's CPU index, rlpyt included).
image-cpu:
	docker/build-image.sh cpu localhost/warmstart-dqn:cpu

# Build the CPU image and run it twice against a temporary volume: cold start, warm start.
smoke: image-cpu
	docker/smoke.sh localhost/warmstart-dqn:cpu

lint:
	docker/lint.sh
