"""The two architectures, the Keras models built from them, TensorFlow's process options, and
the model views that plot and report draw."""
