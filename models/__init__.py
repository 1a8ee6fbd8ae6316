"""Models: the audio-visual coincidence model and the reference AudioScope
model (import as ``audioscope.models``). Imports TensorFlow lazily."""
