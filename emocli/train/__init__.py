"""Training, export and their datasets: the only place Keras/TensorFlow/tf2onnx are imported."""
