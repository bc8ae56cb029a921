"""Video loading with upstream Hulu-Med's frame-sampling rules.

* `sampling.py`: which frames are kept and their timestamps (index sampling, the fps filter, the trim): pure.
* `frames.py`: frame folders, frame lists and GIFs (Pillow I/O).
* `container.py`: container files through PyAV (demuxing, seeking, decoding).
* `loader.py`: `load_video` / `load_video_from_ids`, the entry points that pick one of these.
* `clip.py`: the `Clip` they return, frames `(3, H, W)` uint8 RGB with timestamps in seconds.
"""

from hulumed.processing.video.clip import Clip
from hulumed.processing.video.loader import load_video, load_video_from_ids
from hulumed.processing.video.sampling import fps_filter_plan, fps_ticks, sample_frame_indices

__all__ = ["Clip", "fps_filter_plan", "fps_ticks", "load_video", "load_video_from_ids", "sample_frame_indices"]
