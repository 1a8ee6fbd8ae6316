"""audioscope-data: build the AudioScope on-screen / off-screen sound dataset.

The import root. Heavy dependencies (Apache Beam, TensorFlow) are imported
only by the modules that need them, so `import audioscope` and
`audioscope --help` stay fast.

Layout (data flows one way):
  audioscope.synth       synthetic corpus with ground truth (the embedded default)
  audioscope.sources     video lists (AudioScope CSV, YFCC100M, URIs) and fetching
  audioscope.clipstore   the clip store: index, status, media, reader
  audioscope.pipelines   Apache Beam pipelines (folder pipelines/)
  audioscope.curation    scores -> Df, splits, releases (folder curation/)
  audioscope.annotation  Label Studio (folder annotation/)
  audioscope.schemas     table and record schemas (folder schemas/)
  audioscope.models      coincidence model, AudioScope model (folder models/)
"""

__version__ = "0.1.0"

# Type aliases shared across the package (Lhotse style).
Seconds = float
Pathlike = str
