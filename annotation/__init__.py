"""Three-rater on/off-screen annotation in Label Studio
(import as ``audioscope.annotation``)."""
