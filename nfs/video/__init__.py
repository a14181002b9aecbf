"""A plain face video as a source clip: MediaPipe Face Landmarker v2 (LiteRT) read as ICT weights and head pose."""
from nfs.video.calibrate import Calibration, choose_neutral_frame  # noqa: F401
from nfs.video.reader import VideoError, is_video_source  # noqa: F401
from nfs.video.source import VideoClip, VideoFit, load_video_clip  # noqa: F401
