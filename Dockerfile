# Custom SDK container for Dataflow workers (README, "On Dataflow"): Beam's own Python 3.11 image
# with this project and its dependencies installed, TensorFlow left out. Workers never import
# TensorFlow (tests/test_layering.py runs the whole job and checks), and installing it costs
# ~600 MB and minutes of start-up on every worker when --setup_file installs the package.
#
# Build from the repository root, push, and run with --sdk_container_image instead of --setup_file:
#   docker build -t us-central1-docker.pkg.dev/MY_PROJECT/gato/gato-data:0.1.0 .
#   docker push us-central1-docker.pkg.dev/MY_PROJECT/gato/gato-data:0.1.0
# The image's Beam and Python versions must be the launcher's (apache-beam 2.77, Python 3.11).
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /tmp/gato-data
COPY pyproject.toml README.md beam_runner.py ./
COPY schemas/ schemas/
COPY transforms/ transforms/
COPY formats/ formats/
COPY planning/ planning/
COPY audit/ audit/
COPY pipeline/ pipeline/
COPY reader/ reader/

# The project and its dependencies (TensorFlow is not one: only the `tfds-write` extra brings it);
# then check that the job imports, the bundled text model loads from the installed package, and
# no TensorFlow came in through another dependency.
RUN pip install --no-cache-dir . \
 && cd / && rm -rf /tmp/gato-data \
 && python -c "import importlib.util, sys, pipeline.job, transforms.text as t; t.SentencePieceTokenizer.from_path(t.BUNDLED_MODEL); sys.exit(importlib.util.find_spec('tensorflow') and 'TensorFlow was installed')"
WORKDIR /
