"""MLflow, the view of a study: ``client`` reaches the store, ``view`` renders a study into it,
``sync`` logs later what an unreachable server missed."""

from policysearch.tracking.client import DEFAULT_TRACKING_URI, Tracker, tracking_uri
from policysearch.tracking.view import StudyView

__all__ = ["DEFAULT_TRACKING_URI", "StudyView", "Tracker", "tracking_uri"]
