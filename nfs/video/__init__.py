"""A plain face video as a source clip: MediaPipe landmarks (LiteRT) fitted with the ICT expression model."""
from nfs.video.fit import FitConfig, LandmarkFit, choose_neutral_frame, fit_landmarks  # noqa: F401
from nfs.video.reader import VideoError, is_video_source  # noqa: F401
from nfs.video.source import VideoClip, load_video_clip  # noqa: F401
