"""Apache Beam pipelines (import as ``audioscope.pipelines``).

Every pipeline runs on Beam's local runner by default and on Dataflow (or any
Beam runner) by standard Beam flags alone: transforms are picklable, workers
are stateless, heavy resources are created in ``DoFn.setup``.
"""
