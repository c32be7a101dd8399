"""Export of pretrained encoders for serving (TensorFlow Serving's SavedModel layout)."""
