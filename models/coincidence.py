"""The audio-visual coincidence model: do this audio and these frames belong
together in time?

Self-supervised: a positive is a clip's own audio with its own frames; a
negative pairs the frames with audio from a different video, or with audio
of the same video shifted by several seconds. Nothing is labelled by hand.
Options (off by default) make the negatives sound when the clip sounds
(``other_match_db``) and switch sound on or off at another instant
(``shift_onoff_db``), so that "something sounds" is no evidence.
The probability is what the Df filter thresholds (0.8 in the paper): clips
whose picture visibly "moves with" the sound score high, clips whose sound
comes from off screen score low.

This module is the model's public face; the work is split by job:

- :mod:`audioscope.models.coincidence_model`: configuration and Keras graph
  (audio and image towers, per-second fusion, training-only augmentation);
- :mod:`audioscope.models.coincidence_data`: positives and negatives, from
  videos in memory or streamed from a clip store of any size;
- :mod:`audioscope.models.coincidence_train`: training on the shared spine
  (:mod:`audioscope.models.spine`: schedule, weight mean, checkpoints and
  resume, TensorBoard, export);
- :mod:`audioscope.models.coincidence_export`: the exported signature, the
  model card and content id, loading any SavedModel that meets the
  contract, and the metrics.

The exported signature (any SavedModel with it can be plugged into the
score step) and the model id are described in
:mod:`audioscope.schemas.coincidence_signature`.

TensorFlow is imported at module level: import this module lazily (inside a
command's ``run``), never from a module the CLI imports at startup.
"""

from __future__ import annotations

from audioscope.geometry import AUDIO_SAMPLES as CLIP_SAMPLES  # noqa: F401
from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE  # noqa: F401
from audioscope.models.coincidence_data import (  # noqa: F401
    FLOOR_QUANTILE,
    KIND_NAMES,
    OTHER_VIDEO,
    POSITIVE,
    SHIFTED,
    Example,
    ExampleBatch,
    ExampleSampler,
    StreamingSampler,
    VideoArrays,
    VideoStore,
    checked_video,
    frame_levels,
    load_videos,
    matched_start,
    on_codes,
    shifted_start,
    sound_on,
    split_videos,
    video_ids,
    video_reader,
    video_seconds,
)
from audioscope.models.coincidence_export import (  # noqa: F401
    SIGNATURE_INPUTS,
    SIGNATURE_NAME,
    SIGNATURE_OUTPUTS,
    CoincidencePredictor,
    SignatureError,
    check_signature,
    export_model,
    load_model,
    model_hash,
    self_supervised_metrics,
    signature_description,
    threshold_metrics,
)
from audioscope.models.coincidence_model import (  # noqa: F401
    EXPORT_WEIGHTS,
    FUSIONS,
    OUTPUT_KEY,
    Augment,
    CoincidenceConfig,
    audio_window,
    build_model,
    logit_model,
)
from audioscope.models.coincidence_train import (  # noqa: F401
    DATA_MODES,
    choose_evaluation,
    learning_rate_at,
    run_dir_for,
    train,
)
from audioscope.models.spine import RunDirBusy, RunDirError, TrainResult  # noqa: F401
