"""Pure numpy tokenization (spec sections 2-3). Importing this never imports Beam or TensorFlow."""
